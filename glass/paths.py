"""Path maths of one transition, on the bottom floor beside :mod:`glass.schedules`.

The conditional Gaussian that every GLASS transition, the DDPM kernel and the Gaussian-mixture
oracle share: for a correlation rho, x_{t'} | x_t, z ~ N(abar z + gamma x_t, sbar^2 I) (paper eqs.
12-13, 16-17), with rho_DDPM of Proposition 1. Samplers and models import it from here; nothing here
imports a sampler or a model.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
from torch import Tensor

from glass.noise import randn
from glass.schedules import Schedule, as_time, bcast
from glass.schedules import get as get_schedule

__all__ = ["rho_ddpm", "resolve_rho", "Coefficients", "transition_coefficients", "noise_to"]


def noise_to(model, z: Tensor, t: float, generator=None) -> Tensor:
    """The Gaussian path, eq. 2: x_t = alpha_t z + sigma_t eps. eps comes from any ``glass.noise``
    source where it draws (a ``torch.Generator`` on its own device, Streams on theirs, the CPU by
    default; torch's global generator: the CPU one, so a seed gives the same x_t on every device),
    then moves to z's device once."""
    sch = model.schedule
    where = "cpu" if generator is None else None  # None: the source's own device
    eps = randn(z.shape, generator, dtype=torch.float64, device=where).to(z.device)
    return bcast(sch.alpha(t), z).to(z.device) * z + bcast(sch.sigma(t), z).to(z.device) * eps


def rho_ddpm(schedule: Schedule, t: float | Tensor, t_next: float | Tensor) -> Tensor:
    """Proposition 1: rho_DDPM = alpha_t sigma_{t'} / (sigma_t alpha_{t'}).

    With this correlation a GLASS transition samples the same kernel as DDPM sampling. ``schedule``:
    a :class:`Schedule` or its name (``"linear"``, ``"vp"``, ``"cosine"``).
    """
    schedule = get_schedule(schedule)
    t, t_next = as_time(t), as_time(t_next)
    return schedule.alpha(t) * schedule.sigma(t_next) / (schedule.sigma(t) * schedule.alpha(t_next))


def resolve_rho(
    schedule: Schedule,
    t: float | Tensor,
    t_next: float | Tensor,
    rho: str | float,
    kappa: float | None = None,
) -> Tensor:
    """The correlation of one transition: ``"ddpm"`` (Prop. 1), a constant in [-1, 1], or the
    ablation family rho_DDPM^kappa (paper Fig. 7) when ``kappa`` is given."""
    if isinstance(rho, str):
        if rho != "ddpm":
            raise ValueError(f"rho must be 'ddpm' or a number in [-1, 1], got {rho!r}")
        r = rho_ddpm(schedule, t, t_next)
        return r if kappa is None else r**kappa
    if kappa is not None:
        raise ValueError("kappa (rho = rho_DDPM^kappa) needs rho='ddpm'")
    if isinstance(rho, bool) or not isinstance(rho, numbers.Real) or not -1.0 <= float(rho) <= 1.0:
        raise ValueError(f"rho must be 'ddpm' or a number in [-1, 1], got {rho!r}")  # |rho| > 1: no kernel
    return torch.as_tensor(float(rho), dtype=torch.float64)


@dataclass(frozen=True)
class Coefficients:
    """Scalars of one transition t -> t' (each float64, scalar or shape (B,))."""

    t: Tensor
    t_next: Tensor
    rho: Tensor
    gamma: Tensor
    abar: Tensor
    sbar: Tensor


def transition_coefficients(
    schedule: Schedule, t: float | Tensor, t_next: float | Tensor, rho: Tensor | float
) -> Coefficients:
    """Eqs. 12-13: gamma = rho sigma_{t'} / sigma_t, abar = alpha_{t'} - gamma alpha_t,
    sbar = sigma_{t'} sqrt(1 - rho^2); then x_{t'} | x_t, z ~ N(abar z + gamma x_t, sbar^2 I)
    (eqs. 16-17), which leaves the marginals p_t, p_{t'} unchanged for every rho in [-1, 1]."""
    t, t_next = as_time(t), as_time(t_next)
    rho = torch.as_tensor(rho, dtype=torch.float64)
    gamma = rho * schedule.sigma(t_next) / schedule.sigma(t)
    abar = schedule.alpha(t_next) - gamma * schedule.alpha(t)
    sbar = schedule.sigma(t_next) * torch.sqrt(torch.clamp(1 - rho**2, min=0.0))
    return Coefficients(t, t_next, rho, gamma, abar, sbar)
