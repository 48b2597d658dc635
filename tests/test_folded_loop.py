"""GLASS's folded Euler loop (``GLASS._folded``: the denoiser of a network behind ``from_prediction``
folded into the update through ``Model.affine``) gives the plain loop's numbers, NFE and NaN reports."""

from __future__ import annotations

import pytest
import torch

from glass.models import CallableModel, from_prediction, ring
from glass.samplers import GLASS


class Plain(CallableModel):
    """The same network, with the plain loop (denoise per step)."""

    def affine(self, t):
        return None


def network(oracle, prediction):
    """A network predicting ``prediction`` exactly (the oracle's denoiser, converted)."""
    sch = oracle.schedule

    def fn(x, t):
        x64, t64 = x.double(), t.double()
        d = oracle.denoise(x64, t64)
        a, s = sch.alpha(t64)[:, None], sch.sigma(t64)[:, None]
        out = {"x0": d, "velocity": sch.x0_to_velocity(d, x64, t64), "epsilon": (x64 - a * d) / s,
               "v": a * (x64 - a * d) / s - s * d}[prediction]  # fmt: skip
        return out.to(x.dtype)

    return fn


@pytest.mark.parametrize("prediction", ["x0", "velocity", "epsilon", "v"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_folded_loop_equals_the_plain_loop(prediction, dtype):
    oracle = ring()
    fn = network(oracle, prediction)
    folded = from_prediction(fn, prediction, "linear", shape=(2,), dtype=dtype)
    plain = Plain(fn, prediction, "linear", shape=(2,), dtype=dtype)
    x = oracle.sample_marginal(128, 0.3, torch.Generator().manual_seed(1))
    for kernel, (t, tn) in [(GLASS(8), (0.3, 0.6)), (GLASS(3, rho=0.4), (0.1, 0.9)), (GLASS(1), (0.5, 0.7))]:
        ys = []
        for model in (folded, plain):
            model.reset_nfe()
            for _ in range(2):  # the second call reuses the kept plan and coefficients
                y = kernel.transition(model, x, t, tn, generator=torch.Generator().manual_seed(0))
            ys.append((y, model.reset_nfe()))
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        assert torch.allclose(ys[0][0], ys[1][0], atol=tol, rtol=0), (prediction, kernel)
        assert ys[0][1] == ys[1][1] == 2 * kernel.steps
    assert folded.__dict__.get("_affine"), "the folded loop ran (it asked for the coefficients)"


def test_folded_loop_with_a_given_denoiser_and_nan_reports():
    oracle = ring()
    fn = network(oracle, "velocity")
    folded, plain = (cls(fn, "velocity", "linear", shape=(2,), dtype=torch.float64)
                     for cls in (CallableModel, Plain))  # fmt: skip
    x = oracle.sample_marginal(16, 0.3, torch.Generator().manual_seed(1))
    d = oracle.denoise(x, 0.3)
    y = [GLASS(4).transition(m, x, 0.3, 0.6, generator=torch.Generator().manual_seed(0), denoised=d)
         for m in (folded, plain)]  # fmt: skip
    assert torch.allclose(y[0], y[1], atol=1e-12) and folded.nfe == plain.nfe == 3

    calls = {"n": 0}

    def broken(x, t):
        calls["n"] += 1
        out = fn(x, t)
        return out * float("nan") if calls["n"] == 3 else out

    with pytest.raises(FloatingPointError, match="network call 3 "):
        GLASS(4).transition(from_prediction(broken, "velocity", shape=(2,), dtype=torch.float64), x, 0.3, 0.6)
