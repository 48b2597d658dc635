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
    """Generated samples are the data distribution: energy distance to exact data samples within the
    Monte-Carlo floor, and every one of the 8 modes holding 1/8 of them within 4 standard errors
    (the energy distance barely sees a dropped mode; the shares reject half the modes)."""
    from glass.metrics.oracle import energy_distance

    from .conftest import floor_stats

    gmm = ring(schedule=schedule)
    g = torch.Generator().manual_seed(5)
    ref = gmm.sample_marginal(500, 1.0, g)
    tol, _ = floor_stats(lambda: gmm.sample_marginal(500, 1.0, g), ref)

    def even_shares(x):
        share = torch.bincount(torch.cdist(x, gmm.means).argmin(1), minlength=8) / len(x)
        return bool(((share - 1 / 8).abs() < 4 * (1 / 8 * 7 / 8 / len(x)) ** 0.5).all())

    assert even_shares(ref) and not even_shares(ref[torch.cdist(ref, gmm.means).argmin(1) % 2 == 0])
    for kernel in (glass.ODE(8, "heun"), glass.SDE(32), glass.GLASS(8, solver="midpoint")):
        x = glass.generate(gmm, kernel, 4, n=500, generator=g)
        assert torch.isfinite(x).all()
        assert energy_distance(x, ref) < tol, (kernel, energy_distance(x, ref), tol)
        assert even_shares(x), kernel


def test_time_grid_validation():
    assert glass.time_grid(4).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert glass.time_grid([0, 0.2, 1]).tolist() == [0.0, 0.2, 1.0]
    assert glass.time_grid([0.1, 1.0]).tolist() == [0.1, 1.0]  # t0 > 0: DDPM-grid / epsilon models
    with pytest.raises(ValueError, match="the number of transitions K must be >= 1, got 0"):
        glass.time_grid(0)
    for bad in ([-0.1, 1.0], [1.0, 1.0], [0.0, 0.5, 0.4, 1.0], [0.0, 0.9]):
        with pytest.raises(ValueError, match=r"must increase strictly from t0 in \[0, 1\) to 1, got \["):
            glass.time_grid(bad)


class LastOutput:
    """Wraps a model and keeps its last denoiser output."""

    def __init__(self, model):
        self.model, self.schedule, self.shape, self.device = model, model.schedule, model.shape, model.device
        self.last = None

    def denoise(self, x, t, **cond):
        self.last = self.model.denoise(x, t, **cond)
        return self.last

    def velocity(self, x, t, **cond):
        return self.schedule.x0_to_velocity(self.denoise(x, t, **cond), x, t)


@pytest.mark.parametrize("t,steps", [(0.05, 3), (0.2, 6), (0.15, 13), (0.2, 48)])
def test_last_step_lands_exactly_on_t_equal_1(t, steps):
    """t + (1 - t) * M / M can round below 1; the grids end exactly at t' (review finding)."""
    gmm = LastOutput(ring())
    x = gmm.model.sample_marginal(64, t)
    out = glass.SDE(steps).transition(gmm, x, t, 1.0)
    assert torch.equal(out, gmm.last), "the SDE's last step must return the denoiser output"
    gmm.model.reset_nfe()
    glass.ODE(steps, "heun").transition(gmm.model, x, t, 1.0)
    assert gmm.model.nfe == 2 * steps - 1


def test_sde_step_from_t0_is_the_ancestral_step():
    gmm = ring()
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = glass.SDE(1).transition(gmm, x, 0.0, 0.5, torch.Generator().manual_seed(7))
    eps = torch.randn(32, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    sch = gmm.schedule
    assert torch.allclose(out, sch.alpha(0.5) * gmm.denoise(x, 0.0) + sch.sigma(0.5) * eps)


@pytest.mark.parametrize("schedule", ["linear", "vp"])
@pytest.mark.parametrize("method", ["euler", "heun"])
def test_ode_per_sample_times_equal_per_row_calls(schedule, method):
    gmm = ring(schedule=schedule)
    t = torch.tensor([0.0, 0.3, 0.6], dtype=torch.float64)
    tn = torch.tensor([0.5, 1.0, 1.0], dtype=torch.float64)
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    batch = glass.ODE(4, method).transition(gmm, x, t, tn)
    rows = torch.cat(
        [glass.ODE(4, method).transition(gmm, x[i : i + 1], float(t[i]), float(tn[i])) for i in range(3)]
    )
    assert torch.allclose(batch, rows, atol=1e-12)


@pytest.mark.parametrize("kernel", [glass.SDE(128), glass.GLASS(16, solver="midpoint")], ids=["sde", "glass"])
def test_stochastic_kernels_with_per_sample_times(kernel):
    """A batch mixing (0 -> 0.5) and (0.3 -> 1) rows: each half follows its own exact kernel."""
    gmm, n = ring(), 1500
    g = torch.Generator().manual_seed(3)
    x = torch.cat(
        [torch.randn(n, 2, generator=g, dtype=torch.float64), gmm.sample_marginal(1, 0.3, g).expand(n, -1)]
    )
    t = torch.cat([torch.zeros(n), torch.full((n,), 0.3)]).double()
    tn = torch.cat([torch.full((n,), 0.5), torch.ones(n)]).double()
    out = kernel.transition(gmm, x, t, tn, g)
    assert torch.isfinite(out).all()
    for half, (t0, t1) in enumerate([(0.0, 0.5), (0.3, 1.0)]):
        xs = x[half * n : (half + 1) * n]
        exact = lambda xs=xs, t0=t0, t1=t1: gmm.sample_transition(xs, t0, t1, "ddpm", generator=g)  # noqa: E731
        tol, _ = floor_stats(exact, exact())
        assert energy_distance(out[half * n : (half + 1) * n], exact()) < tol


def test_progress_callables_never_replace_the_state():
    """A progress callable's return value (tqdm's update returns True on a refresh) is ignored."""
    gmm = glass.GaussianMixture([[1.0, 0.0], [-1.0, 0.0]], [0.3, 0.3], [0.5, 0.5])
    calls = []
    x = glass.generate(gmm, glass.GLASS(2), 3, 4, generator=torch.Generator().manual_seed(0),
                       progress=lambda: calls.append(1) or True)  # fmt: skip
    ref = glass.generate(gmm, glass.GLASS(2), 3, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, ref) and len(calls) == 3




@pytest.mark.parametrize("schedule", ["vp", "linear", "cosine"])
@pytest.mark.parametrize("t", [2.2250738585e-313, 5e-309, 1e-300, 1e-12, 1e-9])
def test_ode_just_after_zero_is_the_limit_of_t_zero(t, schedule):
    """VP: alpha'/alpha = 1/(2t) is finite but enormous there: an Euler step threw the state out to
    ~1e150 and the next network call returned NaN (found by the property test). The step is the DDIM
    step, as at t = 0 itself; the linear and cosine paths keep Euler (and Heun) steps: either way the
    result is continuous in t."""
    from glass.models.gmm import random_mixture

    gmm = random_mixture(dim=3, n_components=3, scale=1.0, std=0.3, seed=0, schedule=schedule)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for kernel in (glass.ODE(2), glass.ODE(2, method="heun")):
        at_zero = kernel.transition(gmm, x, 0.0, 1.0)
        tol = 1e-4  # the VP path moves like sqrt(t): 3e-5 at t = 1e-9
        torch.testing.assert_close(kernel.transition(gmm, x, t, 1.0), at_zero, rtol=tol, atol=tol)
        per_sample = torch.tensor([t, 0.0, t, 0.0], dtype=torch.float64)
        torch.testing.assert_close(kernel.transition(gmm, x, per_sample, 1.0), at_zero, rtol=tol, atol=tol)
