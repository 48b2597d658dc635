"""Trajectory curvature of a model's probability-flow ODE (Lee et al. 2023; Malnick et al., arXiv 2606.04092):

    C = E_t E || (X_1 - X_0) - dX_t/dt ||^2

along the ODE path X_t from a prior sample X_0 (Gaussian, or the model's own designed prior) to X_1,
with t uniform on the path's Euler grid; the squared norm is averaged over dimensions, so C does not
grow with image size. C = 0 exactly when every path is a straight line at constant speed.
``metric=curvature`` reports C beside the task's default metric (FID on MNIST, the oracle distance).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from glass.checks import check_int

__all__ = ["path_curvature", "Curvature"]


def path_curvature(model, x0: Tensor, steps: int = 100, t0: float = 0.0) -> Tensor:
    """Per-sample curvature of the Euler path of dx/dt = u_t(x) from ``x0`` at ``t0`` to 1 (NFE = steps):
    ``glass.generate`` with one Euler step per transition, the velocities read by its per-step hook."""
    from glass.samplers import ODE, generate

    times = torch.linspace(t0, 1.0, steps + 1, dtype=torch.float64)
    velocities, start = [], {"x": x0.to(torch.float64), "t": t0}

    def record(i, t, x, denoised):  # u at the step's start, from the denoiser the step used
        velocities.append(model.schedule.x0_to_velocity(denoised, start["x"], start["t"]))
        start["x"], start["t"] = x, t

    x = generate(model, ODE(1), times, x=x0.to(torch.float64), callback=record)
    chord = (x - x0.to(torch.float64)) / (1.0 - t0)
    sq = [(chord - u).reshape(len(x), -1).pow(2).mean(1) for u in velocities]
    return torch.stack(sq).mean(0)


class Curvature:
    """``metric=curvature``: path curvature of the model (``n`` prior samples, ``steps`` Euler steps),
    plus the task's default metric on the samples."""

    path_metric = True

    text_to_image = False  # scores samples alone (metric=rewards gets the model and prompts)

    def __init__(self, steps: int = 100, n: int = 256, cache_dir: str = "outputs/cache"):
        for key, v in (("steps", steps), ("n", n)):
            check_int(key, v, 2)
        self.steps, self.n, self.inner, self.cache_dir = steps, n, None, cache_dir

    def __repr__(self) -> str:
        return f"Curvature(steps={self.steps}, n={self.n})"

    def __call__(self, *args, **kwargs) -> dict:
        return self.inner(*args, **kwargs) if self.inner is not None else {}

    def extractor(self):  # the FID feature extractor, for tasks that measure diversity
        return self.inner.extractor()

    def measure(self, model, generator) -> dict:
        from glass.samplers.base import prior_sample

        x0 = prior_sample(model, self.n, generator)
        c = path_curvature(model, x0, self.steps)
        return {"curvature": float(c.mean()), "curvature_se": float(c.std() / math.sqrt(len(c)))}
