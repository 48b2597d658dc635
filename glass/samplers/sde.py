"""Stochastic baseline: the paper's "DDPM sampling" SDE (eq. 5), Euler-Maruyama (DESIGN §2).

    dX_t = [u_t(X) + (nu_t^2 / 2) grad log p_t(X)] dt + nu_t dW_t,
    nu_t^2 = 2 (alpha'/alpha) sigma^2 - 2 sigma sigma'.

It has the same marginals as the ODE and, in continuous time, the DDPM transition kernel
p_{t'|t} (the GLASS kernel with rho_DDPM, Proposition 1).
"""

from __future__ import annotations

import torch
from torch import Tensor

from glass.samplers.glass import check_times
from glass.schedules import as_time, bcast

__all__ = ["SDE"]


class SDE:
    """Euler-Maruyama on eq. 5 with ``steps`` uniform steps; one NFE a step.

    Two boundary rules, both documented in DESIGN §2:
    - a step that ends at t' = 1 returns the denoiser output (no noise at t = 1);
    - a step that starts at t = 0 cannot be Euler-Maruyama (the drift has the term -(alpha'/alpha) x,
      infinite at alpha = 0: the SDE forgets its start at once). It takes the exact limit instead,
      the DDPM ancestral step from t = 0: x_h = alpha_h D_0(x) + sigma_h eps.
    """

    def __init__(self, steps: int = 8):
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"sampler.steps must be an integer >= 1, got {steps!r}")
        self.steps = steps

    def __repr__(self) -> str:
        return f"SDE(steps={self.steps})"

    def transition(self, model, x: Tensor, t, t_next, generator=None, **cond) -> Tensor:
        check_times(t, t_next)
        sch = model.schedule
        t, t_next = as_time(t), as_time(t_next)
        y = x.to(torch.float64)
        for i in range(self.steps):
            t0 = t + (t_next - t) * i / self.steps
            t1 = t + (t_next - t) * (i + 1) / self.steps
            d = model.denoise(y, t0, **cond)
            if i == self.steps - 1 and bool(torch.all(t1 == 1)):
                y = d
                continue
            eps = torch.randn(y.shape, generator=generator, dtype=torch.float64, device=y.device)
            if bool(torch.all(t0 == 0)):
                y = bcast(sch.alpha(t1), y) * d + bcast(sch.sigma(t1), y) * eps
                continue
            h = bcast(t1 - t0, y)
            drift = sch.x0_to_velocity(d, y, t0) + 0.5 * bcast(sch.nu2(t0), y) * sch.x0_to_score(d, y, t0)
            y = y + h * drift + torch.sqrt(h * bcast(sch.nu2(t0), y)) * eps
        return y.to(x.dtype)
