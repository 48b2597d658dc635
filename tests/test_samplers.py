"""The ODE and SDE baselines converge to the exact answers of the oracle as steps grow."""

import pytest
import torch

import glass
from glass.metrics.oracle import energy_distance
from glass.models import random_mixture, ring

from .conftest import floor_stats


@pytest.mark.parametrize("factory,n", [(ring, 3000), (random_mixture, 2000)])
@pytest.mark.parametrize("t_next", [0.6, 1.0])
def test_sde_approaches_the_ddpm_transition(factory, n, t_next):
    """Eq. 5 with Euler-Maruyama converges to the exact DDPM kernel (GLASS with rho_DDPM, Prop. 1)."""
    gmm = factory()
    g = torch.Generator().manual_seed(0)
    x = gmm.sample_marginal(1, 0.2, g).expand(n, -1).clone()
    exact = lambda: gmm.sample_transition(x, 0.2, t_next, "ddpm", generator=g)  # noqa: E731
    ref = exact()
    tol, far = floor_stats(exact, ref)
    coarse = energy_distance(glass.SDE(2).transition(gmm, x, 0.2, t_next, g), ref)
    fine = energy_distance(glass.SDE(256).transition(gmm, x, 0.2, t_next, g), ref)
    assert coarse > far and fine < tol, (coarse, fine, tol, far)


def test_sde_last_step_returns_the_denoiser():
    gmm = ring()
    x = gmm.sample_marginal(50, 0.9)
    out = glass.SDE(1).transition(gmm, x, 0.9, 1.0)
    assert torch.allclose(out, gmm.denoise(x, 0.9))


def test_ode_generation_converges_and_heun_is_second_order():
    gmm = random_mixture(64)
    g = torch.Generator().manual_seed(1)
    exact = lambda: gmm.sample(2000, g)  # noqa: E731
    ref = exact()
    tol, far = floor_stats(exact, ref)
    x0 = torch.randn(2000, 64, generator=g, dtype=torch.float64)
    err = {
        k: energy_distance(glass.generate(gmm, k, 1, x=x0), ref)
        for k in (glass.ODE(4), glass.ODE(16), glass.ODE(16, "heun"), glass.ODE(64, "heun"))
    }
    euler4, euler16, heun16, heun64 = err.values()
    assert euler4 > far and euler16 < euler4
    assert heun16 < euler16 and heun64 < tol, err


def test_ode_transition_preserves_marginals():
    gmm = ring(schedule="cosine")
    g = torch.Generator().manual_seed(4)
    x = gmm.sample_marginal(3000, 0.1, g)
    exact = lambda: gmm.sample_marginal(3000, 0.8, g)  # noqa: E731
    ref = exact()
    tol, far = floor_stats(exact, ref)
    assert energy_distance(glass.ODE(32, "heun").transition(gmm, x, 0.1, 0.8), ref) < tol
    assert energy_distance(x, ref) > far


def test_ode_is_deterministic_and_counts_nfe():
    gmm = ring()
    x = gmm.sample_marginal(20, 0.3)
    a = glass.ODE(5, "heun").transition(gmm, x, 0.3, 1.0)
    assert gmm.reset_nfe() == 9  # 2 per step, the last step (ending at t = 1) is Euler
    b = glass.ODE(5, "heun").transition(gmm, x, 0.3, 1.0, torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


@pytest.mark.parametrize("schedule", ["linear", "vp", "cosine"])
def test_every_kernel_generates_from_noise_on_every_schedule(schedule):
    gmm = ring(schedule=schedule)
    g = torch.Generator().manual_seed(5)
    for kernel in (glass.ODE(8, "heun"), glass.SDE(32), glass.GLASS(8, solver="midpoint")):
        x = glass.generate(gmm, kernel, 4, n=500, generator=g)
        assert torch.isfinite(x).all()
        assert abs(float(x.norm(dim=1).mean()) - 1.5) < 0.15  # mass on the ring of radius 1.5


def test_time_grid_validation():
    assert glass.time_grid(4).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert glass.time_grid([0, 0.2, 1]).tolist() == [0.0, 0.2, 1.0]
    for bad in (0, [0.1, 1.0], [0.0, 0.5, 0.4, 1.0], [0.0, 0.9]):
        with pytest.raises(ValueError):
            glass.time_grid(bad)
