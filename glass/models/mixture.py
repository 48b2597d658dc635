"""Gaussian mixtures with full covariances: the exact posterior of an inverse problem.

For the oracle's prior p(z) = sum_k pi_k N(m_k, s_k^2 I) and a linear-Gaussian measurement
y = A z + sigma n (n ~ N(0, I)), Bayes' rule gives (:func:`condition_isotropic`)

    p(z | y) = sum_k w_k N(z; mu_k, Sigma_k),
    Sigma_k = (I / s_k^2 + A^T A / sigma^2)^-1,   mu_k = Sigma_k (m_k / s_k^2 + A^T y / sigma^2),
    w_k proportional to pi_k N(y; A m_k, s_k^2 A A^T + sigma^2 I),

the target p(z) exp(r(z)) of FK steering with the reward r(z) = log N(y; A z, sigma^2 I) and
lam = 1 (paper eq. 6); lam != 1 tempers the likelihood, i.e. sigma -> sigma / sqrt(lam).
Everything is float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from glass.checks import check_positive

__all__ = ["FullCovarianceMixture", "condition_isotropic", "gaussian_log_prob"]

F64 = torch.float64


def gaussian_log_prob(resid: Tensor, chol: Tensor) -> Tensor:
    """log N(resid; 0, L L^T) for residuals (..., m) and Cholesky factors L (..., m, m) that broadcast
    against them."""
    sol = torch.linalg.solve_triangular(chol, resid[..., None], upper=False)[..., 0]
    logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    return -0.5 * (sol**2).sum(-1) - 0.5 * logdet - 0.5 * resid.shape[-1] * math.log(2 * math.pi)


class FullCovarianceMixture:
    """sum_k weights_k N(means_k, covariances_k): ``weights`` (K,), ``means`` (K, d), ``covariances``
    (K, d, d), symmetric positive definite."""

    def __init__(self, weights: Tensor, means: Tensor, covariances: Tensor):
        self.weights = torch.as_tensor(weights, dtype=F64)
        self.means = torch.as_tensor(means, dtype=F64)
        self.covariances = torch.as_tensor(covariances, dtype=F64)
        k, d = self.means.shape
        if self.weights.shape != (k,) or self.covariances.shape != (k, d, d):
            raise ValueError(
                f"weights (K,), means (K, d) and covariances (K, d, d) must agree, got "
                f"{tuple(self.weights.shape)}, {tuple(self.means.shape)}, {tuple(self.covariances.shape)}"
            )
        if not all(bool(torch.isfinite(v).all()) for v in (self.weights, self.means, self.covariances)):
            raise ValueError("weights, means and covariances must be finite")
        self.weights = self.weights / self.weights.sum()
        self._chol = torch.linalg.cholesky(self.covariances)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def __repr__(self) -> str:
        return f"FullCovarianceMixture(K={len(self.weights)}, d={self.dim})"

    def sample(self, n: int, generator=None) -> Tensor:
        """n exact samples (n, d)."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=F64)
        return self.means[k] + (self._chol[k] @ eps[..., None])[..., 0]

    def log_prob(self, z: Tensor) -> Tensor:
        """log-density at each row of z (n, d)."""
        comp = gaussian_log_prob(z.to(F64)[:, None, :] - self.means[None], self._chol[None])  # (n, K)
        return torch.logsumexp(torch.log(self.weights) + comp, dim=1)

    def mean(self) -> Tensor:
        """E[z] (d,)."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """Cov[z] (d, d) = sum_k w_k (Sigma_k + mu_k mu_k^T) - E[z] E[z]^T."""
        m = self.mean()
        second = torch.einsum("k,kde->de", self.weights, self.covariances)
        second = second + torch.einsum("k,kd,ke->de", self.weights, self.means, self.means)
        return second - m[:, None] * m[None, :]


def condition_isotropic(
    weights: Tensor, means: Tensor, stds: Tensor, A: Tensor, y: Tensor, noise: float
) -> FullCovarianceMixture:
    """The exact p(z | y) for the prior sum_k weights_k N(means_k, stds_k^2 I) and y = A z + noise n
    (see the module docstring). ``A`` (m, d), ``y`` (m,), ``noise`` > 0."""
    A, y = torch.as_tensor(A, dtype=F64), torch.as_tensor(y, dtype=F64).reshape(-1)
    means = torch.as_tensor(means, dtype=F64)
    k, d = means.shape
    stds = torch.as_tensor(stds, dtype=F64).expand(k)
    weights = torch.as_tensor(weights, dtype=F64)
    if A.ndim != 2 or A.shape[1] != d:
        raise ValueError(f"A must be an (m, {d}) matrix for data of dimension {d}, got {tuple(A.shape)}")
    if y.shape != (A.shape[0],):
        raise ValueError(f"y must have {A.shape[0]} entries (the rows of A), got {tuple(y.shape)}")
    if not bool(torch.isfinite(A).all()) or not bool(torch.isfinite(y).all()):
        raise ValueError("A and y must be finite")
    check_positive("noise", noise)
    s2 = stds**2  # (K,)
    eye_d = torch.eye(d, dtype=F64)
    ata = A.T @ A / noise**2
    precision = eye_d[None] / s2[:, None, None] + ata[None]  # (K, d, d)
    cov = torch.linalg.inv(precision)
    cov = 0.5 * (cov + cov.transpose(1, 2))
    mu = (cov @ (means / s2[:, None] + (A.T @ y / noise**2)[None])[..., None])[..., 0]
    # evidence N(y; A m_k, s_k^2 A A^T + noise^2 I), by Cholesky
    m = A.shape[0]
    evid_cov = s2[:, None, None] * (A @ A.T)[None] + noise**2 * torch.eye(m, dtype=F64)[None]
    log_evidence = gaussian_log_prob(y[None] - means @ A.T, torch.linalg.cholesky(evid_cov))  # (K,)
    logw = torch.log(weights) + log_evidence
    return FullCovarianceMixture(torch.softmax(logw, 0), mu, cov)
