"""DDPM ancestral sampling (Ho et al. 2020) on the paper's time axis: the discrete-time stochastic
baseline beside the SDE of eq. 5.

Each of ``steps`` sub-steps t_a -> t_b draws from the Gaussian kernel of the forward process given
z, with z replaced by the denoiser at the start of the step:

    x_{t_b} = gamma x_{t_a} + abar D_{t_a}(x_{t_a}) + sbar eps     (eqs. 12-13, 16-17, rho = rho_DDPM)

which is exactly a GLASS transition with M = 1 and rho_DDPM (Proposition 1), chained. One NFE a step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from glass.checks import check_int, check_state, check_transition
from glass.samplers.base import kernel_label
from glass.samplers.glass import GLASS
from glass.times import check_times, host_times, step_times

__all__ = ["DDPM"]


class DDPM:
    """DDPM ancestral sampler with ``steps`` uniform sub-steps per transition (one NFE each).

    A step ending at t = 1 returns the denoiser output (sbar = 0 there); a step from t = 0 needs
    D_0, so epsilon-prediction models must start their grid at t > 0 (as for every kernel).
    """

    stochastic = True  # draws noise: needs a Gaussian path

    def __init__(self, steps: int = 8):
        steps = check_int("steps", steps, 1)
        self.steps = steps
        self._step = GLASS(1, rho="ddpm")

    def __repr__(self) -> str:
        return f"DDPM(steps={self.steps})"

    @property
    def nfe(self) -> int:
        """Network calls per transition."""
        return self.steps

    @property
    def label(self) -> str:
        return kernel_label("ddpm", self.steps)

    def transition(self, model, x: Tensor, t, t_next, generator=None, denoised=None, **cond) -> Tensor:
        check_times(t, t_next)
        check_state(model, x, t, t_next, denoised)
        y = x.to(torch.float64)
        host = host_times(t, t_next, self.steps)  # host floats: no device scalars between the sub-steps
        per_sample = host is None
        times = step_times(t, t_next, self.steps, y) if per_sample else host
        d = denoised  # D_t(x) is valid until the first step that moves
        for a, b in zip(times[:-1], times[1:]):
            if not per_sample and b <= a:  # a sub-step that rounds to zero length is the identity
                continue
            y = self._step._transition(model, y, a, b, generator=generator, denoised=d, **cond)
            d = None
        return check_transition(model, y.to(x.dtype), self, t, t_next, x)
