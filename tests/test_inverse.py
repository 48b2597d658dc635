"""Inverse problems against closed forms: the measurement operators are the linear maps they claim
(matrix, adjoint, what inpainting observes, block averages, blur weights), the exact posterior of a
Gaussian mixture given y = A z + noise is Bayes' rule (isotropic closed form for A = a I; log-density
equal to log p(z) + log N(y; A z, s^2 I) up to a constant for any A; sample moments), the measurement
reward is the Gaussian log-likelihood with its gradient, and FK steering with GLASS proposals
converges to the exact posterior as particles grow."""

import math

import numpy as np
import pytest
import torch

import glass
from glass.alignment import fk_steering
from glass.metrics.oracle import energy_distance
from glass.models.gmm import random_mixture, ring
from glass.noise import indexed_seed
from glass.rewards import Measurement
from glass.rewards.base import resolve_reward
from glass.rewards.operators import OPERATORS, make_operator

F64 = torch.float64


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 8, 12), (12,)])
@pytest.mark.parametrize("name", OPERATORS)
def test_operators_are_linear_with_the_matrix_and_adjoint_they_claim(name, shape):
    factor = 2 if len(shape) == 1 or shape[1] == 8 else 4
    op = make_operator(name, shape, factor=factor, width=0.8)
    g = torch.Generator().manual_seed(0)
    x, v = torch.randn(5, *shape, generator=g, dtype=F64), torch.randn(5, *shape, generator=g, dtype=F64)
    A = op.matrix()
    assert A.shape == (op.size, math.prod(shape))
    torch.testing.assert_close(op(x), x.reshape(5, -1) @ A.T)
    torch.testing.assert_close(op(2 * x - 3 * v), 2 * op(x) - 3 * op(v))
    u = torch.randn(5, op.size, generator=g, dtype=F64)
    xg = x.clone().requires_grad_(True)
    (adj,) = torch.autograd.grad((op(xg) * u).sum(), xg)  # autograd's A^T u
    torch.testing.assert_close(adj.reshape(5, -1), u @ A)
    assert op.show(op(x)).shape == x.shape


def test_what_each_operator_observes():
    x = torch.arange(2 * 4 * 4, dtype=F64).reshape(1, 2, 4, 4)
    inpaint = make_operator("inpaint", (2, 4, 4), region="lower")
    torch.testing.assert_close(inpaint(x), x[:, :, :2, :].reshape(1, -1))  # the upper half, channel-major
    shown = inpaint.show(inpaint(x))
    assert bool((shown[:, :, 2:] == 0).all()) and torch.equal(shown[:, :, :2], x[:, :, :2])  # grey: missing
    torch.testing.assert_close(make_operator("inpaint", (8,), region="lower")(torch.arange(8.0)[None]),
                               torch.arange(4.0)[None])  # fmt: skip
    down = make_operator("downsample", (2, 4, 4), factor=2)
    torch.testing.assert_close(down(x)[0, 0], x[0, 0, :2, :2].mean())
    blur = make_operator("blur", (1, 9, 9), width=1.0)
    assert float(blur.blur_kernel.sum()) == pytest.approx(1.0) and blur.blur_kernel.shape == (7, 7)
    const = torch.ones(1, 1, 9, 9, dtype=F64)
    assert float(blur(const).reshape(9, 9)[4, 4]) == pytest.approx(1.0)  # interior of a constant image
    with pytest.raises(ValueError, match="reward.factor=3 must divide"):
        make_operator("downsample", (1, 28, 28), factor=3)
    with pytest.raises(ValueError, match="reward.operator must be one of"):
        make_operator("fourier", (4,))


def test_exact_posterior_is_the_isotropic_closed_form_for_a_scaled_identity():
    """y = a z + b n is x_t's law with (alpha_t, sigma_t) = (a, b): condition() must give the
    oracle's posterior p_{1|t} (weights, means, variances) exactly."""
    gmm = random_mixture(dim=6, n_components=5, seed=3)
    x = torch.randn(1, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
    a, b = 0.6, 0.7
    logw, mu, c = gmm._posterior(x, torch.tensor([a], dtype=F64), torch.tensor([b], dtype=F64))
    post = gmm.condition(a * torch.eye(6, dtype=F64), x[0], b)
    torch.testing.assert_close(post.weights, logw.exp()[0])
    torch.testing.assert_close(post.means, mu[0])
    torch.testing.assert_close(
        post.covariances, c[0][:, None, None] * torch.eye(6, dtype=F64).expand(5, 6, 6)
    )


@pytest.mark.parametrize("name", ["blur", "inpaint", "downsample"])
def test_exact_posterior_is_bayes_rule_for_any_operator(name):
    """log p(z | y) - log p(z) - log N(y; A z, s^2 I) is the same constant (-log p(y)) at every z, and
    exact samples have the mixture's mean and covariance."""
    gmm = random_mixture(dim=8, n_components=4, std=0.6, seed=2)
    reward = resolve_reward(Measurement(name, noise=0.4, source="test:1", factor=2, width=1.2), gmm)
    post = reward.exact_target(gmm, 1.0)
    z = torch.cat(
        [gmm.sample(50, torch.Generator().manual_seed(0)), post.sample(50, torch.Generator().manual_seed(1))]
    )
    gap = post.log_prob(z) - gmm.log_prob(z) - reward(z)
    assert float(gap.max() - gap.min()) < 1e-9
    s = post.sample(200_000, torch.Generator().manual_seed(2))
    se = post.covariance().diagonal().sqrt() / math.sqrt(len(s))
    assert bool(((s.mean(0) - post.mean()).abs() < 5 * se).all())
    torch.testing.assert_close(torch.cov(s.T), post.covariance(), atol=0.02, rtol=0.05)
    # lam tempers the likelihood: the target of lam = 4 is the posterior at half the noise
    torch.testing.assert_close(
        reward.exact_target(gmm, 4.0).means, gmm.condition(reward.op.matrix(), reward.y, 0.2).means
    )
    # E[r] under the posterior, closed form vs Monte Carlo
    assert reward.exact_mean(post) == pytest.approx(float(reward(s).mean()), abs=0.05)


def test_measurement_reward_is_the_gaussian_log_likelihood_with_its_gradient():
    gmm = random_mixture(dim=6, n_components=3, seed=0)
    reward = resolve_reward(Measurement("downsample", noise=0.3, source="test:4", factor=2, seed=7), gmm)
    x0, _ = gmm.data_point(4, "test")
    torch.testing.assert_close(reward.original, x0)
    A = reward.op.matrix()
    noise = reward.y - A @ x0[0]  # the drawn measurement noise: from reward.seed and the test index
    torch.testing.assert_close(
        noise / 0.3, torch.randn(3, generator=torch.Generator().manual_seed(indexed_seed(7, 4)), dtype=F64)
    )
    # another reward.seed's noise on another point is another draw (was seed + index: 8 on point 3 = 7 on 4)
    other = resolve_reward(Measurement("downsample", noise=0.3, source="test:3", factor=2, seed=8), gmm)
    x3, _ = gmm.data_point(3, "test")
    assert not torch.allclose((other.y - A @ x3[0]) / 0.3, noise / 0.3)
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1), dtype=F64, requires_grad=True)
    ref = torch.distributions.MultivariateNormal(
        A @ x.detach().T[:, 0] * 0 + reward.y, 0.09 * torch.eye(3, dtype=F64)
    )
    expected = torch.stack([ref.log_prob(A @ row.detach() - reward.y + reward.y) for row in x])
    # log N(y; A x, s^2 I) = log N(A x; y, s^2 I)
    torch.testing.assert_close(reward(x.detach()), expected)
    (grad,) = torch.autograd.grad(reward(x).sum(), x)
    torch.testing.assert_close(grad, (reward.y - x.detach() @ A.T) @ A / 0.09)
    cons = reward.consistency(x.detach())
    torch.testing.assert_close(cons, (x.detach() @ A.T - reward.y).norm(dim=1) / (0.3 * math.sqrt(3)))


def test_measurement_sources_and_errors(tmp_path):
    from PIL import Image

    from glass.rewards.measurement import load_source_file

    img = np.zeros((28, 28), dtype=np.uint8)
    img[5:20, 10:14] = 255
    Image.fromarray(img).save(tmp_path / "digit.png")
    x = load_source_file(tmp_path / "digit.png", channels=1)
    assert torch.equal(x, torch.from_numpy(img).double()[None] / 255 * 2 - 1)  # (1, H, W), not transposed
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 14  # H 2, W 3, 3 channels: all distinct
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    x = load_source_file(tmp_path / "rgb.png")  # the file's own channels
    assert torch.equal(x, torch.from_numpy(rgb).double().permute(2, 0, 1) / 255 * 2 - 1)  # (C, H, W)
    deep = (np.arange(28 * 28, dtype=np.uint16).reshape(28, 28) * 83).astype(np.uint16)  # 0..65,000
    Image.fromarray(deep).save(tmp_path / "deep.png")  # a 16-bit grey PNG: "L" clipped it at 255
    expect = torch.from_numpy(deep.astype(np.float64))[None] / 65535 * 2 - 1
    assert torch.allclose(load_source_file(tmp_path / "deep.png"), expect)
    assert torch.allclose(load_source_file(tmp_path / "deep.png", channels=3), expect.expand(3, -1, -1))
    torch.save(torch.zeros(5, dtype=F64), tmp_path / "point.pt")
    reward = resolve_reward(
        Measurement("identity", noise=0.1, source=str(tmp_path / "point.pt")), random_mixture(dim=5)
    )
    assert reward.y.shape == (5,)
    with pytest.raises(ValueError, match="reward.noise must be a number > 0"):
        Measurement(noise=0)
    with pytest.raises(ValueError, match="reward.source must be test:INDEX"):
        Measurement(source="test:x")
    with pytest.raises(ValueError, match="reward.source must be valid:INDEX"):
        Measurement(source="valid:-3")
    with pytest.raises(ValueError, match="does not exist"):
        resolve_reward(Measurement(source=str(tmp_path / "missing.png")), ring())
    with pytest.raises(ValueError, match=r"has shape \(5,\); GaussianMixture.* makes data of shape \(2,\)"):
        resolve_reward(Measurement("identity", source=str(tmp_path / "point.pt")), ring())
    with pytest.raises(ValueError, match="no observation yet"):
        Measurement()(torch.zeros(1, 2))


def test_fk_steering_with_glass_proposals_converges_to_the_exact_posterior():
    """Ring oracle, the second coordinate missing (noise 0.5). One particle is the prior, far away.
    Without intermediate resampling (weights carried to the end), the drawn outputs reach the noise
    floor with the posterior's mean and covariance within Monte-Carlo error as particles grow.
    Resampling after every transition on r(D_t(x)) (the default) gets close but keeps a finite-particle
    bias towards the likeliest mode (E[r] too high): r(D_t(x)) is an overconfident stand-in for the
    value function early on, and resampled-away paths are not restored; it shrinks slowly with
    particles (README, inverse problems)."""
    gmm = ring()
    reward = resolve_reward(Measurement("inpaint", noise=0.5, source="test:4"), gmm)  # y in the tail
    post = reward.exact_target(gmm, 1.0)
    groups = 600
    exact = post.sample(groups, torch.Generator().manual_seed(5))
    floors = [
        energy_distance(post.sample(groups, torch.Generator().manual_seed(10 + i)), exact) for i in range(4)
    ]
    floor = sum(floors) / len(floors)
    kernel = glass.GLASS(4, solver="midpoint")

    def run(particles, every=1):
        res = fk_steering(gmm, kernel, reward, grid=6, particles=particles, groups=groups, lam=1.0,
                          resample_every=every, generator=torch.Generator().manual_seed(1))  # fmt: skip
        x = res.draw(torch.Generator().manual_seed(2))
        return x, energy_distance(x, exact)

    _, d1 = run(1)
    _, d16 = run(16, every=6)
    x, d64 = run(64, every=6)
    _, resampled = run(64)
    assert d1 > 100 * floor and d16 < d1 / 50, (d1, d16, d64, floor)
    assert d64 < 2 * floor and resampled < 5 * floor, (d64, resampled, floor)
    cov = post.covariance()
    se_mean = cov.diagonal().sqrt() / math.sqrt(groups)
    assert bool(((x.mean(0) - post.mean()).abs() < 4 * se_mean).all()), (x.mean(0), post.mean())
    se_var = cov.diagonal() * math.sqrt(2 / groups)
    assert bool(((torch.cov(x.T).diagonal() - cov.diagonal()).abs() < 4 * se_var).all())


def _cli(args):
    from typer.testing import CliRunner

    from glass.cli import app

    return CliRunner().invoke(app, ["run", *args])


def _rows(tmp_path):
    import json

    runs = sorted(tmp_path.glob("runs/*/*/metrics.json"), key=lambda f: f.stat().st_mtime_ns)  # run order
    return [json.loads(f.read_text())["rows"] for f in runs]


def test_inverse_task_on_the_oracle_through_the_cli(tmp_path):
    """Ring oracle, inpainting at noise 0.5: FK steering with 16 GLASS particles lands near the exact
    posterior of every measurement (energy distance within a few floors, mean error small) where one
    particle (the prior) is far; guidance and best-of-N run at the stated NFE; guidance at lam = 1 is
    biased (the detached gradient's over-fit, shown); the figure is written."""
    common = ["model=gmm", "task=inverse", "reward=inpaint", "reward.noise=0.5", "task.images=3",
              "task.samples=200", "task.transitions=4", f"out_dir={tmp_path}"]  # fmt: skip
    for extra in (
        ["task.particles=1", "sampler=glass", "sampler.steps=4", "sampler.solver=midpoint"],
        [
            "task.particles=16",
            "task.resample_every=4",
            "sampler=glass",
            "sampler.steps=4",
            "sampler.solver=midpoint",
        ],
        ["task.method=guidance", "sampler=compare", "sampler.steps=4", "sampler.samplers=[ode,sde,glass]"],
        ["task.method=best_of_n", "task.particles=4", "sampler=glass", "sampler.steps=2"],
        [
            "task.method=guidance",
            "task.guidance.lam=1.0",
            "sampler=compare",
            "sampler.steps=4",
            "sampler.samplers=[sde,glass]",
        ],
    ):
        res = _cli([*common, *extra])
        assert res.exit_code == 0, res.output
    one, many, guided, best, full = _rows(tmp_path)
    assert one[0]["energy"] > 20 * one[0]["energy_floor"] and one[0]["mean_error"] > 1
    assert many[0]["energy"] < 4 * many[0]["energy_floor"] and many[0]["mean_error"] < 0.3, many
    assert many[0]["nfe_per_sample"] == 4 * 8 * 16 and many[0]["images"] == 3
    assert abs(many[0]["log_likelihood"] - many[0]["exact_log_likelihood"]) < 0.15, many  # E[r] ≈ exact
    assert [r["sampler"] for r in guided] == ["ode M=4", "sde M=4", "glass M=4"]
    assert all(r["grad_evals"] > 0 and r["nfe_per_sample"] == 16 for r in guided)
    assert best[0]["nfe_per_sample"] == 4 * 2 * 4 and best[0]["log_likelihood"] > one[0]["log_likelihood"]
    # the detached first-order guidance step over-fits y at lam = 1 (the posterior's weight): the
    # samples explain y better than exact posterior samples do, and sit measurably off the posterior
    # (E[r] above the exact one by 0.07-0.18 for the SDE, 0.24-0.43 for GLASS over reward.seed 0-2)
    for r in full:
        assert r["log_likelihood"] > r["exact_log_likelihood"] + 0.05 and r["consistency"] < 0.8, r
        assert r["energy"] > 1.5 * r["energy_floor"], r
    assert all((p / "samples.png").stat().st_size > 1000 for p in tmp_path.glob("runs/*/*"))


def test_inverse_task_on_mnist_end_to_end(tmp_path):
    common = ["model=mnist", "task=inverse", "task.images=2", "task.samples=2", "task.transitions=2",
              "sampler=glass", "sampler.steps=1", f"out_dir={tmp_path}"]  # fmt: skip
    res = _cli([*common, "reward=superres", "task.particles=2"])
    assert res.exit_code == 0, res.output
    res = _cli([*common, "reward=inpaint", "task.method=guidance"])
    assert res.exit_code == 0, res.output
    fk, guided = (rows[0] for rows in _rows(tmp_path))
    for r in (fk, guided):  # 2 images x 2 samples: label agreement counts 4 outputs
        assert r["label_agreement"] * 4 == round(r["label_agreement"] * 4) and r["fid_n_samples"] == 4
        assert r["ssim"] < 0.99 and math.isfinite(r["psnr"]) and math.isfinite(r["consistency"])
        assert r["diversity"] > 0  # one measurement's two samples differ (their own noise streams)
    assert fk["nfe_per_sample"] == 2 * 1 * 2 and guided["grad_evals"] > 0
    bad = _cli([*common, "reward=classifier"])
    assert bad.exit_code == 2 and "task=inverse needs reward=measurement" in bad.stderr
    bad = _cli([*common, "reward=inpaint", "reward.source=test:10000"])
    assert bad.exit_code == 2 and "test index must be an integer in [0, 9999]" in bad.stderr
    assert bad.stderr.count("\n") == 1


def test_inverse_task_observes_validation_images_unless_told_otherwise():
    """The default reward.source=valid:0 observes MNIST validation images 0, 1, ... (held out from the
    flow's training and disjoint from the test images FID is measured against); test:INDEX observes
    test images, with the measurement noise of the same index either way. On the oracle both splits
    name its one fixed set of exact draws."""
    from glass.data import load_mnist
    from glass.models.mnist import load_flow, to_data
    from glass.tasks.inverse import Inverse

    model, gen = load_flow(), torch.Generator().manual_seed(0)
    assert Measurement().source == "valid:0"
    for split, source in (("valid", Measurement("inpaint").source), ("test", "test:3")):
        task = Inverse(images=2, samples=2)
        inputs = task.inputs(model, None, gen, Measurement("inpaint", source=source), None)
        images, labels = load_mnist(split)
        first = int(source.partition(":")[2])
        for i, r in enumerate(inputs["rewards"]):
            torch.testing.assert_close(r.original, to_data(images[first + i : first + i + 1]).double())
            assert r.label == int(labels[first + i])
            alone = resolve_reward(Measurement("inpaint", source=f"{split}:{first + i}"), model)
            torch.testing.assert_close(r.y, alone.y)  # the measurement SPLIT:i gives, its noise too
    valid, test = (resolve_reward(Measurement("inpaint", source=f"{s}:0"), model) for s in ("valid", "test"))
    assert not torch.equal(valid.original, test.original)
    gmm = random_mixture(dim=3)
    torch.testing.assert_close(gmm.data_point(5, "valid")[0], gmm.data_point(5, "test")[0])


def test_exact_value_of_the_measurement_reward_matches_monte_carlo(tmp_path):
    """V_t(x) = log E[N(y; A z, s^2 I) | x_t = x] in closed form against exact posterior samples, and
    task=value uses it as the ground truth on the oracle."""
    gmm = random_mixture(dim=6, n_components=3, std=0.5, seed=1)
    reward = resolve_reward(Measurement("downsample", noise=0.5, factor=2, source="test:2"), gmm)
    x = gmm.sample_marginal(4, 0.4, torch.Generator().manual_seed(0))
    n = 100_000
    z = gmm.sample_posterior(x.repeat_interleave(n, 0), 0.4, torch.Generator().manual_seed(1))
    mc = torch.logsumexp(reward(z).reshape(4, n), 1) - math.log(n)
    torch.testing.assert_close(reward.exact_value(gmm, x, 0.4), mc, atol=0.02, rtol=0)
    res = _cli(["model=gmm", "task=value", "reward=inpaint", "reward.noise=0.5", "task.points=64",
                "task.n=32", "sampler=glass", "sampler.steps=4", f"out_dir={tmp_path}"])  # fmt: skip
    assert res.exit_code == 0, res.output
    (row,) = _rows(tmp_path)[0]
    assert row["truth"] == "exact" and row["pearson"] > 0.5, row


def test_image_metrics_of_the_inverse_task_on_known_answers():
    """Two samples of one MNIST test image, each with a different 2 x 2 corner block set to white:
    PSNR = 10 log10(784 / 4) each, SSIM below 1, diversity = the RMS distance sqrt(8 / 784); the
    originals themselves: SSIM 1, diversity 0, consistency = the drawn noise's RMS / s."""
    from glass.models.mnist import load_flow
    from glass.tasks.inverse import Inverse

    model = load_flow()
    x0, label = model.data_point(0, "test")
    assert bool((x0[0, 0, :2, :2] == -1).all()) and bool((x0[0, 0, :2, -2:] == -1).all())  # black corners
    reward = Measurement("inpaint", noise=0.1).observe(x0, label)
    a, b = x0[0].clone(), x0[0].clone()
    a[0, :2, :2], b[0, :2, -2:] = 1.0, 1.0
    out = Inverse._images(model, None, torch.stack([a, b])[None], [reward])
    assert out["psnr"] == pytest.approx(10 * math.log10(784 / 4), rel=1e-5)
    assert out["diversity"] == pytest.approx(math.sqrt(8 / 784), rel=1e-5) and out["ssim"] < 0.99
    assert out["label_agreement"] == 1.0
    same = Inverse._images(model, None, x0.expand(2, -1, -1, -1)[None], [reward])
    assert same["ssim"] == pytest.approx(1.0, abs=1e-6) and same["diversity"] == 0.0
    noise = reward.y - reward.op(x0)[0]
    expected = float(noise.norm() / (0.1 * math.sqrt(len(noise))))
    assert float(reward.consistency(x0)[0]) == pytest.approx(expected)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("valid:0", ("valid", 0)),
        ("test:12", ("test", 12)),
        ("photo.png", None),
        ("C:3", None),  # a drive letter, not a data set
        ("train:3", "data set 'train' is not one of valid:INDEX or test:INDEX"),
        ("Valid:0", "data set 'Valid' is not one of"),
        ("valid:\u0663", "reward.source must be valid:INDEX with an integer INDEX >= 0"),  # Arabic-Indic 3
        ("test:-1", "reward.source must be test:INDEX with an integer INDEX >= 0"),
    ],
)
def test_reward_source_names_a_data_point_a_file_or_fails_in_one_line(source, expected):
    from glass.rewards.measurement import parse_point

    if isinstance(expected, str):
        with pytest.raises(ValueError, match=expected):
            parse_point(source)
    else:
        assert parse_point(source) == expected


def test_an_existing_file_that_looks_like_a_data_point_is_read_as_a_file(tmp_path, monkeypatch):
    from glass.rewards.measurement import parse_point

    monkeypatch.chdir(tmp_path)
    (tmp_path / "train:3").write_bytes(b"")
    assert parse_point("train:3") is None


def test_the_value_truth_cache_tells_measurements_apart(tmp_path, monkeypatch):
    """task=value's cached Monte-Carlo truth is keyed by the bound reward's state: two measurements
    that differ only in their noise seed (the same repr) were given one cached truth; the same
    measurement again is read from the cache."""
    from glass.noise import Streams
    from glass.tasks import value

    gmm = random_mixture(dim=8, seed=0)
    computed = []
    monkeypatch.setattr(value, "mc_value", lambda *a, **k: (computed.append(a[2]), torch.zeros(3))[1])
    task = value.Value(t=0.3, points=3, n=2, truth_n=2, cache_dir=str(tmp_path))
    x_t = torch.randn(3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def truth(seed):
        measurement = Measurement("downsample", noise=0.3, source="test:4", factor=2, seed=seed)
        reward = resolve_reward(measurement, gmm)
        return reward, task._cached_truth(gmm, reward, x_t, Streams(5, 6), None)[1]["truth_cached"]

    (a, cached_a), (b, cached_b), (_, again) = truth(0), truth(7), truth(0)
    assert repr(a) == repr(b) and not torch.equal(a.y, b.y)
    assert (cached_a, cached_b, again) == (False, False, True) and len(computed) == 2
    import glass

    default = task.truth_kernel()  # a truth kernel whose settings changed (a new default rho) is no hit
    monkeypatch.setattr(value.Value, "truth_kernel", lambda self: glass.GLASS(default.steps, rho=0.4))
    assert truth(0)[1] is False and len(computed) == 3


def test_an_image_source_file_off_the_data_range_is_refused(tmp_path):
    """A .pt image in [0, 255] (or [0, 1] scaled wrong) is refused in one line naming reward.source:
    the measurement would be on another scale than the images the model makes (y up to 254, PSNR
    against a clamped original). A point of the oracle, whose data is not bounded, is taken as is."""
    from glass.models.mnist import load_flow

    g = torch.Generator().manual_seed(0)
    torch.save(torch.rand(1, 28, 28, generator=g, dtype=F64) * 255, tmp_path / "bytes.pt")
    off = r"reward.source=.*bytes.pt holds values in \[0.*, 25.*\]; .*\[-1, 1\]"
    with pytest.raises(ValueError, match=off):
        resolve_reward(Measurement("inpaint", source=str(tmp_path / "bytes.pt")), load_flow())
    torch.save(torch.rand(1, 28, 28, generator=g, dtype=F64) * 2 - 1, tmp_path / "ok.pt")
    assert resolve_reward(Measurement("inpaint", source=str(tmp_path / "ok.pt")), load_flow()).y is not None
    torch.save(torch.full((2,), 3.0, dtype=F64), tmp_path / "far.pt")
    assert resolve_reward(Measurement("identity", source=str(tmp_path / "far.pt")), ring()).y.shape == (2,)


def test_the_inverse_tasks_memory_check_counts_one_measurement_at_a_time():
    """Measurements run one at a time: 1,000 images x 4 samples x 64 particles hold 256 live paths of
    784 numbers (plus 4,000 kept outputs), well inside 1 GiB; counting every image's particles at once
    (256,000 paths, about 12 GiB) refused it. A run whose live paths do not fit is still refused."""
    from glass.models.mnist import load_flow
    from glass.samplers import GLASS
    from glass.tasks.base import check_budget
    from glass.tasks.inverse import Inverse

    model, kernels = load_flow(), [("glass", GLASS(2))]
    check_budget(Inverse(images=1000, samples=4, particles=64), model, kernels, memory=2**30)
    with pytest.raises(ValueError, match=r"task.samples x task.particles = 262,144 sample paths"):
        check_budget(Inverse(images=2, samples=4, particles=65536), model, kernels, memory=2**30)
