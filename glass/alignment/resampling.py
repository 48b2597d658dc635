"""Resampling for sequential Monte Carlo (Feynman-Kac steering): pure functions on log-weights of
shape (G, N) (G independent particle groups of N particles each, or (N,) for one group):
``resample(log_weights, method, generator) -> ancestor indices`` within each group, and the
effective sample size.

All four schemes are unbiased (particle i is copied N w_i times in expectation); they differ in
variance: multinomial > stratified >= systematic, residual in between (Douc & Cappé 2005).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

__all__ = ["Resampler", "RESAMPLERS", "normalized", "ess", "resample"]

Resampler = Literal["multinomial", "systematic", "stratified", "residual"]
RESAMPLERS: tuple[str, ...] = get_args(Resampler)


def normalized(log_weights: Tensor) -> Tensor:
    """Normalized weights (float64, each group sums to 1) from log-weights; -inf gets weight 0."""
    lw = log_weights.double()
    if not bool(torch.isfinite(lw.max(-1).values).all()):
        raise FloatingPointError("a particle group has every log-weight -inf or NaN; nothing to resample")
    return torch.softmax(lw, -1)


def ess(log_weights: Tensor) -> Tensor:
    """Effective sample size 1 / sum_i w_i^2 per group, in [1, N]."""
    return 1.0 / (normalized(log_weights) ** 2).sum(-1)


def _inverse_cdf(w: Tensor, u: Tensor) -> Tensor:
    cdf = torch.cumsum(w, -1)
    cdf[..., -1] = 1.0  # guard against round-off leaving u > cdf[-1]
    return torch.searchsorted(cdf, u.contiguous(), right=True).clamp_(max=w.shape[-1] - 1)


def resample(log_weights: Tensor, method: Resampler = "systematic", generator=None) -> Tensor:
    """Ancestor indices, same shape as ``log_weights``, each indexing within its own group (CPU)."""
    if method not in RESAMPLERS:
        raise ValueError(f"resampler must be one of {', '.join(RESAMPLERS)}, got {method!r}")
    single = log_weights.ndim == 1
    w = normalized(log_weights.reshape(-1, log_weights.shape[-1])).cpu()
    g, n = w.shape
    base = torch.arange(n, dtype=torch.float64)
    if method == "multinomial":
        idx = torch.multinomial(w, n, replacement=True, generator=generator)
    elif method == "systematic":
        idx = _inverse_cdf(w, (base + torch.rand(g, 1, generator=generator, dtype=torch.float64)) / n)
    elif method == "stratified":
        idx = _inverse_cdf(w, (base + torch.rand(g, n, generator=generator, dtype=torch.float64)) / n)
    else:  # residual: floor(N w_i) deterministic copies, the remaining draws multinomial on the rest
        counts = torch.floor(n * w)
        cum = torch.cumsum(counts, -1).contiguous()
        j = base.expand(g, -1).contiguous()
        deterministic = torch.searchsorted(cum, j, right=True).clamp_(max=n - 1)
        resid = n * w - counts
        total = resid.sum(-1, keepdim=True)
        resid = torch.where(total > 1e-12, resid / total.clamp_min(1e-300), torch.full_like(resid, 1.0 / n))
        rest = torch.multinomial(resid, n, replacement=True, generator=generator)
        idx = torch.where(j < cum[:, -1:], deterministic, rest)
    return idx[0] if single else idx
