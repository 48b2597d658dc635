"""GLASS transitions (Holderrieth et al. 2025, §4; DESIGN §3).

A GLASS transition samples x_{t'} ~ p_{t'|t}(. | x_t) for t < t' by integrating an inner flow over
s in [0, 1] whose velocity needs one call of the pretrained denoiser per step:

- eqs. 12-13, :func:`transition_coefficients`: gamma, abar, sbar of the conditional Gaussian
  x_{t'} | x_t, z ~ N(abar z + gamma x_t, sbar^2 I) (eqs. 16-17) for a correlation rho;
- Proposition 1, :func:`rho_ddpm`: the rho under which GLASS samples the DDPM transition;
- eq. 18, :func:`inner_path`: CondOT inner path abar_s = s abar, sbar_s = (1 - s) + s sbar;
- Proposition 2 / Lemma 1, :func:`sufficient_statistic` and :func:`glass_denoiser`: E[z | x_t, xbar_s]
  = D_{t*}(alpha_{t*} S) with precisions that add, no 2x2 inverse;
- Theorem 1, eqs. 19 and 21, :func:`inner_velocity_weights`: u_s = w1 xbar_s + w2 Dhat + w3 x_t.

All scalar algebra is float64; only the network input is cast to the model dtype (by the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from glass.samplers.times import check_times
from glass.schedules import Schedule, as_time, bcast

__all__ = [
    "GLASS",
    "Coefficients",
    "transition_coefficients",
    "rho_ddpm",
    "resolve_rho",
    "inner_path",
    "sufficient_statistic",
    "glass_denoiser",
    "inner_velocity_weights",
]

InnerSolver = Literal["euler", "midpoint"]
SBAR0 = 1.0  # sbar_0 of the inner path (paper: 1)


def rho_ddpm(schedule: Schedule, t: float | Tensor, t_next: float | Tensor) -> Tensor:
    """Proposition 1: rho_DDPM = alpha_t sigma_{t'} / (sigma_t alpha_{t'}).

    With this correlation a GLASS transition samples the same kernel as DDPM sampling.
    """
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


def inner_path(s: float | Tensor, c: Coefficients) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Eq. 18 with the CondOT inner schedule: abar_s = s abar, sbar_s = (1 - s) sbar_0 + s sbar.

    Returns (abar_s, sbar_s, d abar_s / ds, d sbar_s / ds).
    """
    return s * c.abar, (1 - s) * SBAR0 + s * c.sbar, c.abar + 0 * s, c.sbar - SBAR0 + 0 * s


def sufficient_statistic(
    schedule: Schedule, x_t: Tensor, xbar: Tensor, s: float | Tensor, c: Coefficients
) -> tuple[Tensor, Tensor]:
    """Proposition 2 / Lemma 1: the measurements x_t = alpha_t z + sigma_t eps and
    xbar_s - gamma x_t = abar_s z + sbar_s eps' are independent given z, so precisions add:

        P(s) = alpha_t^2 / sigma_t^2 + abar_s^2 / sbar_s^2
        S    = [ (alpha_t / sigma_t^2) x_t + (abar_s / sbar_s^2)(xbar_s - gamma x_t) ] / P(s)

    S = z + N(0, 1/P) noise. Returns (S, P). Undefined at s = 0 when t = 0 (P = 0).
    """
    a_t, s_t = schedule.alpha(c.t), schedule.sigma(c.t)
    ab_s, sb_s, _, _ = inner_path(s, c)
    prec = a_t**2 / s_t**2 + ab_s**2 / sb_s**2
    stat = bcast(a_t / s_t**2 / prec, x_t) * x_t + bcast(ab_s / sb_s**2 / prec, x_t) * (
        xbar - bcast(c.gamma, x_t) * x_t
    )
    return stat, prec


def glass_denoiser(model, x_t: Tensor, xbar: Tensor, s: float | Tensor, c: Coefficients, **cond) -> Tensor:
    """Proposition 2: E[z | x_t, xbar_s] = D_{t*}(alpha_{t*} S) with t* = g^{-1}(1 / P(s)).

    One network call. At s = 0 the inner measurement carries no information and the answer is
    D_t(x_t) (S is 0/0 there when t = 0).
    """
    schedule = model.schedule
    # a Python float is tested on the host: no device sync in the sampler's inner loop
    if (s == 0) if isinstance(s, (int, float)) else bool(torch.all(s == 0)):
        return model.denoise(x_t, c.t, **cond)
    stat, prec = sufficient_statistic(schedule, x_t, xbar, s, c)
    t_star = schedule.g_inv(1 / prec)
    return model.denoise(bcast(schedule.alpha(t_star), stat) * stat, t_star, **cond)


def inner_velocity_weights(s: float | Tensor, c: Coefficients) -> tuple[Tensor, Tensor, Tensor]:
    """Theorem 1 (eqs. 19, 21): u_s(xbar | x_t) = w1 xbar + w2 Dhat + w3 x_t with
    w1 = sbar_s' / sbar_s, w2 = abar_s' - abar_s w1, w3 = -gamma w1."""
    ab_s, sb_s, dab_s, dsb_s = inner_path(s, c)
    w1 = dsb_s / sb_s
    return w1, dab_s - ab_s * w1, -c.gamma * w1


class GLASS:
    """GLASS transition kernel p_{t'|t} with ``steps`` inner steps (one NFE each for Euler).

    Args:
        steps: inner steps M (>= 1). Euler on s = 0, 1/M, ..., (M-1)/M; s = 1 is never evaluated.
        rho: ``"ddpm"`` (Proposition 1) or a constant correlation in [-1, 1] (paper's best for
            FLUX: 0.4).
        kappa: use rho = rho_DDPM^kappa (paper Fig. 7 ablation); needs ``rho="ddpm"``.
        solver: ``"euler"`` (the paper's, M NFE) or ``"midpoint"`` (explicit second-order
            Runge-Kutta at s_i and s_i + h/2, 2M NFE, never evaluates s = 1).

    With M = 1 a GLASS step is the DDIM / ancestral step x_{t'} = gamma x_t + abar D_t(x_t) + sbar eps.
    """

    def __init__(
        self,
        steps: int = 8,
        rho: str | float = "ddpm",
        kappa: float | None = None,
        solver: InnerSolver = "euler",
    ):
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"sampler.steps must be an integer >= 1, got {steps!r}")
        if isinstance(rho, str):
            if rho != "ddpm":
                raise ValueError(f"sampler.rho must be 'ddpm' or a number in [-1, 1], got {rho!r}")
        elif isinstance(rho, bool) or not isinstance(rho, (int, float)) or not -1 <= rho <= 1:
            raise ValueError(f"sampler.rho must be 'ddpm' or a number in [-1, 1], got {rho!r}")
        if kappa is not None:
            if isinstance(kappa, bool) or not isinstance(kappa, (int, float)) or kappa < 0:
                raise ValueError(f"sampler.kappa must be a number >= 0 or null, got {kappa!r}")
            if rho != "ddpm":
                raise ValueError("sampler.kappa (rho = rho_DDPM^kappa) needs sampler.rho=ddpm")
        if solver not in get_args(InnerSolver):
            raise ValueError(
                f"sampler.solver must be one of {', '.join(get_args(InnerSolver))}, got {solver!r}"
            )
        self.steps, self.rho, self.kappa, self.solver = steps, rho, kappa, solver

    def __repr__(self) -> str:
        k = f", kappa={self.kappa}" if self.kappa is not None else ""
        return f"GLASS(steps={self.steps}, rho={self.rho!r}{k}, solver={self.solver!r})"

    def coefficients(self, schedule: Schedule, t, t_next) -> Coefficients:
        return transition_coefficients(
            schedule, t, t_next, resolve_rho(schedule, t, t_next, self.rho, self.kappa)
        )

    def transition(
        self,
        model,
        x: Tensor,
        t: float | Tensor,
        t_next: float | Tensor,
        generator=None,
        denoised=None,
        **cond,
    ) -> Tensor:
        """Sample x_{t'} ~ p_{t'|t}(. | x_t = x); returns x's dtype, computes in float64.
        ``denoised``: D_t(x) if the caller already has it (used at s = 0, saving one NFE)."""
        check_times(t, t_next)
        x_t = x.to(torch.float64)
        c = self.coefficients(model.schedule, as_time(t, x), as_time(t_next, x))
        eps = torch.randn(x_t.shape, generator=generator, dtype=torch.float64, device=x.device)
        xbar = bcast(c.gamma, x_t) * x_t + SBAR0 * eps  # xbar_0: the only randomness
        h = 1.0 / self.steps

        def velocity(xb: Tensor, s: float) -> Tensor:  # s stays a Python float: no host-device traffic
            if s == 0 and denoised is not None:  # at s = 0 the GLASS denoiser is D_t(x_t) (Prop. 2)
                d_hat = denoised.to(x_t)
            else:
                d_hat = glass_denoiser(model, x_t, xb, s, c, **cond)
            w1, w2, w3 = inner_velocity_weights(s, c)
            return bcast(w1, xb) * xb + bcast(w2, xb) * d_hat + bcast(w3, xb) * x_t

        for i in range(self.steps):
            s = i * h
            if self.solver == "euler":
                xbar = xbar + h * velocity(xbar, s)
            else:  # explicit midpoint: stages at s and s + h/2, both < 1
                x_mid = xbar + 0.5 * h * velocity(xbar, s)
                xbar = xbar + h * velocity(x_mid, s + 0.5 * h)
        return xbar.to(x.dtype)
