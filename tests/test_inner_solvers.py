"""The precomputed inner loop (hot path) against the paper's equations, the second-order inner
solvers, the t*-uniform inner grid, and DDPM ancestral sampling, on the exact oracle."""

import pytest
import torch

import glass
from glass.metrics.oracle import energy_distance, frechet_to_moments
from glass.models import random_mixture
from glass.samplers.glass import (
    SBAR0,
    _eval_coefficients,
    glass_denoiser,
    inner_grid,
    inner_velocity_weights,
)

from .conftest import SCHEDULES

F64 = torch.float64


def reference_transition(kernel, model, x, t, t_next, generator):
    """GLASS step by step from the equation functions (Prop. 2, Theorem 1), no precomputation."""
    c = kernel.coefficients(model.schedule, torch.as_tensor(t, dtype=F64), torch.as_tensor(t_next, dtype=F64))
    x_t = x.to(F64)
    eps = torch.randn(x_t.shape, generator=generator, dtype=F64)
    b = glass.schedules.bcast
    xbar = b(c.gamma, x_t) * x_t + SBAR0 * eps
    s_grid = inner_grid(kernel.steps, c, model.schedule, kernel.inner_grid)

    def u(xb, s):
        d = glass_denoiser(model, x_t, xb, s, c)
        w1, w2, w3 = inner_velocity_weights(s, c)
        return b(w1, xb) * xb + b(w2, xb) * d + b(w3, xb) * x_t

    for i in range(kernel.steps):
        s, h = s_grid[i], s_grid[i + 1] - s_grid[i]
        if kernel.solver == "euler":
            xbar = xbar + b(h, xbar) * u(xbar, s)
        else:
            mid = xbar + b(0.5 * h, xbar) * u(xbar, s)
            xbar = xbar + b(h, xbar) * u(mid, s + 0.5 * h)
    return xbar


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("solver,grid", [("euler", "uniform"), ("midpoint", "uniform"), ("euler", "time")])
@pytest.mark.parametrize("rho", ["ddpm", 0.4, -1.0])
def test_precomputed_plan_equals_the_equations(schedule, solver, grid, rho):
    gmm = random_mixture(dim=4, n_components=3, scale=1.0, std=0.3, seed=1, schedule=schedule)
    kernel = glass.GLASS(5, rho=rho, solver=solver, inner_grid=grid)
    x = gmm.sample_marginal(6, 0.3, torch.Generator().manual_seed(0))
    for t, t_next in [(0.3, 0.8), (0.3, 1.0)]:
        got = kernel.transition(gmm, x, t, t_next, torch.Generator().manual_seed(5))
        want = reference_transition(kernel, gmm, x, t, t_next, torch.Generator().manual_seed(5))
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("solver", ["euler", "midpoint", "multistep"])
def test_per_sample_times_equal_per_row_calls(solver):
    gmm = random_mixture(dim=4, n_components=3, scale=1.0, std=0.3, seed=1)
    kernel = glass.GLASS(4, solver=solver)
    t = torch.tensor([0.0, 0.1, 0.3, 0.5], dtype=F64)
    tn = torch.tensor([0.4, 1.0, 0.9, 1.0], dtype=F64)
    x = torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    got = kernel.transition(gmm, x, t, tn, torch.Generator().manual_seed(9))
    for i in range(4):  # same seed and batch shape: the same xbar_0 noise, row by row
        same = kernel.transition(gmm, x, t[i].expand(4), tn[i].expand(4), torch.Generator().manual_seed(9))
        scalar = kernel.transition(gmm, x, float(t[i]), float(tn[i]), torch.Generator().manual_seed(9))
        torch.testing.assert_close(same, scalar, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(got[i], same[i], rtol=1e-10, atol=1e-10)


def pathwise_error(kernel, fine, gmm, x, t, t_next):
    """Distance to a very fine solution of the same inner ODE from the same xbar_0 (same seed): a
    noise-free measure of the discretisation error."""
    a = kernel.transition(gmm, x, t, t_next, torch.Generator().manual_seed(3))
    b = fine.transition(gmm, x, t, t_next, torch.Generator().manual_seed(3))
    return float((a - b).norm(dim=1).mean())


@pytest.mark.parametrize("t_next", [0.7, 1.0])
def test_multistep_is_second_order_and_euler_first(t_next):
    gmm = random_mixture(dim=8, n_components=4, scale=1.0, std=0.3, seed=0)
    x = gmm.sample_marginal(64, 0.2, torch.Generator().manual_seed(0))
    fine = glass.GLASS(1024, solver="midpoint")
    err = {
        s: [pathwise_error(glass.GLASS(m, solver=s), fine, gmm, x, 0.2, t_next) for m in (16, 32, 64)]
        for s in ("euler", "multistep", "midpoint")
    }
    rates = {"euler": (1.6, 2.6), "multistep": (2.8, 5.0), "midpoint": (2.8, 5.0)}
    if t_next == 1.0:  # the inner velocity is singular at s = 1 (sbar = 0): only midpoint keeps its order
        rates = {"euler": (1.2, 2.6), "midpoint": (2.8, 5.0)}
    for s, (lo, hi) in rates.items():
        assert err[s][0] > err[s][1] > err[s][2], (s, err[s])
        rate = err[s][1] / err[s][2]  # error ratio when M doubles: 2 for first order, 4 for second
        assert lo < rate < hi, (s, err[s], rate)
    assert all(m < e / 1.5 for m, e in zip(err["multistep"], err["euler"]))  # at equal NFE


def test_multistep_reaches_the_exact_posterior_with_fewer_nfe():
    gmm = random_mixture(dim=16, n_components=4, scale=1.0, std=0.3, seed=0)
    x = gmm.sample_marginal(4, 0.2, torch.Generator().manual_seed(0))
    mean, cov = gmm.transition_moments(x, 0.2, 1.0)
    rep = x.repeat_interleave(4096, 0)

    def fd(kernel):
        y = kernel.transition(gmm, rep, 0.2, 1.0, torch.Generator().manual_seed(1)).reshape(4, 4096, -1)
        return float(frechet_to_moments(y, mean, cov).mean())

    exact = gmm.sample_transition(rep, 0.2, 1.0, generator=torch.Generator().manual_seed(2)).reshape(
        4, 4096, -1
    )
    floor = float(frechet_to_moments(exact, mean, cov).mean())
    euler, multi = fd(glass.GLASS(8)), fd(glass.GLASS(8, solver="multistep"))
    assert multi - floor < 0.7 * (euler - floor), (euler, multi, floor)
    assert fd(glass.GLASS(32, solver="multistep")) < floor + 0.1 * (euler - floor)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize(
    "t,t_next,rho", [(0.2, 1.0, "ddpm"), (0.0, 0.5, "ddpm"), (0.3, 0.8, 0.4), (0.3, 0.8, 1.0)]
)
def test_time_grid_makes_t_star_uniform(schedule, t, t_next, rho):
    sch = glass.schedules.get(schedule)
    kernel = glass.GLASS(6, rho=rho, inner_grid="time")
    c = kernel.coefficients(sch, torch.tensor(t, dtype=F64), torch.tensor(t_next, dtype=F64))
    s = inner_grid(6, c, sch, "time")
    assert float(s[0]) == 0.0 and float(s[-1]) == 1.0 and bool(torch.all(s[1:] > s[:-1]))
    t_star, _, _ = _eval_coefficients(sch, s[1:-1], c)
    ends = sch.g_inv(1 / (sch.alpha(c.t) ** 2 / sch.sigma(c.t) ** 2 + c.abar**2 / c.sbar**2))
    want = c.t + (ends - c.t) * torch.arange(1, 6, dtype=F64) / 6
    torch.testing.assert_close(t_star, want, rtol=1e-6, atol=1e-9)


def test_transition_moments_match_exact_samples():
    gmm = random_mixture(dim=4, n_components=3, scale=1.0, std=0.3, seed=2)
    g = torch.Generator().manual_seed(0)
    x = gmm.sample_marginal(2, 0.3, g)
    for t_next, rho in [(1.0, "ddpm"), (0.6, 0.4)]:
        mean, cov = gmm.transition_moments(x, 0.3, t_next, rho)
        y = gmm.sample_transition(x.repeat_interleave(100_000, 0), 0.3, t_next, rho=rho, generator=g)
        y = y.reshape(2, 100_000, -1)
        torch.testing.assert_close(y.mean(1), mean, atol=0.02, rtol=0)
        torch.testing.assert_close(torch.stack([torch.cov(v.T) for v in y]), cov, atol=0.02, rtol=0)


def test_ddpm_ancestral_is_chained_one_step_glass_and_converges():
    gmm = random_mixture(dim=8, n_components=4, scale=1.0, std=0.3, seed=0)
    x = gmm.sample_marginal(2000, 0.3, torch.Generator().manual_seed(0))
    one = glass.DDPM(1).transition(gmm, x, 0.3, 0.8, torch.Generator().manual_seed(1))
    torch.testing.assert_close(
        one, glass.GLASS(1).transition(gmm, x, 0.3, 0.8, torch.Generator().manual_seed(1))
    )
    g = torch.Generator().manual_seed(1)
    chained = glass.GLASS(1).transition(gmm, glass.GLASS(1).transition(gmm, x, 0.3, 0.55, g), 0.55, 0.8, g)
    torch.testing.assert_close(
        glass.DDPM(2).transition(gmm, x, 0.3, 0.8, torch.Generator().manual_seed(1)), chained
    )
    exact = gmm.sample_transition(x, 0.3, 0.8, generator=torch.Generator().manual_seed(3))
    coarse = energy_distance(one, exact)
    fine = energy_distance(
        glass.DDPM(64).transition(gmm, x, 0.3, 0.8, torch.Generator().manual_seed(4)), exact
    )
    floor = energy_distance(
        gmm.sample_transition(x, 0.3, 0.8, generator=torch.Generator().manual_seed(5)), exact
    )
    assert fine < 2 * floor + 0.005 < coarse, (coarse, fine, floor)
    gmm.reset_nfe()
    glass.DDPM(7).transition(gmm, x[:3], 0.3, 1.0)
    assert gmm.reset_nfe() == 7


def test_nfe_property_and_config():
    assert glass.GLASS(8).nfe == 8 and glass.GLASS(8, solver="multistep").nfe == 8
    assert glass.GLASS(8, solver="midpoint").nfe == 16
    with pytest.raises(ValueError, match="^inner_grid must be one of"):
        glass.GLASS(4, inner_grid="log")
    with pytest.raises(ValueError, match="^steps must be"):
        glass.DDPM(0)
