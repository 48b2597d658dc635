"""Issue 19 item 2: no host-device synchronisation inside the SDE, ODE, DDPM and GLASS loops.

A transition with times shared by the batch reads exactly one value on the host: the NaN / Inf
check at its end (``Model.check_outputs``). Counted on the ``meta`` device (tests/syncs.py), where
every such read is what would synchronise a GPU; the CPU runs the same code.
"""

from __future__ import annotations

import pytest
import torch

import glass
from glass.models.base import EPSILON_AT_ZERO, from_prediction
from tests.syncs import SyncAudit

KERNELS = [
    glass.SDE(4),
    glass.ODE(4),
    glass.ODE(3, method="heun"),
    glass.ODE(4, method="ddim"),
    glass.DDPM(4),
    glass.GLASS(4, rho=0.4),
    glass.GLASS(4, rho="ddpm", solver="midpoint"),
    glass.GLASS(4, rho=0.4, solver="multistep", inner_grid="time"),
]
END_CHECK = [("__bool__", "models/base.py:check_outputs")]


def audited(kernel, model, x, t=0.3, t_next=0.6, **cond):
    model.reset_nfe()
    with torch.no_grad(), SyncAudit() as audit:
        kernel.transition(model, x, t, t_next, **cond)
    assert kernel.steps <= model.nfe <= kernel.nfe  # the loop ran through the network (Heun: its DDIM
    # step from t = 0 on the VP path makes one call fewer)
    return audit.reads


@pytest.mark.parametrize("prediction", ["x0", "velocity", "epsilon", "v"])
@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.label)
def test_one_read_per_transition_for_every_prediction_type(kernel, prediction):
    net = torch.nn.Linear(6, 6, device="meta")
    model = from_prediction(lambda x, t: net(x), prediction, "vp", shape=(6,), device="meta")
    x = torch.empty(5, 6, device="meta", dtype=torch.float64)
    assert audited(kernel, model, x) == END_CHECK
    if prediction != "epsilon":  # from t = 0 on the VP path: the SDE's ancestral and the ODE's DDIM
        assert audited(kernel, model, x, 0.0, 0.5) == END_CHECK  # branches, decided on the host


def test_the_audit_sees_a_synchronisation():
    """It can fail: per-sample times make the SDE decide its start branch on the device."""
    net = torch.nn.Linear(6, 6, device="meta")
    model = from_prediction(lambda x, t: net(x), "velocity", shape=(6,), device="meta")
    x = torch.empty(5, 6, device="meta", dtype=torch.float64)
    t = torch.full((5,), 0.3, device="meta", dtype=torch.float64)
    reads = audited(glass.SDE(4), model, x, t, 0.6)
    assert len(reads) > len(END_CHECK) and ("__bool__", "samplers/sde.py:transition") in reads


@pytest.mark.parametrize("family", ["flux", "sd3", "sd"])
def test_pipelines_read_nothing_inside_the_loop(family):
    pytest.importorskip("diffusers")
    from tests.tiny_pipes import MAX_SEQUENCE_LENGTH, PIPES

    pipe = PIPES[family]().to("meta")
    model = glass.from_pipe(pipe, height=32, width=32, max_sequence_length=MAX_SEQUENCE_LENGTH[family])
    x = torch.empty(2, *model.shape, device="meta", dtype=torch.float64)
    prompt = ["a cat", "a red car"]
    with torch.no_grad(), SyncAudit():
        glass.ODE(1).transition(model, x, 0.3, 0.6, prompt=prompt)  # encodes the prompts once
    for kernel in (glass.SDE(3), glass.ODE(3), glass.DDPM(3), glass.GLASS(3)):
        assert audited(kernel, model, x, prompt=prompt) == END_CHECK, kernel


def test_epsilon_model_at_t0_is_named_when_times_live_on_the_device(monkeypatch):
    """On an accelerator the t = 0 check is not made per call (a read each); the end-of-transition
    check names it instead: the same ValueError as on the host, never an Inf."""
    import glass.models.base as base
    from glass.models import GaussianMixture

    monkeypatch.setattr(base, "_on_host", lambda t: False)
    gmm = GaussianMixture(torch.tensor([[1.0, 0.0], [-1.0, 0.5]]), 0.3)
    net = from_prediction(lambda x, t: gmm.schedule.x0_to_eps(gmm.denoise(x, t), x, t), "epsilon", shape=(2,))
    kernels = (glass.GLASS(2), glass.GLASS(2, solver="multistep"), glass.SDE(2), glass.ODE(2), glass.DDPM(2))
    for kernel in kernels:
        with pytest.raises(ValueError, match="cannot give the denoiser at t = 0") as err:
            glass.generate(net, kernel, 2, n=4)
        assert str(err.value) == EPSILON_AT_ZERO
    with pytest.raises(ValueError, match="cannot give the denoiser at t = 0"):  # a host time: at once
        net.denoise(torch.zeros(3, 2), 0.0)
