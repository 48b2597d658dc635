"""Reward alignment against closed forms: resamplers are unbiased with the right variance order, ESS,
potentials multiply to exp(lambda r(x_1)), FK steering converges to the exact tilted target on the
oracle as particles grow, the intermediate reward costs no extra NFE, best-of-N."""

import math

import pytest
import torch

import glass
from glass.alignment import RESAMPLERS, best_of_n, ess, fk_steering, resample
from glass.metrics.oracle import energy_distance
from glass.models.gmm import ring
from glass.rewards import Linear


@pytest.mark.parametrize("method", RESAMPLERS)
def test_resamplers_are_unbiased(method):
    """Mean copy counts equal N w_i (10k repeats; 5 standard errors), indices stay in the group."""
    w = torch.tensor([0.5, 0.25, 0.125, 0.0625, 0.0625, 0.0, 0.0, 0.0], dtype=torch.float64)
    lw = w.log().expand(10_000, -1)
    g = torch.Generator().manual_seed(0)
    idx = resample(lw, method, g)
    assert idx.shape == lw.shape and int(idx.min()) >= 0 and int(idx.max()) <= 4  # zero weights never drawn
    counts = torch.nn.functional.one_hot(idx, 8).sum(1).double()
    mean, se = counts.mean(0), counts.std(0) / math.sqrt(len(counts)) + 1e-9
    assert ((mean - 8 * w).abs() <= 5 * se + 1e-12).all(), (method, mean)


def test_resampler_variance_order_and_ess():
    w = torch.softmax(torch.randn(16, generator=torch.Generator().manual_seed(1), dtype=torch.float64), 0)
    lw = w.log().expand(4000, -1)
    var = {}
    for m in RESAMPLERS:
        counts = (
            torch.nn.functional.one_hot(resample(lw, m, torch.Generator().manual_seed(2)), 16).sum(1).double()
        )
        var[m] = float(counts.var(0).sum())
    assert var["systematic"] < var["multinomial"] and var["stratified"] < var["multinomial"]
    assert var["residual"] < var["multinomial"]
    assert float(ess(torch.zeros(10))) == pytest.approx(10)
    assert float(ess(torch.tensor([0.0, -math.inf, -math.inf]))) == pytest.approx(1)
    with pytest.raises(ValueError, match="resampler must be one of"):
        resample(torch.zeros(3), "bogus")


@pytest.mark.parametrize("potential", ["difference", "max", "sum", "current"])
def test_potentials_multiply_to_the_final_tilt(potential):
    """Without resampling, each particle's final log-weight is lam r(x_1) up to the group constant."""
    gmm, reward = ring(), Linear(scale=1.0)
    res = fk_steering(
        gmm, glass.GLASS(2), reward, grid=4, particles=6, groups=3, lam=1.5, potential=potential,
        resample_every=100, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    target = 1.5 * res.rewards
    target = target - torch.logsumexp(target, -1, keepdim=True)
    assert torch.allclose(res.log_weights, target, atol=1e-10)
    assert not any(bool(r.any()) for r in res.resampled)


def test_fk_steering_converges_to_the_exact_tilted_target():
    """Oracle, linear reward, lam = 2: a precise GLASS proposal; with more particles the drawn samples
    approach exact samples of p(z) exp(lam w.z) (energy distance) and the weighted E[r] its exact value.
    One particle (no steering) is far away."""
    gmm, reward, lam = ring(), Linear(scale=1.0, direction=[1.0, 0.0]), 2.0
    w = reward.weights(2)
    tilted = gmm.tilted(w, lam)
    g = torch.Generator().manual_seed(0)
    exact = tilted.sample(1500, g)
    exact_r = float((tilted.means @ w * tilted.weights).sum())
    floor = energy_distance(tilted.sample(1500, g), exact)
    kernel = glass.GLASS(4, solver="midpoint")

    def run(n, groups):
        res = fk_steering(gmm, kernel, reward, grid=4, particles=n, groups=groups, lam=lam,
                          generator=torch.Generator().manual_seed(1))  # fmt: skip
        return res, energy_distance(res.draw(torch.Generator().manual_seed(2)), exact[:groups])

    one, d1 = run(1, 1500)
    many, d64 = run(64, 400)
    assert many.nfe == 4 * 8  # K x M x 2 (midpoint): the intermediate denoiser call is reused
    assert d1 > 50 * floor and d64 < 8 * floor, (d1, d64, floor)
    assert abs(float(many.weighted_reward().mean()) - exact_r) < 0.05
    assert any(bool(r.all()) for r in many.resampled)


def test_best_of_n_picks_the_max_and_improves_reward():
    gmm, reward = ring(), Linear(scale=1.0)
    best, r, nfe = best_of_n(
        gmm, glass.ODE(3), reward, grid=2, n=8, groups=200, generator=torch.Generator().manual_seed(0)
    )
    one, r1, _ = best_of_n(
        gmm, glass.ODE(3), reward, grid=2, n=1, groups=200, generator=torch.Generator().manual_seed(0)
    )
    assert best.shape == (200, 2) and nfe == 6
    assert torch.allclose(reward(best), r) and float(r.mean()) > float(r1.mean()) + 0.5
