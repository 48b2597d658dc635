"""Feynman-Kac potentials on intermediate rewards (Singhal et al. 2025; paper §5, eq. 6).

With r_k the intermediate reward after transition k and lambda the tilt strength:
- difference: log G_k = lambda (r_k - r_{k-1})   (r_{-1} = 0; the paper's §3 example)
- max:        log G_k = lambda max_{j <= k} r_j
- sum:        log G_k = lambda sum_{j <= k} r_j
- current:    log G_k = lambda r_k
The last step is always the correction log G_K = lambda r(x_1) - sum_{k<K} log G_k (summed along each
particle's ancestry), so the product of all potentials is exp(lambda r(x_1)) and the particle system
targets p^r(z) proportional to p(z) exp(lambda r(z)) (paper eq. 6) whatever the choice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, get_args

import torch
from torch import Tensor

__all__ = ["Potential", "POTENTIALS", "RewardState", "log_potential"]

Potential = Literal["difference", "max", "sum", "current"]
POTENTIALS: tuple[str, ...] = get_args(Potential)


@dataclass(frozen=True)
class RewardState:
    """Per-particle summaries of the intermediate rewards so far (re-indexed on resampling)."""

    last: Tensor
    max: Tensor
    sum: Tensor

    @classmethod
    def empty(cls, like: Tensor) -> RewardState:
        zeros = torch.zeros_like(like, dtype=torch.float64)
        return cls(zeros, torch.full_like(zeros, -torch.inf), zeros)

    def update(self, r: Tensor) -> RewardState:
        return RewardState(r, torch.maximum(self.max, r), self.sum + r)

    def index(self, idx: Tensor) -> RewardState:
        return replace(self, last=self.last[idx], max=self.max[idx], sum=self.sum[idx])


def log_potential(kind: Potential, lam: float, r: Tensor, state: RewardState) -> Tensor:
    """log G_k for intermediate rewards ``r`` given the state *before* this step (lam = 0: none, also
    where a reward is -inf: 0 * -inf would be NaN)."""
    if kind not in POTENTIALS:
        raise ValueError(f"potential must be one of {', '.join(POTENTIALS)}, got {kind!r}")
    if lam == 0:
        return torch.zeros_like(r, dtype=torch.float64)
    if kind == "difference":
        return lam * (r - state.last)
    if kind == "max":
        return lam * torch.maximum(state.max, r)
    if kind == "sum":
        return lam * (state.sum + r)
    return lam * r  # current
