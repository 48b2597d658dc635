"""Deterministic baseline: integrate the probability-flow ODE dx/dt = u_t(x) (paper eq. 5)."""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

from glass.checks import check_int, check_state, check_transition
from glass.samplers.base import kernel_label
from glass.schedules import bcast
from glass.times import check_times, host_times, step_times

__all__ = ["ODE"]

ODEMethod = Literal["euler", "heun", "ddim"]
STIFF = 1e6  # h alpha'/alpha beyond which an Euler step is meaningless (VP near t = 0)
STEEP = 1e3  # ... when h alpha' is large too: linear and cosine paths (h alpha' <= pi/2) never are


def frozen_step(sch, t0, h) -> Tensor:
    """Where a step of length h from t0 must be the DDIM step (exact with the denoiser frozen): the
    velocity is infinite (alpha' = inf, the VP path at t = 0), or so steep that Euler would throw the
    state out by a factor h alpha'/alpha > 1e6 (the VP path at t0 = 1e-300: finite, but its next
    network call sees values near 1e150). A bool tensor (0-d for host floats)."""
    da, ds, a = sch.d_alpha(t0), sch.d_sigma(t0), sch.alpha(t0)
    steep = (a > 0) & (h * da > STIFF * a) & (h * da > STEEP)
    return ~(torch.isfinite(da) & torch.isfinite(ds)) | steep


class ODE:
    """ODE transition x_t -> x_{t'} with ``steps`` uniform steps.

    ``euler`` costs one NFE a step; ``heun`` two, except a step that ends at t' = 1, where the
    velocity is singular (sigma_1 = 0) and the step falls back to Euler (as in Karras et al. 2022).
    The Euler step that ends at t = 1 returns the denoiser output exactly for the linear schedule.

    Where the velocity itself is infinite at the start of a step (alpha' = inf, e.g. the VP path
    alpha = sqrt(t) at t = 0), or so large that an Euler step is meaningless (:func:`frozen_step`),
    the step is the DDIM step x_{t1} = alpha_{t1} D + sigma_{t1} eps_hat (eq. 27), the exact solution
    of the ODE with the denoiser frozen, which is finite there.
    The rules are applied per sample when times differ across the batch.

    ``ddim`` (one NFE a step) takes that exact frozen-denoiser step everywhere: the deterministic DDIM
    update (Song et al. 2021) of DDPM-family schedulers. For the linear schedule it equals Euler.
    """

    stochastic = False  # deterministic

    def __init__(self, steps: int = 8, method: ODEMethod = "euler"):
        steps = check_int("steps", steps, 1)
        if method not in get_args(ODEMethod):
            raise ValueError(f"method must be one of {', '.join(get_args(ODEMethod))}, got {method!r}")
        self.steps, self.method = steps, method

    def __repr__(self) -> str:
        return f"ODE(steps={self.steps}, method={self.method!r})"

    @property
    def nfe(self) -> int:
        """Network calls per transition, at most (Heun: 2 a step; its step into t' = 1 makes one, so a
        transition ending at 1 makes one fewer: the model wrapper counts what was made)."""
        return 2 * self.steps if self.method == "heun" else self.steps

    @property
    def label(self) -> str:
        return kernel_label("ode", self.steps, *([self.method] if self.method != "euler" else []))

    def _singular(self, sch, t0: float, t1: float) -> bool:
        """Whether the step t0 -> t1 (host times) is a DDIM step (:func:`frozen_step`, or every step)."""
        return self.method == "ddim" or bool(frozen_step(sch, t0, t1 - t0))

    def transition(self, model, x: Tensor, t, t_next, generator=None, denoised=None, **cond) -> Tensor:
        check_times(t, t_next)
        check_state(model, x, t, t_next, denoised)
        y, sch = x.to(torch.float64), model.schedule
        times = step_times(t, t_next, self.steps, y)
        host = host_times(t, t_next, self.steps)  # shared times: the branches are decided on the host
        for i, (t0, t1) in enumerate(zip(times[:-1], times[1:])):
            h = bcast(t1 - t0, y)
            d = denoised.to(y) if (i == 0 and denoised is not None) else model.denoise(y, t0, **cond)
            if host is None:
                singular = frozen_step(sch, t0, t1 - t0) | (self.method == "ddim")
                any_singular = bool(torch.any(singular))
            else:  # decided once, on the host: the device cannot round its way to another branch
                any_singular = self._singular(sch, host[i], host[i + 1])
                singular = torch.full((), any_singular, dtype=torch.bool, device=y.device)
            u0 = torch.where(bcast(singular, y), 0.0, sch.x0_to_velocity(d, y, t0))
            new = y + h * u0
            heun = (t1 < 1) & ~singular
            any_heun = (host[i + 1] < 1 and not any_singular) if host is not None else bool(torch.any(heun))
            if self.method == "heun" and any_heun:
                t_eval = torch.where(heun, t1, t0)  # rows that stay Euler are evaluated at a safe time
                u1 = model.velocity(new, t_eval, **cond)
                new = torch.where(bcast(heun, y), y + 0.5 * h * (u0 + u1), new)
            if any_singular:
                ddim = bcast(sch.alpha(t1), y) * d + bcast(sch.sigma(t1), y) * sch.x0_to_eps(d, y, t0)
                new = torch.where(bcast(singular, y), ddim, new)
            y = torch.where(bcast(t1 == t0, y), y, new)  # a step rounded to zero length (t' - t ~ 1e-16)
        return check_transition(model, y.to(x.dtype), self, t, t_next, x)
