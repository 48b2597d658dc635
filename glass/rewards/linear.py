"""The linear reward r(z) = w.z for the Gaussian-mixture oracle, where the value function and the
tilted target have closed forms (closed forms, README "The maths")."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["LinearReward"]


class LinearReward:
    """r(z) = w.z with w = scale * direction / |direction|; ``direction=None`` is (1, ..., 1)."""

    differentiable = True

    def __init__(self, scale: float = 1.0, direction: list[float] | None = None):
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
            raise ValueError(f"reward.scale must be a finite number, got {scale!r}")
        if direction is not None:
            d = torch.as_tensor(direction, dtype=torch.float64)
            if d.ndim != 1 or d.numel() == 0 or not torch.isfinite(d).all() or float(d.norm()) == 0:
                raise ValueError(f"reward.direction must be a non-zero list of numbers, got {direction!r}")
        self.scale, self.direction = float(scale), direction

    def weights(self, dim: int, device=None) -> Tensor:
        d = torch.ones(dim) if self.direction is None else torch.as_tensor(self.direction)
        if d.numel() != dim:
            raise ValueError(f"reward.direction has {d.numel()} entries, the model has dimension {dim}")
        d = d.to(torch.float64)
        return (self.scale * d / d.norm()).to(device)

    def __call__(self, x1: Tensor, **cond) -> Tensor:
        x = x1.reshape(len(x1), -1).double()
        return x @ self.weights(x.shape[1], x.device)

    def exact_target(self, model, lam: float = 1.0):
        """The exact tilted target p(z) exp(lam w.z) on the Gaussian-mixture oracle (eq. 6)."""
        return model.tilted(self.weights(model.dim), lam)

    def exact_value(self, model, x: Tensor, t) -> Tensor:
        """V_t(x) = log E[exp(w.z) | x_t = x] on the Gaussian-mixture oracle (eq. 8)."""
        return model.value(x, t, self.weights(model.dim))

    def exact_mean(self, target) -> float:
        """E[w.z] for z ~ ``target`` (an isotropic Gaussian mixture)."""
        return float((target.weights * (target.means @ self.weights(target.dim))).sum())

    def __repr__(self) -> str:
        return f"LinearReward(scale={self.scale:g})"
