"""GLASS against closed forms: Propositions 1 and 2, Theorem 1 (convergence), marginals."""

import math

import pytest
import torch

import glass
from glass.metrics.oracle import energy_distance
from glass.models import GaussianMixture, random_mixture, ring
from glass.samplers.glass import (
    glass_denoiser,
    rho_ddpm,
    sufficient_statistic,
    transition_coefficients,
)

from .conftest import SCHEDULES, floor_stats

F64 = torch.float64


def two_measurement_posterior_mean(gmm, x_t, y, a1, b1, a2, b2):
    """E[z | a1 z + b1 e1 = x_t, a2 z + b2 e2 = y] by explicit Gaussian conditioning with the 2x2
    covariance of (x_t, y) per coordinate (the paper's eq. 20 form), independent of the code under
    test."""
    a = torch.tensor([a1, a2], dtype=F64)
    noise = torch.diag(torch.tensor([b1**2, b2**2], dtype=F64))
    obs = torch.stack([x_t, y], dim=-1)  # (B, d, 2)
    logw, means = [], []
    for k in range(gmm.means.shape[0]):
        m, s2 = gmm.means[k], gmm.stds[k] ** 2
        cov = s2 * torch.outer(a, a) + noise
        prec = torch.linalg.inv(cov)
        resid = obs - m[None, :, None] * a  # (B, d, 2)
        quad = torch.einsum("bdi,ij,bdj->b", resid, prec, resid)
        logw.append(torch.log(gmm.weights[k]) - 0.5 * quad - 0.5 * gmm.dim * torch.logdet(2 * math.pi * cov))
        gain = s2 * (a @ prec)  # (2,)
        means.append(m[None] + resid @ gain)
    w = torch.softmax(torch.stack(logw, 1), 1)
    return (w[..., None] * torch.stack(means, 1)).sum(1)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize(
    "t,t_next,rho,s",
    [
        (0.2, 1.0, "ddpm", 0.3),
        (0.05, 0.5, 0.4, 0.7),
        (0.5, 0.9, 1.0, 0.5),
        (0.3, 0.7, -0.5, 0.9),
        (0.0, 0.4, 0.0, 0.2),
    ],
)
def test_proposition2_glass_denoiser_is_exact_posterior_mean(schedule, t, t_next, rho, s, gen):
    gmm = GaussianMixture(
        torch.tensor([[1.0, -0.5, 0.2], [-1.0, 0.8, 0.0], [0.3, 0.3, -1.2]]),
        torch.tensor([0.3, 0.5, 0.2]),
        torch.tensor([0.5, 0.3, 0.2]),
        schedule=schedule,
    )
    sch = gmm.schedule
    r = rho_ddpm(sch, t, t_next) if rho == "ddpm" else rho
    c = transition_coefficients(sch, t, t_next, r)
    z = gmm.sample(256, gen)
    x_t = sch.alpha(t) * z + sch.sigma(t) * torch.randn(z.shape, generator=gen, dtype=F64)
    s64 = torch.tensor(s, dtype=F64)
    ab_s, sb_s = s * c.abar, (1 - s) + s * c.sbar
    xbar = c.gamma * x_t + ab_s * z + sb_s * torch.randn(z.shape, generator=gen, dtype=F64)
    expected = two_measurement_posterior_mean(
        gmm,
        x_t,
        xbar - c.gamma * x_t,
        float(sch.alpha(t)),
        float(sch.sigma(t)),
        float(ab_s),
        float(sb_s),
    )
    got = glass_denoiser(gmm, x_t, xbar, s64, c)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0), (got - expected).abs().max()


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_t_star_rises_from_t_to_t_next_under_rho_ddpm(schedule):
    sch = glass.schedules.get(schedule)
    t, t_next = 0.15, 0.65
    c = transition_coefficients(sch, t, t_next, rho_ddpm(sch, t, t_next))
    s = torch.linspace(0, 1, 101, dtype=F64)
    x = torch.zeros(1, 1, dtype=F64)
    _, prec = sufficient_statistic(sch, x, x, s, c)
    t_star = sch.g_inv(1 / prec)
    assert float(t_star[0]) == pytest.approx(t, abs=1e-12)
    assert float(t_star[-1]) == pytest.approx(t_next, abs=1e-9)
    assert bool(torch.all(torch.diff(t_star) > 0))


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("t,t_next", [(0.0, 0.3), (0.2, 0.5), (0.6, 1.0)])
def test_proposition1_one_step_is_the_ddpm_ancestral_step(schedule, t, t_next):
    """GLASS(M=1, rho_DDPM) = the textbook DDPM ancestral step, with the same noise."""
    gmm = ring(schedule=schedule)
    sch = gmm.schedule
    x_t = gmm.sample_marginal(64, t, torch.Generator().manual_seed(3))
    out = glass.GLASS(1, rho="ddpm").transition(gmm, x_t, t, t_next, torch.Generator().manual_seed(7))
    eps = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(7), dtype=F64)
    # forward Markov step x_t = r x_{t'} + q eta, posterior q(x_{t'} | x_t, z = D_t(x_t))
    a, s, an, sn = (
        float(f(v)) for f, v in ((sch.alpha, t), (sch.sigma, t), (sch.alpha, t_next), (sch.sigma, t_next))
    )
    r = a / an
    q2 = s**2 - r**2 * sn**2
    mean = q2 / s**2 * an * gmm.denoise(x_t, t) + sn**2 * r / s**2 * x_t
    std = math.sqrt(sn**2 * q2 / s**2)
    assert torch.allclose(out, mean + std * eps, atol=1e-10)


def _conditional(gmm, t, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return gmm.sample_marginal(1, t, g).expand(n, -1).clone(), g


CASES = [
    ("d2", ring, 4000, 0.2, 1.0, "ddpm"),
    ("d2", ring, 4000, 0.2, 0.6, 0.4),
    ("d64", random_mixture, 2000, 0.2, 1.0, "ddpm"),
    ("d64", random_mixture, 2000, 0.05, 0.5, 1.0),
]


@pytest.mark.parametrize("name,factory,n,t,t_next,rho", CASES)
def test_theorem1_glass_approaches_exact_transition(name, factory, n, t, t_next, rho):
    """Fixed x_t: ED(GLASS_M, exact p_{t'|t}) falls to the Monte-Carlo floor as M grows, and the
    coarse M = 1 kernel is detected far above it."""
    gmm = factory()
    x, g = _conditional(gmm, t, n)
    exact = lambda: gmm.sample_transition(x, t, t_next, rho, generator=g)  # noqa: E731
    ref = exact()
    tol, far = floor_stats(exact, ref)
    coarse = energy_distance(glass.GLASS(1, rho=rho).transition(gmm, x, t, t_next, g), ref)
    fine = energy_distance(glass.GLASS(32, rho=rho, solver="midpoint").transition(gmm, x, t, t_next, g), ref)
    assert coarse > far, (coarse, far)
    assert fine < tol, (fine, tol)
    errs = [energy_distance(glass.GLASS(m, rho=rho).transition(gmm, x, t, t_next, g), ref) for m in (2, 8)]
    assert errs[1] < errs[0] < coarse
    if name == "d2":  # Euler reaches the floor too, at more steps
        assert energy_distance(glass.GLASS(64, rho=rho).transition(gmm, x, t, t_next, g), ref) < tol


@pytest.mark.parametrize("rho", [-0.5, 0.0, 0.4, "ddpm", 1.0])
def test_marginals_preserved_for_every_rho(rho):
    """x_t ~ p_t pushed through GLASS (and through the exact kernel) lands on p_{t'}."""
    gmm = ring()
    g = torch.Generator().manual_seed(1)
    t, t_next, n = 0.3, 0.7, 3000
    x_t = gmm.sample_marginal(n, t, g)
    exact = lambda: gmm.sample_marginal(n, t_next, g)  # noqa: E731
    ref = exact()
    tol, far = floor_stats(exact, ref)
    moved = glass.GLASS(16, rho=rho, solver="midpoint").transition(gmm, x_t, t, t_next, g)
    assert energy_distance(moved, ref) < tol
    assert energy_distance(gmm.sample_transition(x_t, t, t_next, rho, generator=g), ref) < tol
    # a kernel that ignores the time change (identity) is far off: the test can fail
    assert energy_distance(x_t, ref) > far


def test_rho_changes_the_transition_not_the_marginal():
    gmm = ring()
    x, g = _conditional(gmm, 0.4, 3000)
    a = gmm.sample_transition(x, 0.4, 0.7, 0.0, generator=g)
    b = gmm.sample_transition(x, 0.4, 0.7, 1.0, generator=g)
    c = glass.GLASS(16, rho=1.0, solver="midpoint").transition(gmm, x, 0.4, 0.7, g)
    assert energy_distance(a, b) > 20 * energy_distance(b, c)


def test_glass_posterior_approaches_exact_posterior():
    gmm = random_mixture(64)
    x, g = _conditional(gmm, 0.2, 2000, seed=5)
    exact = lambda: gmm.sample_posterior(x, 0.2, g)  # noqa: E731
    ref = exact()
    tol, far = floor_stats(exact, ref)
    for rho in ("ddpm", 0.4):  # the posterior does not depend on rho
        z = glass.GLASS(16, rho=rho, solver="midpoint").transition(gmm, x, 0.2, 1.0, g)
        assert energy_distance(z, ref) < tol


def test_nfe_is_counted_by_the_model():
    gmm = ring()
    x = gmm.sample_marginal(10, 0.2)
    glass.GLASS(5).transition(gmm, x, 0.2, 1.0)
    assert gmm.reset_nfe() == 5
    glass.GLASS(5, solver="midpoint").transition(gmm, x, 0.2, 1.0)
    assert gmm.reset_nfe() == 10
    glass.generate(gmm, glass.GLASS(3), 4, n=10)
    assert gmm.nfe == 12


def test_generation_from_noise_matches_data():
    gmm = ring()
    g = torch.Generator().manual_seed(2)
    exact = lambda: gmm.sample(3000, g)  # noqa: E731
    ref = exact()
    tol, far = floor_stats(exact, ref)
    for kernel in (glass.GLASS(16, solver="midpoint"), glass.GLASS(16, rho=0.4, solver="midpoint")):
        assert energy_distance(glass.generate(gmm, kernel, 4, n=3000, generator=g), ref) < tol


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"rho": 1.5}, "rho must be 'ddpm' or a number in \\[-1, 1\\]"),
        ({"rho": "foo"}, "rho must be 'ddpm'"),
        ({"rho": 0.4, "kappa": 2.0}, "needs rho='ddpm'"),
        ({"solver": "rk4"}, "solver must be one of euler, midpoint"),
    ],
)
def test_bad_parameters_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        glass.GLASS(**kwargs)


def test_bad_times_are_clear_errors():
    gmm, x = ring(), torch.zeros(2, 2, dtype=F64)
    with pytest.raises(ValueError, match="t must lie in \\[0, 1\\)"):
        glass.GLASS(2).transition(gmm, x, 1.0, 1.0)
    with pytest.raises(ValueError, match="t_next must satisfy t < t_next <= 1"):
        glass.GLASS(2).transition(gmm, x, 0.5, 0.4)


def test_kappa_family():
    sch = glass.schedules.get("linear")
    k = glass.GLASS(4, rho="ddpm", kappa=0.5)
    assert float(k.coefficients(sch, 0.2, 0.6).rho) == pytest.approx(float(rho_ddpm(sch, 0.2, 0.6)) ** 0.5)
    assert float(glass.GLASS(4, kappa=0.0).coefficients(sch, 0.2, 0.6).rho) == pytest.approx(1.0)
