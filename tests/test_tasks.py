"""Tasks beyond the core: value estimation (exact on the oracle), comparisons on one stream, rewards,
metrics resolution, and tiny end-to-end MNIST runs of value and generate."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

import glass
from glass.cli import app
from glass.metrics import FID, Correlation, DefaultMetric, OracleDistance, resolve_metric
from glass.models.gmm import random_mixture, ring
from glass.rewards import ClassifierLogProb, LinearReward
from glass.tasks import Posterior, Value
from glass.tasks.compare import Compare, kernels_of

runner = CliRunner()


def test_exact_value_matches_monte_carlo_with_exact_posterior_samples():
    """V_t(x) = log E[exp(w.z) | x_t] in closed form vs a 200k-sample Monte-Carlo with exact
    posterior samples, at points of both modes' influence (the formula's mixture weights matter)."""
    gmm = ring(n_modes=4, radius=1.5, std=0.3)
    w = LinearReward(scale=0.8).weights(2)
    g = torch.Generator().manual_seed(0)
    x = gmm.sample_marginal(6, 0.3, g)
    exact = gmm.value(x, 0.3, w)
    n = 200_000
    z = gmm.sample_posterior(x.repeat_interleave(n, 0), 0.3, g)
    mc = torch.logsumexp((z @ w).reshape(6, n), 1) - math.log(n)
    assert torch.allclose(mc, exact, atol=5e-3), (mc, exact)
    wrong = torch.logsumexp(gmm.posterior(x, 0.3)[0] + gmm.posterior(x, 0.3)[1] @ w, 1)  # drops the variance
    assert (wrong - exact).abs().max() > 0.02


def test_value_estimator_converges_to_the_exact_value_on_the_oracle():
    """More posterior samples and steps -> estimates converge to the exact V_t; the deterministic
    ODE (one point per x_t) does not."""
    gmm = random_mixture(dim=16, n_components=4, scale=1.0, std=0.4, seed=0)
    reward, metric = LinearReward(scale=1.0), Correlation()

    def score(kernel, n):
        task = Value(t=0.3, points=64, n=n)
        return task(gmm, kernel, metric, torch.Generator().manual_seed(1), reward=reward).rows[0]

    coarse = score(glass.GLASS(2), 4)
    fine = score(glass.GLASS(16, solver="midpoint"), 512)
    ode = score(glass.ODE(16), 512)
    assert fine["truth"] == "exact" and fine["nfe"] == 32
    assert fine["rmse"] < 0.05 and fine["pearson"] > 0.995 and abs(fine["bias"]) < 0.03
    assert coarse["rmse"] > 3 * fine["rmse"]
    assert ode["rmse"] > 5 * fine["rmse"]


def test_compare_runs_every_kernel_on_the_same_points_and_stream():
    """A comparison row equals the single-kernel run with the same seed (same x_t, same noise)."""
    gmm = ring()
    metric = OracleDistance(kind="energy", floor_repeats=2)
    task = Posterior(t=0.2, points=3, n=50)
    both = task(gmm, Compare(["sde", "glass"], steps=[2, 4]), metric, torch.Generator().manual_seed(3))
    assert [r["sampler"] for r in both.rows] == ["sde M=2", "sde M=4", "glass M=2", "glass M=4"]
    alone = task(gmm, glass.GLASS(4), metric, torch.Generator().manual_seed(3))
    assert torch.equal(both.samples["glass M=4"], alone.samples["glass M=4"])
    assert both.rows[3]["energy"] == alone.rows[0]["energy"]
    assert [label for label, _ in kernels_of(Compare(["glass"], steps=2, rho=["ddpm", 0.4]))] == [
        "glass M=2",
        "glass(rho=0.4) M=2",
    ]


def test_posterior_task_noise_is_the_per_sample_streams_of_its_seed():
    """Posterior sample r of a run is the kernel's transition from x_t row r with stream r of
    Streams(seed, points x n): a function of (seed, r) only, so the same on every device and
    reproducible outside the task; and the task's own generator is not what the kernel draws from."""
    from glass.noise import Streams
    from glass.samplers.base import derive_seed

    gmm = ring()
    metric = OracleDistance(kind="energy", floor_repeats=2)
    task = Posterior(t=0.3, points=3, n=40)
    res = task(gmm, glass.GLASS(3), metric, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    z, _ = gmm.data_samples(3, g)
    x_t = glass.paths.noise_to(gmm, z, 0.3, g)
    seed = derive_seed(g)
    x_rep = x_t.repeat_interleave(40, 0)
    direct = glass.GLASS(3).transition(gmm, x_rep, 0.3, 1.0, generator=Streams(seed, 120))
    assert torch.equal(res.samples["glass M=3"], direct)
    # row r's noise is stream r whatever else is in the batch: the last point's samples alone
    tail = glass.GLASS(3).transition(gmm, x_rep[80:], 0.3, 1.0, generator=Streams(seed, 120)[80:])
    assert torch.allclose(tail, direct[80:], atol=1e-12)
    other = glass.GLASS(3).transition(gmm, x_rep, 0.3, 1.0, generator=Streams(seed + 1, 120))
    assert not torch.allclose(other, direct)


def test_mnist_posterior_sources_are_held_out_from_the_fid_reference():
    """On MNIST the noised images come from the validation split: not among the test images the
    posterior FID scores against (a sample that copies its source would score against itself), and
    not among the flow's training images."""
    from glass.data import load_mnist
    from glass.models.mnist import load_flow, to_data

    model = load_flow()
    task = Posterior(t=0.7, points=3, n=1)
    res = task(model, glass.GLASS(1), lambda s: {}, torch.Generator().manual_seed(0))
    z = res.reference.float().flatten(1)
    assert res.rows[0]["label_agreement"] >= 0 and len(z) == 3

    def found(split):
        images = to_data(load_mnist(split)[0]).flatten(1)
        return [bool((images == row).all(1).any()) for row in z]

    assert found("valid") == [True] * 3
    assert found("test") == [False] * 3 and found("train") == [False] * 3


def test_rewards_contract():
    z = torch.randn(5, 1, 28, 28)
    logp = torch.stack([ClassifierLogProb(target=c)(z) for c in range(10)], 1)
    assert logp.shape == (5, 10) and logp.dtype == torch.float64 and (logp <= 0).all()
    assert torch.allclose(logp.exp().sum(1), torch.ones(5, dtype=torch.float64), atol=1e-5)
    lin = LinearReward(scale=2.0, direction=[3.0, 4.0])
    assert torch.allclose(lin(torch.tensor([[1.0, 1.0]])), torch.tensor([2.0 * 7 / 5], dtype=torch.float64))
    with pytest.raises(ValueError, match="reward.direction has 2 entries"):
        lin(torch.ones(1, 3))


def test_correlation_metric_and_default_metric_resolution():
    t = torch.linspace(0, 1, 20, dtype=torch.float64)
    m = Correlation()(2 * t + 1, t)
    assert m["pearson"] == pytest.approx(1) and m["spearman"] == pytest.approx(1) and m["bias"] > 0
    assert Correlation()(-t, t)["spearman"] == pytest.approx(-1)
    flat = Correlation()(torch.full_like(t, 3.0), t)  # constant estimates: no correlation is defined
    assert math.isnan(flat["pearson"]) and math.isnan(flat["spearman"]) and flat["bias"] == pytest.approx(2.5)
    stats = pytest.importorskip("scipy.stats")
    ranked = Correlation()(t.round(decimals=1), t)  # ties: average ranks, as scipy
    assert ranked["spearman"] == pytest.approx(stats.spearmanr(t.round(decimals=1), t).statistic, abs=1e-5)
    with pytest.raises(ValueError, match="same length"):
        Correlation()(t, t[:5])
    gmm = ring()
    assert isinstance(resolve_metric(DefaultMetric(), "posterior", gmm), OracleDistance)
    assert isinstance(resolve_metric(DefaultMetric(), "value", gmm), Correlation)
    from glass.models.mnist import load_flow

    assert isinstance(resolve_metric(DefaultMetric(), "generate", load_flow()), FID)


def test_value_ground_truth_noise_is_independent_of_the_estimates(tmp_path):
    """An estimate drawn with the truth's own kernel, steps and sample count is a fresh Monte-Carlo
    estimate, not a copy of the truth: the truth draws its noise from streams of its own (sharing
    them made a GLASS estimate of point 0 start from the truth's very draws)."""
    from glass.models.mnist import load_flow

    model = load_flow()
    task = Value(t=0.2, points=4, n=3, truth_n=3, truth_steps=2, cache_dir=str(tmp_path))
    res = task(model, glass.GLASS(2), Correlation(), torch.Generator().manual_seed(0),
               reward=ClassifierLogProb(target=0))  # fmt: skip
    estimate, truth = res.samples["glass M=2"], res.reference
    assert estimate.shape == truth.shape == (4,)
    assert (estimate - truth).abs().min() > 1e-6, (estimate, truth)
    assert res.rows[0]["rmse"] > 1e-6


def test_value_on_mnist_end_to_end_with_cached_truth(tmp_path):
    """Tiny MNIST value run: one row per kernel; the Monte-Carlo ground truth is computed once, then
    read from the cache (same numbers); a damaged cache file is recomputed, not trusted."""
    args = [
        "run",
        "task=value",
        "task.points=4",
        "task.n=2",
        "task.truth_n=3",
        "task.truth_steps=2",
        "sampler.samplers=[sde,glass]",
        "sampler.steps=[1]",
        f"out_dir={tmp_path}",
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    runs = sorted(p for p in tmp_path.glob("runs/*/*") if p.is_dir())
    a, b = (json.loads((r / "metrics.json").read_text())["rows"] for r in runs)
    assert [r["sampler"] for r in a] == ["sde M=1", "glass M=1"]
    assert not a[0]["truth_cached"] and b[0]["truth_cached"]
    assert a[0]["truth_network_calls"] == 2 and a[0]["nfe"] == 1
    assert [r["pearson"] for r in a] == [r["pearson"] for r in b]
    (cache,) = (tmp_path / "cache").glob("value-truth-*.pt")
    cache.write_bytes(b"garbage")
    third = runner.invoke(app, args)
    assert third.exit_code == 0, third.output
    assert torch.load(cache, weights_only=True).shape == (4,)
    (c,) = (json.loads((r / "metrics.json").read_text())["rows"] for r in
            sorted(p for p in tmp_path.glob("runs/*/*") if p.is_dir()) if r not in runs)  # fmt: skip
    assert not c[0]["truth_cached"] and [r["pearson"] for r in c] == [r["pearson"] for r in a]


def test_generate_on_mnist_end_to_end(tmp_path):
    res = runner.invoke(
        app,
        [
            "run",
            "task=generate",
            "task.n=6",
            "task.transitions=2",
            "sampler.samplers=[ode,glass]",
            "sampler.steps=[1]",
            f"out_dir={tmp_path}",
        ],
    )
    assert res.exit_code == 0, res.output
    (run,) = [p for p in tmp_path.glob("runs/*/*") if p.is_dir()]
    rows = json.loads((run / "metrics.json").read_text())["rows"]
    assert [(r["sampler"], r["nfe"], r["fid_n_samples"]) for r in rows] == [
        ("ode M=1", 2, 6),
        ("glass M=1", 2, 6),
    ]
    assert all(r["fid"] > 0 for r in rows) and (run / "samples.png").stat().st_size > 1000


def test_the_value_truth_cache_key_is_the_classifiers_weights_not_its_loading_state(tmp_path):
    """The classifier reward loads its network lazily: the key was taken with ``_net=None`` before its
    first call and without it after (a sweep sharing the reward recomputed hours of truth), and the
    weights were never in it (a checkpoint replaced at the same path reused a stale truth)."""
    from glass.rewards.classifier import ClassifierLogProb
    from glass.tasks.value import _reward_state

    fresh, used = ClassifierLogProb(target=3), ClassifierLogProb(target=3)
    used(torch.zeros(1, 1, 28, 28))  # loaded and run
    assert _reward_state(fresh) == _reward_state(used)
    assert _reward_state(ClassifierLogProb(target=4)) != _reward_state(used)
    with torch.no_grad():
        next(used.net("cpu").parameters()).add_(1e-3)  # other weights, same path and target
    assert _reward_state(fresh) != _reward_state(used)


def test_kernel_time_is_the_sampling_without_the_metric(monkeypatch):
    """``kernel_time_s`` (the CLI's "sampling s") leaves out the metric each kernel's samples are scored
    with: the first kernel of a comparison paid the metric's one-time costs (seconds beside 0.003 s).
    A clock that moves only while the metric runs: the kernels' times are 0."""
    from glass.tasks import base

    clock = [0.0]
    monkeypatch.setattr(base.time, "perf_counter", lambda: clock[0])

    class Slow(OracleDistance):
        def __call__(self, samples, exact):
            clock[0] += 100.0
            return super().__call__(samples, exact)

    kernels, metric = Compare(["ode", "glass"], steps=[1]), Slow(kind="energy", floor_repeats=2)
    res = Posterior(t=0.2, points=2, n=10)(ring(), kernels, metric, torch.Generator().manual_seed(0))
    assert [r["kernel_time_s"] for r in res.rows] == [0.0, 0.0] and clock[0] == 400.0  # 2 points x 2 kernels
