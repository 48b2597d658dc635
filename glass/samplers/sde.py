"""Stochastic baseline: the paper's "DDPM sampling" SDE (eq. 5), Euler-Maruyama (paper eq. 5).

    dX_t = [u_t(X) + (nu_t^2 / 2) grad log p_t(X)] dt + nu_t dW_t,
    nu_t^2 = 2 (alpha'/alpha) sigma^2 - 2 sigma sigma'.

It has the same marginals as the ODE and, in continuous time, the DDPM transition kernel
p_{t'|t} (the GLASS kernel with rho_DDPM, Proposition 1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from glass.checks import check_int, check_state, check_transition
from glass.noise import randn
from glass.samplers.base import kernel_label
from glass.schedules import bcast
from glass.times import check_times, host_times, step_times

__all__ = ["SDE"]


def _starts(sch, t0: float) -> bool:
    """Whether a step from the host time t0 is the ancestral start step (nu_t^2 of eq. 5 infinite)."""
    return t0 == 0 or not math.isfinite(float(sch.nu2(t0)))


class SDE:
    """Euler-Maruyama on eq. 5 with ``steps`` uniform steps; one NFE a step.

    Two boundary rules (paper eq. 5), applied per sample when times differ across the batch:
    - a step that ends at t' = 1 returns the denoiser output (no noise at t = 1);
    - a step that starts at t = 0 (or so close that nu_t^2 overflows) cannot be Euler-Maruyama: nu_0
      is infinite (alpha_0 = 0), the drift contains -(alpha'/alpha) x and the SDE forgets its start
      at once. That step is the DDPM ancestral step from t = 0 (GLASS with M = 1 and rho_DDPM = 0):
      x_h = alpha_h D_0(x) + sigma_h eps.
    """

    stochastic = True  # draws noise: needs a Gaussian path

    def __init__(self, steps: int = 8):
        steps = check_int("steps", steps, 1)
        self.steps = steps

    def __repr__(self) -> str:
        return f"SDE(steps={self.steps})"

    @property
    def nfe(self) -> int:
        """Network calls per transition."""
        return self.steps

    @property
    def label(self) -> str:
        return kernel_label("sde", self.steps)

    def transition(self, model, x: Tensor, t, t_next, generator=None, denoised=None, **cond) -> Tensor:
        check_times(t, t_next)
        check_state(model, x, t, t_next, denoised)
        sch = model.schedule
        y = x.to(torch.float64)
        times = step_times(t, t_next, self.steps, y)
        host = host_times(t, t_next, self.steps)  # shared times: the branches are decided on the host
        for i, (t0, t1) in enumerate(zip(times[:-1], times[1:])):
            d = denoised.to(y) if (i == 0 and denoised is not None) else model.denoise(y, t0, **cond)
            eps = randn(y.shape, generator, device=y.device)
            if host is None:  # nu_t = inf at t = 0 (and 1/t overflows below ~1e-308)
                start = (t0 == 0) | ~torch.isfinite(sch.nu2(t0))
                any_start = bool(torch.any(start))
            else:  # decided once, on the host: the device cannot round its way to another branch
                any_start = _starts(sch, host[i])
                start = torch.full((), any_start, dtype=torch.bool, device=y.device)
            te = torch.where(start, t1, t0)  # rows leaving t = 0 do not use the EM branch
            h, nu2 = bcast(t1 - t0, y), bcast(sch.nu2(te), y)
            drift = sch.x0_to_velocity(d, y, te) + 0.5 * nu2 * sch.x0_to_score(d, y, te)
            step = y + h * drift + torch.sqrt(h * nu2) * eps
            if any_start:
                ancestral = bcast(sch.alpha(t1), y) * d + bcast(sch.sigma(t1), y) * eps
                step = torch.where(bcast(start, y), ancestral, step)
            if i == self.steps - 1:
                step = torch.where(bcast(t1 == 1, y), d, step)
            step = torch.where(bcast(t1 == t0, y), y, step)  # a step rounded to zero length (t' - t ~ 1e-323)
            y = step
        return check_transition(model, y.to(x.dtype), self, t, t_next, x)
