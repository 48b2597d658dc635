import math

import pytest
import torch

from glass import schedules
from glass.models import CallableModel, GaussianMixture

from .conftest import SCHEDULES

T = torch.linspace(0.02, 0.98, 49, dtype=torch.float64)


@pytest.mark.parametrize("name", SCHEDULES)
def test_boundary_values(name):
    s = schedules.get(name)
    assert float(s.alpha(0.0)) == pytest.approx(0, abs=1e-12)
    assert float(s.alpha(1.0)) == pytest.approx(1, abs=1e-12)
    assert float(s.sigma(0.0)) == pytest.approx(1, abs=1e-12)
    assert float(s.sigma(1.0)) == pytest.approx(0, abs=1e-12)
    assert torch.all(torch.diff(s.g(T)) < 0), "g must be strictly decreasing"


@pytest.mark.parametrize("name", SCHEDULES)
def test_g_inverse_round_trip(name):
    s = schedules.get(name)
    assert torch.allclose(s.g_inv(s.g(T)), T, atol=1e-12)
    # the closed form agrees with the bisection fallback of the base class
    assert torch.allclose(schedules.Schedule.g_inv(s, s.g(T)), T, atol=1e-10)
    assert float(s.g_inv(0.0)) == pytest.approx(1.0)
    assert float(s.g_inv(float("inf"))) == pytest.approx(0.0)


@pytest.mark.parametrize("name", SCHEDULES)
def test_derivatives_match_finite_differences(name):
    s, h = schedules.get(name), 1e-6
    assert torch.allclose(s.d_alpha(T), (s.alpha(T + h) - s.alpha(T - h)) / (2 * h), atol=1e-6)
    assert torch.allclose(s.d_sigma(T), (s.sigma(T + h) - s.sigma(T - h)) / (2 * h), atol=1e-6)


def test_closed_forms_of_design_table():
    t = torch.tensor(0.3, dtype=torch.float64)
    assert float(schedules.get("linear").g(t)) == pytest.approx((0.7 / 0.3) ** 2)
    assert float(schedules.get("vp").g(t)) == pytest.approx(1 / 0.3 - 1)
    assert float(schedules.get("cosine").g(t)) == pytest.approx(1 / math.tan(math.pi * 0.3 / 2) ** 2)
    assert float(schedules.get("vp").nu2(t)) == pytest.approx(1 / 0.3)
    assert float(schedules.get("linear").nu2(t)) == pytest.approx(2 * 0.7 / 0.3)


def test_custom_schedule_uses_autograd_and_bisection():
    ref = schedules.get("cosine")
    c = schedules.Custom(lambda t: torch.sin(math.pi / 2 * t), lambda t: torch.cos(math.pi / 2 * t))
    assert torch.allclose(c.d_alpha(T), ref.d_alpha(T), atol=1e-12)
    assert torch.allclose(c.d_sigma(T), ref.d_sigma(T), atol=1e-12)
    assert torch.allclose(c.g_inv(ref.g(T)), T, atol=1e-10)
    with pytest.raises(ValueError, match="alpha\\(0\\)=0"):
        schedules.Custom(lambda t: t + 0.1, lambda t: 1 - t)


def test_unknown_schedule_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown schedule 'foo'; choose from: cosine, linear, vp"):
        schedules.get("foo")


@pytest.mark.parametrize("name", SCHEDULES)
def test_conversions_round_trip(name, gen):
    s = schedules.get(name)
    x = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    d = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    t = torch.rand(64, generator=gen, dtype=torch.float64) * 0.9 + 0.05
    assert torch.allclose(s.velocity_to_x0(s.x0_to_velocity(d, x, t), x, t), d, atol=1e-9)
    assert torch.allclose(s.eps_to_x0(s.x0_to_eps(d, x, t), x, t), d, atol=1e-9)
    assert torch.allclose(s.v_to_x0(s.x0_to_v(d, x, t), x, t), d, atol=1e-9)


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("prediction", ["velocity", "epsilon", "x0", "v"])
def test_adapters_recover_the_denoiser(name, prediction, gen):
    """A network predicting velocity / eps / x0 / v of the oracle is adapted back to its denoiser."""
    gmm = GaussianMixture(torch.tensor([[1.0, 0.0], [-1.0, 0.5]]), 0.3, schedule=name)
    s = gmm.schedule
    to_pred = {
        "velocity": s.x0_to_velocity,
        "epsilon": s.x0_to_eps,
        "x0": lambda d, x, t: d,
        "v": s.x0_to_v,
    }[prediction]
    net = CallableModel(
        lambda x, t: to_pred(gmm.denoise(x, t), x, t),
        prediction,
        schedule=name,
        shape=(2,),
        dtype=torch.float64,
    )
    x = torch.randn(128, 2, generator=gen, dtype=torch.float64)
    for t in (0.1, 0.5, 0.9):
        assert torch.allclose(net.denoise(x, t), gmm.denoise(x, t), atol=1e-8)
    assert net.nfe == 3
    with pytest.raises(ValueError, match="unknown prediction type"):
        CallableModel(lambda x, t: x, "score")


def test_adapters_against_hand_written_conventions(gen):
    """Not circular: velocity and epsilon targets written out by hand for the linear and VP paths."""
    t = 0.3
    for name, vel, eps in [
        ("linear", lambda d, x: (d - x) / (1 - t), lambda d, x: (x - t * d) / (1 - t)),
        (
            "vp",
            lambda d, x: d / (2 * t**0.5) - (x - t**0.5 * d) / (1 - t) ** 0.5 / (2 * (1 - t) ** 0.5),
            lambda d, x: (x - t**0.5 * d) / (1 - t) ** 0.5,
        ),
    ]:
        gmm = GaussianMixture(torch.tensor([[1.0, 0.0], [-1.0, 0.5]]), 0.3, schedule=name)
        x = torch.randn(32, 2, generator=gen, dtype=torch.float64)
        for pred, fn in (("velocity", vel), ("epsilon", eps)):
            net = CallableModel(
                lambda x_, t_, fn=fn, g=gmm: fn(g.denoise(x_, t), x_), pred, name, (2,), torch.float64
            )
            assert torch.allclose(net.denoise(x, t), gmm.denoise(x, t), atol=1e-10), (name, pred)


def test_epsilon_model_at_t0_is_an_error_not_a_nan():
    import glass

    gmm = GaussianMixture(torch.tensor([[1.0, 0.0], [-1.0, 0.5]]), 0.3)
    net = CallableModel(lambda x, t: gmm.schedule.x0_to_eps(gmm.denoise(x, t), x, t), "epsilon", shape=(2,))
    with pytest.raises(ValueError, match="cannot give the denoiser at t = 0"):
        glass.generate(net, glass.GLASS(2), 2, n=4)
    x = glass.generate(net, glass.GLASS(4), [1e-3, 0.5, 1.0], n=200)
    assert torch.isfinite(x).all()


def test_float32_network_matches_float64_within_float32_precision():
    """Only the network input is cast; the scalar algebra stays float64."""
    import glass

    gmm = GaussianMixture(torch.tensor([[1.0, 0.0], [-1.0, 0.5]]), 0.3)
    net32 = CallableModel(
        lambda x, t: gmm.denoise(x.double(), t.double()).float(), "x0", shape=(2,), dtype=torch.float32
    )
    x = gmm.sample_marginal(256, 0.2)
    a = glass.GLASS(8).transition(gmm, x, 0.2, 1.0, torch.Generator().manual_seed(0))
    b = glass.GLASS(8).transition(net32, x, 0.2, 1.0, torch.Generator().manual_seed(0))
    assert b.dtype == torch.float64 and float((a - b).abs().max()) < 1e-4
