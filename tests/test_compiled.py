"""``GLASS(compile=...)``: the transition compiled with the network as one ``torch.compile`` graph
(inductor, as users run it) gives the eager loop's numbers to float rounding, the same NFE and the
same NaN reports, compiles once for every t -> t', and falls back to the eager loop (with a warning)
where it does not apply. Compiling costs seconds per graph on 2 cores: one small network, shared."""

from __future__ import annotations

import warnings

import pytest
import torch

from glass.models import from_prediction, ring
from glass.samplers import GLASS


class Net(torch.nn.Module):
    """A small velocity network; NaN for t < 0.05 (sqrt of a negative number), to test the watch."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.SiLU(), torch.nn.Linear(16, 2))

    def forward(self, x, t):
        return self.lin(torch.cat([x, t[:, None]], 1)) + torch.sqrt(t - 0.05)[:, None]


@pytest.fixture(scope="module")
def model():
    """float64 throughout, so compiled and eager may differ only by float64 rounding (a float32
    network differs by its own rounding under inductor, ~1e-7 relative)."""
    return from_prediction(Net().double(), "velocity", "linear", shape=(2,), dtype=torch.float64)


def graphs() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def run(kernel, model, x, t, tn, fallback=False, **kw):
    model.reset_nfe()
    with torch.no_grad(), warnings.catch_warnings():
        if kernel.compile and not fallback:  # falling back to the eager loop would pass every equality
            warnings.filterwarnings("error", message=".*compile does not apply")
        y = kernel.transition(model, x, t, tn, generator=torch.Generator().manual_seed(3), **kw)
    return y, model.reset_nfe()


@pytest.mark.parametrize("solver", ["euler", "multistep", "midpoint"])
def test_compiled_transition_equals_the_eager_one(model, solver):
    x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    eager, compiled = GLASS(3, rho=0.4, solver=solver), GLASS(3, rho=0.4, solver=solver, compile=True)
    for t, tn in [(0.3, 0.6), (0.1, 0.95)]:
        (ye, ne), (yc, nc) = run(eager, model, x, t, tn), run(compiled, model, x, t, tn)
        assert ne == nc == eager.nfe
        assert torch.allclose(yc, ye, atol=1e-10, rtol=0), (solver, t, (yc - ye).abs().max())
        assert not torch.equal(yc, run(compiled, model, x, t, tn + 0.01)[0])
        if t == 0.3:
            before = graphs()  # the graph of this solver and shape now exists
    assert graphs() == before, "a new t -> t' recompiled the transition"


def test_compiled_with_a_given_denoiser_and_a_nan_report(model):
    x = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    eager, compiled = GLASS(2), GLASS(2, compile=True)
    d = model.denoise(x, torch.tensor(0.4, dtype=torch.float64))
    (ye, ne), (yc, nc) = (run(k, model, x, 0.4, 0.7, denoised=d) for k in (eager, compiled))
    assert ne == nc == 1
    assert torch.allclose(yc, ye, atol=1e-10, rtol=0)
    messages = []
    for kernel in (eager, compiled):
        with pytest.raises(FloatingPointError) as err:
            run(kernel, model, x, 0.01, 0.5)
        messages.append(str(err.value))
    assert messages[0] == messages[1].replace(", compile='default'", "")  # the kernel's repr differs
    assert "network call 1 (t = 0.01)" in messages[1], messages[1]


def test_compile_falls_back_to_the_eager_loop_with_a_warning():
    oracle = ring()  # a closed-form denoiser: no network to compile
    x = oracle.sample_marginal(8, 0.3, torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="compile does not apply"):
        yc, nc = run(GLASS(4, compile=True), oracle, x, 0.3, 0.6, fallback=True)
    ye, ne = run(GLASS(4), oracle, x, 0.3, 0.6)
    assert torch.equal(yc, ye) and nc == ne == 4
    kernel = GLASS(4, compile="max-autotune")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(2):
            run(kernel, oracle, x, 0.3, 0.6, fallback=True)
    assert len(seen) == 1, "warned once per kernel"


@pytest.mark.parametrize("bad", ["fast", 1, None, "inductor"])
def test_compile_option_is_validated(bad):
    with pytest.raises(ValueError, match="compile must be true, false or a torch.compile mode"):
        GLASS(4, compile=bad)


def test_a_wrong_network_output_is_the_eager_loops_error():
    model = from_prediction(lambda x, t: x[:, :1], "velocity", "linear", shape=(2,))
    x = torch.randn(3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"the network returned \(3, 1\) for x of shape \(3, 2\)"):
        run(GLASS(2, compile=True), model, x, 0.2, 0.5)


def test_one_step_with_a_given_denoiser_has_no_network_call_to_compile(model):
    x = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    d = model.denoise(x, torch.tensor(0.4, dtype=torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to compile is not a fallback
        (yc, nc), (ye, ne) = (run(k, model, x, 0.4, 0.7, denoised=d) for k in (GLASS(1, compile=True),
                                                                                GLASS(1)))  # fmt: skip
    assert nc == ne == 0 and torch.equal(yc, ye)


def test_models_sharing_a_schedule_keep_their_own_coefficients():
    """Plans are shared by models with one Schedule object; the compiled path's device copy of each
    model's (a, b) must not be."""
    from glass.schedules import get

    sch, net = get("linear"), Net()
    kernel, eager = GLASS(3, compile=True), GLASS(3)
    x = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    for prediction in ("velocity", "x0", "velocity"):
        m = from_prediction(net, prediction, sch, shape=(2,))
        yc, ye = run(kernel, m, x, 0.3, 0.6)[0], run(eager, m, x, 0.3, 0.6)[0]
        assert torch.allclose(yc, ye, atol=1e-5, rtol=0), prediction  # float32 network: its rounding


def test_a_new_batch_size_compiles_once_for_all_batch_sizes(model):
    kernel, eager = GLASS(3, rho=0.4, compile=True), GLASS(3, rho=0.4)  # batch 6: compiled above
    seen = []
    for b in (6, 5, 7, 9):
        x = torch.randn(b, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(b))
        yc, ye = run(kernel, model, x, 0.2, 0.5)[0], run(eager, model, x, 0.2, 0.5)[0]
        assert torch.allclose(yc, ye, atol=1e-10, rtol=0), b
        seen.append(graphs())
    assert seen[1] == seen[2] == seen[3], f"graphs after each batch size: {seen}"


@pytest.mark.parametrize("prediction", ["velocity", "epsilon", "x0"])
def test_the_graphs_function_is_the_eager_loop_to_float64_rounding(monkeypatch, prediction):
    """``compiled_transition`` run as plain PyTorch (no inductor) on a float32 network: the same
    network outputs, so only the sampler's arithmetic can differ, and it is float64 as in the eager
    loop (the output's cast before the conversion matters here: at t = 0.02 an epsilon model's
    conversion amplifies float32 rounding to ~1e-6)."""
    from glass.samplers import glass as glass_module

    monkeypatch.setattr(glass_module, "_compiled_graph", lambda mode: glass_module.compiled_transition)
    m = from_prediction(Net(), prediction, "linear", shape=(2,))
    x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    for solver in ("euler", "multistep"):
        for t, tn in [(0.06, 0.5), (0.3, 0.9)]:
            yc, nc = run(GLASS(4, solver=solver, compile=True), m, x, t, tn)
            ye, ne = run(GLASS(4, solver=solver), m, x, t, tn)
            assert nc == ne == 4
            assert torch.allclose(yc, ye, atol=1e-12, rtol=1e-12), (solver, t, (yc - ye).abs().max())
