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
    # multistep is second order; its corrector makes the error constant small, so at these M the
    # error still falls faster than 4x per doubling on a smooth path (~7x here, ~3.5x from M = 64 on);
    # at s = 1 of a posterior (sbar = 0, a singular inner velocity) it stays second order
    rates = {"euler": (1.6, 2.6), "multistep": (2.8, 10.0), "midpoint": (2.8, 5.0)}
    if t_next == 1.0:
        rates = {"euler": (1.2, 2.6), "multistep": (2.8, 5.0), "midpoint": (2.8, 5.0)}
    for s, (lo, hi) in rates.items():
        assert err[s][0] > err[s][1] > err[s][2], (s, err[s])
        rate = err[s][1] / err[s][2]  # error ratio when M doubles: 2 for first order, 4 for second
        assert lo < rate < hi, (s, err[s], rate)
    assert all(m < e / 1.5 for m, e in zip(err["multistep"], err["euler"]))  # at equal NFE


def adams_by_quadrature(kernel, model, x, t, t_next, generator):
    """The multistep solver from its definition, step by step: the exact solution of eq. 19 over a
    step with Dhat replaced by its linear interpolant in s (predictor: s_{i-1}, s_i; corrector: s_i,
    s_{i+1}), the integral taken by 200-point Gauss-Legendre instead of the plan's closed form."""
    import numpy as np

    c = kernel.coefficients(model.schedule, torch.as_tensor(t, dtype=F64), torch.as_tensor(t_next, dtype=F64))
    gamma, abar, sbar = float(c.gamma), float(c.abar), float(c.sbar)
    s = inner_grid(kernel.steps, c, model.schedule, kernel.inner_grid).tolist()
    sb = lambda u: (1 - u) * SBAR0 + u * sbar  # noqa: E731  (eq. 18)
    nodes, weights = np.polynomial.legendre.leggauss(200)

    def step(i, xb, d_a, a, d_b, b):  # s_i -> s_{i+1}, Dhat linear through (a, d_a), (b, d_b)
        lo, hi, kappa = s[i], s[i + 1], SBAR0 - sbar
        if sb(hi) == 0:  # the limit sbar_{s'} int ... -> Dhat(1) / kappa
            la = (hi - b) / (a - b) if a != b else 1.0
            return gamma * x_t + abar * (la * d_a + (1 - la) * d_b) / kappa
        # integrate in w = 1 / sbar_u (du / sbar_u^2 = dw / kappa): smooth even where sbar_{s'} ~ 1e-17
        w = 1 / sb(lo) + (1 / sb(hi) - 1 / sb(lo)) * (nodes + 1) / 2
        u = (SBAR0 - 1 / w) / kappa
        q = weights * (1 / sb(hi) - 1 / sb(lo)) / 2 / kappa * sb(hi)  # sbar_{s'} int (.) du / sbar_u^2
        la = float(np.sum(q * (u - b) / (a - b))) if a != b else float(np.sum(q))
        lb = float(np.sum(q)) - la
        ratio = sb(hi) / sb(lo)
        return gamma * x_t + ratio * (xb - gamma * x_t) + abar * (la * d_a + lb * d_b)

    x_t = x.to(F64)
    xbar = gamma * x_t + SBAR0 * torch.randn(x_t.shape, generator=generator, dtype=F64)
    ds, prev = [], None
    for i in range(kernel.steps):
        d = glass_denoiser(model, x_t, xbar, s[i], c)
        if i >= 1:  # corrector of the step s_{i-1} -> s_i
            xbar = step(i - 1, prev, d, s[i], ds[-1], s[i - 1])
        ds.append(d)
        prev = xbar
        xbar = step(i, xbar, d, s[i], *((ds[-2], s[i - 1]) if i >= 1 else (d, s[i])))
    return xbar


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("grid", ["uniform", "time"])
@pytest.mark.parametrize(
    "t,t_next,rho", [(0.3, 0.8, "ddpm"), (0.3, 1.0, "ddpm"), (0.3, 0.8, 0.4), (0.0, 0.6, -1.0)]
)
def test_multistep_plan_equals_its_definition(schedule, grid, t, t_next, rho):
    gmm = random_mixture(dim=4, n_components=3, scale=1.0, std=0.3, seed=1, schedule=schedule)
    kernel = glass.GLASS(5, rho=rho, solver="multistep", inner_grid=grid)
    x = gmm.sample_marginal(6, max(t, 0.05), torch.Generator().manual_seed(0))
    got = kernel.transition(gmm, x, t, t_next, torch.Generator().manual_seed(5))
    want = adams_by_quadrature(kernel, gmm, x, t, t_next, torch.Generator().manual_seed(5))
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


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


@pytest.mark.parametrize("sbar", [0.0, 1e-17, 0.3, 0.999, 1 - 1e-9])
def test_step_moments_closed_form_and_series_equal_the_integral(sbar):
    """K_i = abar sbar_{s'} int_{s_i}^{s'} (u - s_i) / sbar_u^2 du, across both branches (u = kappa h /
    sbar_{s_i} below and above 1e-2) and the singular end sbar_{s'} = 0."""
    import numpy as np

    from glass.paths import Coefficients
    from glass.samplers.glass import step_moments

    c = Coefficients(*(torch.tensor(v, dtype=F64) for v in (0.3, 0.8, 0.5, 0.2, 1.3, sbar)))
    s = torch.tensor([0.0, 1e-4, 0.009, 0.5, 0.5 + 1e-7, 0.9, 1.0], dtype=F64)
    got = step_moments(s, c)
    kappa = 1 - sbar
    for i in range(len(s) - 1):
        lo, hi = float(s[i]), float(s[i + 1])
        end = 1 - kappa * hi
        if end <= 1e-12:  # sbar_{s'} int ... -> (1 - kappa s_i) / kappa^2 as sbar_{s'} -> 0
            want = 1.3 * (1 - kappa * lo) / kappa**2 if end == 0 else None
        else:
            x, w = np.polynomial.legendre.leggauss(400)
            u = lo + (hi - lo) * (x + 1) / 2
            want = 1.3 * end * float(np.sum(w * (hi - lo) / 2 * (u - lo) / (1 - kappa * u) ** 2))
        assert torch.isfinite(got[i])
        if want is not None:
            assert float(got[i]) == pytest.approx(want, rel=1e-9, abs=1e-300), (i, float(got[i]), want)
