"""The low-frequency prior (Malnick et al.), trajectory curvature, and the exact-assignment check."""

import pytest
import torch

from glass.metrics.curvature import path_curvature
from glass.models.base import from_prediction
from glass.models.gmm import ring
from glass.priors import Gaussian, LowFrequency, low_pass
from glass.priors.assignment import kept_fraction
from glass.priors.lowfreq import upsample


def test_low_pass_is_shape_preserving_and_removes_high_frequencies():
    x = torch.randn(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = low_pass(x, 4)
    assert y.shape == x.shape
    power_x, power_y = torch.fft.fft2(x).abs() ** 2, torch.fft.fft2(y).abs() ** 2
    f = torch.fft.fftfreq(28).abs()
    radius = f[:, None].maximum(f[None, :])
    high, low = radius > 0.2, radius < 0.08
    assert power_y[..., high].sum() < 0.01 * power_x[..., high].sum()  # high band removed
    assert power_y[..., low].sum() > 0.7 * power_x[..., low].sum()  # low band kept
    flat = torch.full((1, 1, 28, 28), 0.3)
    assert torch.allclose(low_pass(flat, 4), flat, atol=1e-6)  # constants pass unchanged


def test_low_frequency_pairs_and_options():
    prior = LowFrequency(factor=4, a=0.3)  # a != 1 - a: swapped weights would show
    x1 = torch.randn(8, 1, 28, 28)
    g = torch.Generator().manual_seed(1)
    x0 = prior.pair(x1, g)
    eps = torch.randn(x1.shape, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(x0, 0.7 * low_pass(x1, 4) + 0.3 * eps, atol=1e-6)
    low = torch.randn(2, 1, 7, 7, generator=torch.Generator().manual_seed(3))
    x0 = prior.from_low(low, (28, 28), torch.Generator().manual_seed(2))
    eps = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    assert x0.shape == (2, 1, 28, 28)
    assert torch.allclose(x0, 0.7 * upsample(low, (28, 28)) + 0.3 * eps, atol=1e-6)  # float32 rounding
    assert Gaussian().pair(x1, g).shape == x1.shape
    for bad, message in (({"factor": 1}, "prior.factor must be an integer >= 2, got 1"),
                         ({"a": 0.0}, r"prior.a must be in \(0, 1\], got 0.0"),
                         ({"a": 1.5}, r"prior.a must be in \(0, 1\], got 1.5")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            LowFrequency(**bad)


def test_curvature_is_zero_for_straight_paths_and_positive_for_a_curved_flow():
    """A point-mass target c gives straight constant-speed paths x_t = (1 - t) x0 + t c: curvature 0.
    The 8-mode ring's flow bends paths: curvature clearly positive."""
    c = torch.tensor([0.7, -1.2], dtype=torch.float64)
    straight = from_prediction(lambda x, t: c.expand_as(x), "x0", "linear", shape=(2,))
    x0 = torch.randn(256, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert float(path_curvature(straight, x0, steps=20).max()) < 1e-20
    curved = path_curvature(ring(), x0, steps=50)
    assert float(curved.mean()) > 0.05 and bool((curved >= 0).all())


def test_assignment_check_on_toy_couplings():
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(200, 10, generator=g, dtype=torch.float64)
    near = x1 + 0.01 * torch.randn(x1.shape, generator=g, dtype=torch.float64)
    assert kept_fraction(near, x1) == 1.0  # each x1 is its own nearest partner: identity optimal
    shuffled = near[torch.randperm(200, generator=g)]
    assert kept_fraction(shuffled, x1) < 0.05  # a random pairing is almost never optimal
    # the low-frequency prior with little noise keeps its pairs; pure noise (a = 1) does not
    images = torch.randn(64, 1, 28, 28, generator=g)
    smooth = low_pass(images, 2) * 3
    assert kept_fraction(LowFrequency(2, 0.2).pair(smooth, g), smooth) > 0.95
    assert kept_fraction(LowFrequency(2, 1.0).pair(smooth, g), smooth) < 0.2
    with pytest.raises(ValueError):
        kept_fraction(x1[:3], x1)


def test_low_frequency_training_runs_and_the_model_refuses_glass(tmp_path):
    """A tiny run of both trainers; the exported pair loads as model=mnist_lowfreq, generates from
    its designed prior with the ODE (effective NFE counts G), and refuses GLASS and noising tasks."""
    from typer.testing import CliRunner

    from glass.cli import app
    from glass.models.lowfreq import load_lowfreq_flow
    from glass.train.flow import FlowTrainer
    from glass.train.lowres import LowResTrainer

    prior = {"name": "lowfreq", "factor": 4, "a": 0.5}
    res = FlowTrainer(batch_size=4, max_steps=2, checkpoint_every=1, export=str(tmp_path / "flow"), samples=0,
                      prior=prior)(tmp_path / "run")  # fmt: skip
    assert res["steps"] == 2
    LowResTrainer(batch_size=8, max_steps=3, hidden=32, depth=2, export=str(tmp_path / "g"))(
        tmp_path / "g_run"
    )
    model = load_lowfreq_flow(str(tmp_path / "flow.safetensors"), str(tmp_path / "g.safetensors"), g_steps=2)
    x0 = model.prior_sample(5, torch.Generator().manual_seed(0))
    assert x0.shape == (5, 1, 28, 28) and model.nfe == 0 and model.lowres.nfe == 2
    assert 0 < model.prior_cost() < 2 * 2  # G is far cheaper than the UNet
    common = [
        "model=mnist_lowfreq", f"model.path={tmp_path / 'flow.safetensors'}",
        f"model.lowres={tmp_path / 'g.safetensors'}", "model.g_steps=2", f"out_dir={tmp_path}",
    ]  # fmt: skip
    ok = CliRunner().invoke(
        app, ["run", *common, "task=generate", "task.n=4", "task.transitions=1", "sampler=ode",
              "sampler.steps=2", "metric=curvature", "metric.n=4", "metric.steps=3"],
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    import json

    (run,) = [p for p in tmp_path.glob("runs/*/*") if p.is_dir()]
    row = json.loads((run / "metrics.json").read_text())["rows"][0]
    assert row["nfe"] == 2 and 2 < row["nfe_effective"] < 2 + 4 and row["curvature"] > 0 and "fid" in row
    for bad in (["task=generate", "sampler=glass"], ["task=posterior", "sampler=ode"]):
        res = CliRunner().invoke(app, ["run", *common, *bad])
        assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.output


def test_glass_train_prior_lowfreq_on_the_cli(tmp_path):
    """`glass train prior=lowfreq` trains the flow model with the low-frequency prior in its own run
    directory (never resuming the Gaussian model's checkpoint)."""
    import torch as _torch
    from typer.testing import CliRunner

    from glass.cli import app

    args = ["train", "prior=lowfreq", "prior.factor=2", "trainer.max_steps=1", "trainer.batch_size=2",
            "trainer.export=null", "trainer.samples=0", f"out_dir={tmp_path}"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    state = _torch.load(tmp_path / "train" / "flow_lowfreq" / "last.pt", weights_only=True)
    assert state["config"]["prior"] == {"name": "lowfreq", "factor": 2, "a": 0.5} and state["step"] == 1
