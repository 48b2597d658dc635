"""The exact oracle: isotropic Gaussian mixtures (closed forms, README "The maths").

For data z ~ sum_k pi_k N(m_k, s_k^2 I) in R^d observed through x = a z + b eps, the posterior is
again a mixture: component weights w_k(x) proportional to pi_k N(x; a m_k, (a^2 s_k^2 + b^2) I),
means mu_k(x) = m_k + a s_k^2 (x - a m_k) / (a^2 s_k^2 + b^2), variances c_k = s_k^2 b^2 /
(a^2 s_k^2 + b^2). With (a, b) = (alpha_t, sigma_t) this gives the exact denoiser, the posterior
p_{1|t} and, through eqs. 16-17, the exact GLASS transition p_{t'|t}; a linear reward tilts each
component by a shift. Everything is float64 and batched.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from glass.models.base import Capabilities, Model
from glass.paths import resolve_rho, transition_coefficients
from glass.schedules import Schedule, as_time, bcast
from glass.times import check_times

__all__ = ["GaussianMixture", "ring", "random_mixture"]

F64 = torch.float64
TEST_SEED = 20_250_925  # the oracle's fixed data points (``data_point``)


class GaussianMixture(Model):
    """Mixture of isotropic Gaussians with exact denoiser, posterior and transitions.

    Args:
        means: (K, d) component means.
        stds: (K,) or scalar component standard deviations (> 0).
        weights: (K,) mixture weights (normalised here); uniform when omitted.
        schedule: ``linear``, ``vp``, ``cosine`` or a :class:`~glass.schedules.Schedule`.
    """

    capabilities = Capabilities(data=True, oracle=True)

    def __init__(self, means, stds, weights=None, schedule: str | Schedule = "linear"):
        means = torch.as_tensor(means, dtype=F64)
        if means.ndim == 1:
            means = means[:, None]
        if means.ndim != 2 or means.shape[0] < 1:
            raise ValueError(f"means must have shape (K, d), got {tuple(means.shape)}")
        if not bool(torch.isfinite(means).all()):
            raise ValueError("means must be finite numbers (got NaN or Inf)")
        k, d = means.shape
        stds = torch.as_tensor(stds, dtype=F64)
        if stds.shape not in ((), (1,), (k,)):
            raise ValueError(f"stds must be one number or {k} (one per mean), got shape {tuple(stds.shape)}")
        stds = stds.expand(k).clone()
        if not bool(torch.all(stds > 0)) or not bool(torch.isfinite(stds).all()):
            raise ValueError("stds must be finite numbers > 0")
        weights = (
            torch.full((k,), 1.0 / k, dtype=F64) if weights is None else torch.as_tensor(weights, dtype=F64)
        )
        ok = weights.shape == (k,) and bool(torch.isfinite(weights).all())
        if not ok or bool(torch.any(weights < 0)) or float(weights.sum()) <= 0:
            raise ValueError(f"weights must be {k} non-negative numbers with a positive sum")
        super().__init__(schedule, shape=(d,), dtype=F64)
        self.means, self.stds, self.weights = means, stds, weights / weights.sum()

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.means.shape[0]}, d={self.dim}, schedule={self.schedule.name!r})"

    # -- posterior of z given x = a z + b eps ---------------------------------------------------------
    def _posterior(self, x: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return (log w (B,K), mu (B,K,d), c (B,K)) of z | x = a z + b eps; a, b of shape (B,)."""
        x = x.to(F64)
        a, b = a.expand(x.shape[0])[:, None], b.expand(x.shape[0])[:, None]  # (B,1)
        s2 = self.stds[None, :] ** 2  # (1,K)
        var = a**2 * s2 + b**2  # (B,K) variance of x given component k
        resid = x[:, None, :] - a[..., None] * self.means[None]  # (B,K,d)
        logw = (
            torch.log(self.weights)[None]
            - 0.5 * self.dim * torch.log(2 * math.pi * var)
            - 0.5 * (resid**2).sum(-1) / var
        )
        logw = logw - torch.logsumexp(logw, dim=1, keepdim=True)
        mu = self.means[None] + (a * s2 / var)[..., None] * resid
        return logw, mu, s2 * b**2 / var

    def posterior(self, x: Tensor, t: float | Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Exact p_{1|t}(z | x_t = x) as (log weights (B,K), means (B,K,d), variances (B,K))."""
        t = as_time(t, x)
        return self._posterior(x, self.schedule.alpha(t), self.schedule.sigma(t))

    def _denoise(self, x: Tensor, t: Tensor, **cond) -> Tensor:
        logw, mu, _ = self.posterior(x, t)
        return (logw.exp()[..., None] * mu).sum(1)

    def transition_moments(
        self, x: Tensor, t: float | Tensor, t_next: float | Tensor, rho="ddpm", kappa=None
    ) -> tuple[Tensor, Tensor]:
        """Mean (B, d) and covariance (B, d, d) of the exact x_{t'} | x_t = x: gamma x_t + abar z +
        sbar eps (eqs. 16-17) with z | x_t the mixture of :meth:`posterior` (weights w_k, means mu_k,
        variances c_k): mean gamma x + abar m, covariance abar^2 Cov[z | x] + sbar^2 I with
        Cov[z | x] = sum_k w_k (c_k I + mu_k mu_k^T) - m m^T. ``t_next = 1`` gives p_{1|t}."""
        check_times(t, t_next)
        logw, mu, c = self.posterior(x, t)
        w = logw.exp()
        m = torch.einsum("bk,bkd->bd", w, mu)
        eye = torch.eye(self.dim, dtype=F64, device=mu.device)
        cov = torch.einsum("bk,bkd,bke->bde", w, mu, mu) + (w * c).sum(1)[:, None, None] * eye
        cov = cov - m[:, :, None] * m[:, None, :]
        co = transition_coefficients(
            self.schedule, t, t_next, resolve_rho(self.schedule, t, t_next, rho, kappa)
        )
        gamma, abar, sbar = (bcast(v.to(mu.device), m) for v in (co.gamma, co.abar, co.sbar))  # (B, 1)
        mean = gamma * x.to(F64) + abar * m
        return mean, (abar**2)[..., None] * cov + (sbar**2)[..., None] * eye

    # -- exact sampling -----------------------------------------------------------------------------
    @staticmethod
    def _draw(logw: Tensor, mu: Tensor, var: Tensor, generator=None) -> Tensor:
        k = torch.multinomial(logw.exp(), 1, generator=generator)[:, 0]
        rows = torch.arange(mu.shape[0], device=mu.device)
        eps = torch.randn(mu.shape[0], mu.shape[2], generator=generator, dtype=F64, device=mu.device)
        return mu[rows, k] + var[rows, k].sqrt()[:, None] * eps

    def sample(self, n: int, generator=None) -> Tensor:
        """n exact samples of the data distribution."""
        logw = torch.log(self.weights).expand(n, -1)
        return self._draw(logw, self.means.expand(n, -1, -1), (self.stds**2).expand(n, -1), generator)

    def sample_marginal(self, n: int, t: float, generator=None) -> Tensor:
        """n exact samples of p_t: x_t = alpha_t z + sigma_t eps (t a float or (n,) tensor)."""
        t = as_time(t)
        z = self.sample(n, generator)
        eps = torch.randn(z.shape, generator=generator, dtype=F64)
        return bcast(self.schedule.alpha(t), z) * z + bcast(self.schedule.sigma(t), z) * eps

    def data_samples(self, n: int, generator=None, split: str = "test") -> tuple[Tensor, None]:
        """n exact data samples (and no labels): the points tasks noise to time t (an oracle's data
        are exact draws: every ``split`` is the same distribution)."""
        return self.sample(n, generator), None

    def value(self, x: Tensor, t: float | Tensor, w: Tensor) -> Tensor:
        """Exact value function of the linear reward r(z) = w.z (paper eq. 8):
        V_t(x) = log E[exp(w.z) | x_t = x] = log sum_k pi_k(x) exp(w.mu_k(x) + c_k |w|^2 / 2),
        since z | x_t is the Gaussian mixture of :meth:`posterior`."""
        logw, mu, c = self.posterior(x, t)
        w = torch.as_tensor(w, dtype=F64, device=mu.device)
        return torch.logsumexp(logw + mu @ w + 0.5 * c * (w @ w), dim=1)

    def sample_posterior(self, x: Tensor, t: float | Tensor, generator=None) -> Tensor:
        """One exact sample of p_{1|t}(z | x_t) per row of x."""
        return self._draw(*self.posterior(x, t), generator)

    def sample_transition(
        self,
        x: Tensor,
        t: float | Tensor,
        t_next: float | Tensor,
        rho="ddpm",
        kappa=None,
        generator=None,
    ) -> Tensor:
        """One exact sample of the GLASS transition p_{t'|t}(. | x_t) per row of x: z from the
        posterior, then eqs. 16-17, x_{t'} = gamma x_t + abar z + sbar eps. The result is the
        mixture with means gamma x_t + abar mu_k(x_t) and variances abar^2 c_k + sbar^2."""
        check_times(t, t_next)
        c = transition_coefficients(
            self.schedule, t, t_next, resolve_rho(self.schedule, t, t_next, rho, kappa)
        )
        x = x.to(F64)
        z = self.sample_posterior(x, t, generator)
        eps = torch.randn(x.shape, generator=generator, dtype=F64)
        return bcast(c.gamma, x) * x + bcast(c.abar, x) * z + bcast(c.sbar, x) * eps

    # -- densities ----------------------------------------------------------------------------------
    @staticmethod
    def _mixture_log_prob(z: Tensor, logw: Tensor, mu: Tensor, var: Tensor) -> Tensor:
        d = mu.shape[-1]
        sq = ((z.to(F64)[:, None, :] - mu) ** 2).sum(-1)
        return torch.logsumexp(logw - 0.5 * d * torch.log(2 * math.pi * var) - 0.5 * sq / var, dim=1)

    def log_prob(self, z: Tensor) -> Tensor:
        """Exact log-density of the data distribution at each row of z."""
        n = z.shape[0]
        return self._mixture_log_prob(
            z,
            torch.log(self.weights).expand(n, -1),
            self.means.expand(n, -1, -1),
            (self.stds**2).expand(n, -1),
        )

    def posterior_log_prob(self, z: Tensor, x: Tensor, t: float) -> Tensor:
        """log p_{1|t}(z_i | x) for rows z_i and a single conditioning point x of shape (1, d)."""
        logw, mu, var = self.posterior(x, t)
        n = z.shape[0]
        return self._mixture_log_prob(z, logw.expand(n, -1), mu.expand(n, -1, -1), var.expand(n, -1))

    def data_point(self, index: int, split: str = "valid") -> tuple[Tensor, None]:
        """Point ``index`` of the oracle's fixed data set: one exact sample drawn from its own seed
        (SplitMix64 of ``TEST_SEED`` and the index), shape (1, d), and no label: what
        ``reward.source=SPLIT:INDEX`` observes (exact draws: every ``split`` is the same set, as in
        :meth:`data_samples`)."""
        from glass.noise import indexed_seed

        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"{split} index must be an integer >= 0, got {index!r}")
        return self.sample(1, torch.Generator().manual_seed(indexed_seed(TEST_SEED, index))), None

    def condition(self, A, y, noise: float):
        """Exact posterior p(z | y) for the measurement y = A z + noise n, n ~ N(0, I), with ``A`` an
        (m, d) matrix: a :class:`~glass.models.mixture.FullCovarianceMixture` (weights, means,
        covariances, ``sample``, ``log_prob``, ``mean``, ``covariance``)."""
        from glass.models.mixture import condition_isotropic

        return condition_isotropic(self.weights, self.means, self.stds, A, y, noise)

    # -- rewards ------------------------------------------------------------------------------------
    def tilted(self, w, lam: float = 1.0) -> GaussianMixture:
        """Exact reward-tilted target p^r(z) proportional to p(z) exp(lam w.z) (eq. 6, linear reward):
        component k moves to m_k + lam s_k^2 w, its weight is multiplied by
        exp(lam w.m_k + lam^2 s_k^2 |w|^2 / 2)."""
        w = torch.as_tensor(w, dtype=F64).reshape(-1)
        if w.shape[0] != self.dim:
            raise ValueError(f"reward weight must have {self.dim} entries, got {w.shape[0]}")
        s2 = self.stds**2
        logw = torch.log(self.weights) + lam * self.means @ w + 0.5 * lam**2 * s2 * (w @ w)
        return GaussianMixture(
            self.means + lam * s2[:, None] * w[None],
            self.stds,
            torch.softmax(logw, 0),
            self.schedule,
        )


MAX_COMPONENTS = 100_000  # the oracle's posterior is (batch, components, dim): beyond this it cannot run
MAX_PARAMETERS = 10_000_000


def ring(
    n_modes: int = 8, radius: float = 1.5, std: float = 0.2, schedule: str = "linear"
) -> GaussianMixture:
    """A 2-D ring of ``n_modes`` equal Gaussians (the classic low-dimensional test case)."""
    from glass.checks import check_int

    check_int("model.n_modes", n_modes, 1, MAX_COMPONENTS)
    angles = torch.arange(n_modes, dtype=F64) * (2 * math.pi / n_modes)
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture(means, std, schedule=schedule)


def random_mixture(
    dim: int = 64,
    n_components: int = 8,
    scale: float = 1.0,
    std: float = 0.3,
    seed: int = 0,
    schedule: str = "linear",
) -> GaussianMixture:
    """A d-dimensional mixture with means ~ N(0, scale^2 I) (drawn from ``seed``), equal stds and
    Dirichlet(1) weights; the high-dimensional oracle of closed forms, README "The maths"."""
    if dim < 1 or n_components < 1:
        raise ValueError(f"model.dim and model.n_components must be >= 1, got {dim}, {n_components}")
    if n_components > MAX_COMPONENTS or dim * n_components > MAX_PARAMETERS:
        raise ValueError(
            f"model.n_components x model.dim = {n_components:,} x {dim:,} is larger than the oracle allows "
            f"({MAX_COMPONENTS:,} components, {MAX_PARAMETERS:,} numbers): its exact posteriors cost "
            "batch x components x dim"
        )
    from glass.checks import check_seed

    gen = torch.Generator().manual_seed(check_seed("model.seed", seed))
    means = scale * torch.randn(n_components, dim, generator=gen, dtype=F64)
    weights = -torch.log(torch.rand(n_components, generator=gen, dtype=F64))
    return GaussianMixture(means, std, weights, schedule=schedule)
