"""GLASS transitions (Holderrieth et al. 2025, paper §4).

A GLASS transition samples x_{t'} ~ p_{t'|t}(. | x_t) for t < t' by integrating an inner flow over
s in [0, 1] whose velocity needs one call of the pretrained denoiser per step:

- eqs. 12-13, :func:`transition_coefficients`: gamma, abar, sbar of the conditional Gaussian
  x_{t'} | x_t, z ~ N(abar z + gamma x_t, sbar^2 I) (eqs. 16-17) for a correlation rho;
- Proposition 1, :func:`rho_ddpm`: the rho under which GLASS samples the DDPM transition;
- eq. 18, :func:`inner_path`: CondOT inner path abar_s = s abar, sbar_s = (1 - s) + s sbar;
- Proposition 2 / Lemma 1, :func:`sufficient_statistic` and :func:`glass_denoiser`: E[z | x_t, xbar_s]
  = D_{t*}(alpha_{t*} S) with precisions that add, no 2x2 inverse;
- Theorem 1, eqs. 19 and 21, :func:`inner_velocity_weights`: u_s = w1 xbar_s + w2 Dhat + w3 x_t.

The sampler's hot path does not call these per step: :func:`inner_plan` evaluates them once per
transition on the whole inner grid (float64, on the host for a scalar t) and the loop is then one
network call plus three fused multiply-adds a step, with no host-device synchronisation.

All scalar algebra is float64; only the network input is cast to the model dtype (by the model).
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from glass.checks import check_int, check_state, check_transition
from glass.models.base import Model
from glass.noise import randn
from glass.paths import Coefficients, resolve_rho, rho_ddpm, transition_coefficients
from glass.samplers.base import kernel_label
from glass.schedules import Schedule, as_time, bcast
from glass.times import check_times, is_per_sample

__all__ = [
    "GLASS",
    "Coefficients",
    "transition_coefficients",
    "rho_ddpm",
    "resolve_rho",
    "inner_path",
    "sufficient_statistic",
    "statistic_weights",
    "glass_denoiser",
    "inner_velocity_weights",
    "inner_grid",
    "InnerPlan",
    "inner_plan",
    "step_moments",
]

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
InnerSolver = Literal["euler", "midpoint", "multistep"]
InnerGrid = Literal["uniform", "time"]
SBAR0 = 1.0  # sbar_0 of the inner path (paper: 1)


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
    w_x, w_xb, prec = statistic_weights(schedule, s, c)
    return bcast(w_x, x_t) * x_t + bcast(w_xb, x_t) * xbar, prec


def statistic_weights(
    schedule: Schedule, s: float | Tensor, c: Coefficients
) -> tuple[Tensor, Tensor, Tensor]:
    """Proposition 2 / Lemma 1 as scalars: S = w_x x_t + w_xb xbar_s and P(s), with
    w_x = (alpha_t / sigma_t^2 - gamma abar_s / sbar_s^2) / P and w_xb = (abar_s / sbar_s^2) / P."""
    a_t, s_t = schedule.alpha(c.t), schedule.sigma(c.t)
    ab_s, sb_s, _, _ = inner_path(s, c)
    prec = a_t**2 / s_t**2 + ab_s**2 / sb_s**2
    return (a_t / s_t**2 - ab_s / sb_s**2 * c.gamma) / prec, ab_s / sb_s**2 / prec, prec


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


def inner_grid(steps: int, c: Coefficients, schedule: Schedule, kind: InnerGrid = "uniform") -> Tensor:
    """Inner times 0 = s_0 < ... < s_M = 1, shape (M + 1, *t.shape), float64.

    ``uniform``: s_i = i / M (the paper's). ``time``: the s_i at which the GLASS denoiser's effective
    time t*(s) = g^{-1}(1 / P(s)) (Proposition 2) is uniform between t*(0) = t and t*(1) (= t' for
    rho_DDPM): the inner network calls then see the same times an outer sampler with M uniform steps
    would. Inverts P(s) = alpha_t^2 / sigma_t^2 + r(s)^2 with r(s) = abar s / ((1 - s) + s sbar).
    """
    i = torch.arange(steps + 1, dtype=torch.float64, device=c.t.device).reshape(-1, *([1] * c.t.ndim))
    uniform = (i / steps).expand(steps + 1, *c.t.shape).clone()
    if kind == "uniform":
        return uniform
    a_t, s_t = schedule.alpha(c.t), schedule.sigma(c.t)
    snr_t = a_t**2 / s_t**2
    t_end = schedule.g_inv(
        1 / (snr_t + c.abar**2 / c.sbar**2)
    )  # P(1); t' for rho_DDPM (t_end = 1 if sbar = 0)
    tau = c.t + (t_end - c.t) * (i / steps)
    q = torch.clamp(1 / schedule.g(tau) - snr_t, min=0.0)
    s = 1 / (c.abar.abs() / torch.sqrt(q) + (1 - c.sbar))  # r(s) = sqrt(q) solved for s
    s = torch.where(torch.isfinite(s), s, uniform)
    s[0], s[-1] = 0.0, 1.0
    ok = (c.abar.abs() > 1e-12) & torch.all(s[1:] > s[:-1], dim=0)  # no information: keep uniform
    return torch.where(ok, s, uniform)


@dataclass(frozen=True)
class InnerPlan:
    """Everything one transition needs besides the network, evaluated once (float64).

    For network evaluation j: the input is ``in_x[j] x_t + in_xb[j] xbar`` (= alpha_{t*} S of
    Proposition 2) at time ``t_star[j]``. For step i: ``xbar <- c_xb[i] xbar + c_d[i] D + c_x[i] x_t``
    (Euler on eq. 19, which for the linear inner path is also the exact step with D frozen), plus
    ``c_m[i] (D_i - D_{i-1})`` for the multistep solver, whose corrector adds ``c_c[i] (D_{i+1} -
    D_i) - c_m[i] (D_i - D_{i-1})`` to the result once D_{i+1} is known. Midpoint has two entries a
    step: the half step from xbar, then ``xbar + c_xb x_mid + c_d D_mid + c_x x_t``. Scalar-time plans
    hold Python floats.
    """

    gamma: float | Tensor
    t_star: Tensor
    in_x: list
    in_xb: list
    c_xb: list
    c_d: list
    c_x: list
    c_m: list
    c_c: list


def _eval_coefficients(schedule: Schedule, s: Tensor, c: Coefficients) -> tuple[Tensor, Tensor, Tensor]:
    """(t*, in_x, in_xb) of the GLASS denoiser (Proposition 2) at inner times s, any shape: its
    network input alpha_{t*} S is in_x x_t + in_xb xbar_s."""
    w_x, w_xb, prec = statistic_weights(schedule, s, c)
    t_star = schedule.g_inv(1 / prec)
    a_star = schedule.alpha(t_star)
    in_x, in_xb = a_star * w_x, a_star * w_xb
    # no inner information yet (s = 0, or a precision that underflows to 0 at t = 0): D_t(x_t); S is
    # 0/0 when t = 0, where D_0 = E[z] whatever its input
    at_zero = (s == 0) | (prec == 0)
    t_star = torch.where(at_zero, c.t.expand_as(s), t_star)
    in_x = torch.where(at_zero, torch.ones_like(in_x), in_x)
    in_xb = torch.where(at_zero, torch.zeros_like(in_xb), in_xb)
    return t_star, in_x, in_xb


def step_moments(s: Tensor, c: Coefficients) -> Tensor:
    """K_i = abar sbar_{s_{i+1}} int_{s_i}^{s_{i+1}} (u - s_i) / sbar_u^2 du for the steps of the inner
    grid s (CondOT inner path of eq. 18, sbar_u = SBAR0 - kappa u, kappa = SBAR0 - sbar): in the exact
    solution of eq. 19 over a step,

        xbar_{s'} - gamma x_t = (sbar_{s'} / sbar_s)(xbar_s - gamma x_t)
                                + sbar_{s'} abar int_s^{s'} Dhat(u) / sbar_u^2 du,

    the weight of Dhat's slope in s. With u = kappa h / sbar_{s_i}, the integral is closed form,
    K = abar sbar_{s_i} / kappa^2 (u + (1 - u) log(1 - u)) (finite at sbar_{s'} = 0, u = 1), and a
    power series where u is small (the closed form cancels there)."""
    kappa = SBAR0 - c.sbar
    q0, h = SBAR0 - kappa * s[:-1], s[1:] - s[:-1]
    u = kappa * h / q0
    closed = q0 / kappa**2 * (u + torch.special.xlogy(1 - u, 1 - u))
    series = h**2 / q0 * (1 - u) * sum((n - 1) / n * u ** (n - 2) for n in range(2, 16))
    return c.abar * torch.where(u.abs() < 1e-2, series, closed)


def inner_plan(
    schedule: Schedule,
    c: Coefficients,
    steps: int,
    solver: InnerSolver = "euler",
    kind: InnerGrid = "uniform",
) -> InnerPlan:
    """Precompute a transition's inner loop (see :class:`InnerPlan`).

    ``multistep`` (one NFE a step, second order, also at s = 1 where sbar = 0): each step is the exact
    solution of eq. 19 (see :func:`step_moments`) for Dhat linear in s through the last two
    evaluations (an exponential Adams-Bashforth step, as DPM-Solver++(2M) but in s), followed, once
    the next evaluation is known, by the corrector that redoes the step with Dhat linear through its
    two ends (UniPC's UniC, Zhao et al. 2023: no extra NFE; s = 1 is never evaluated, so the last
    step is not corrected). The first step is Euler. ``benchmarks/inner_solvers.py`` compares it with
    third-order and other variants.
    """
    s = inner_grid(steps, c, schedule, kind)
    h = s[1:] - s[:-1]
    s_eval = s[:-1] if solver != "midpoint" else torch.stack([s[:-1], s[:-1] + 0.5 * h], 1).flatten(0, 1)
    t_star, in_x, in_xb = _eval_coefficients(schedule, s_eval, c)
    if solver == "midpoint":  # the step uses the slope at the half point; first stage goes half-way
        w1, w2, w3 = inner_velocity_weights(s_eval, c)
        hh = torch.stack([0.5 * h, h], 1).flatten(0, 1)
        first = torch.arange(len(hh)) % 2 == 0
        first = first.reshape(-1, *([1] * c.t.ndim)).to(hh.device)
        c_xb, c_d, c_x = torch.where(first, 1 + hh * w1, hh * w1), hh * w2, hh * w3
    else:
        w1, w2, w3 = inner_velocity_weights(s[:-1], c)
        c_xb, c_d, c_x = 1 + h * w1, h * w2, h * w3
    c_m, c_c = torch.zeros_like(c_d), torch.zeros_like(c_d)
    if solver == "multistep":
        k = step_moments(s, c)
        c_c = k / h  # corrector: D linear through s_i, s_{i+1}
        c_m[1:] = k[1:] / h[:-1]  # predictor: D extrapolated linearly from s_{i-1}, s_i

    scalar = c.t.ndim == 0 and c.t.device.type == "cpu"

    def host(v: Tensor):  # scalar time: plain Python floats, no tensors (and no device) in the loop
        return v.tolist() if scalar else list(v.unbind(0))

    gamma = c.gamma.item() if scalar else c.gamma
    return InnerPlan(gamma, t_star, *(host(v) for v in (in_x, in_xb, c_xb, c_d, c_x, c_m, c_c)))


class GLASS:
    """GLASS transition kernel p_{t'|t} with ``steps`` inner steps (one NFE each for Euler).

    Args:
        steps: inner steps M (>= 1). s = 1 is never evaluated.
        rho: ``"ddpm"`` (Proposition 1) or a constant correlation in [-1, 1] (paper's best for
            FLUX: 0.4).
        kappa: use rho = rho_DDPM^kappa (paper Fig. 7 ablation); needs ``rho="ddpm"``.
        solver: ``"euler"`` (the paper's, M NFE), ``"midpoint"`` (explicit second-order Runge-Kutta
            at s_i and s_i + h/2, 2M NFE) or ``"multistep"`` (M NFE: exponential Adams steps
            reusing the previous network call, each corrected with the next one; second order, also
            at s = 1 of a posterior; see :func:`inner_plan`).
        inner_grid: inner times, ``"uniform"`` (the paper's) or ``"time"`` (uniform in the effective
            denoiser time t*; see :func:`inner_grid`). ("grid" alone is the outer grid of times.)
        compile: run each transition as one ``torch.compile`` graph together with the network (false:
            eager; true or a ``torch.compile`` mode: ``default``, ``reduce-overhead`` (CUDA graphs),
            ``max-autotune``, ``max-autotune-no-cudagraphs``). The same numbers to the network's
            float rounding under the compiler; the first transition compiles (seconds to minutes),
            and once more on a second batch size (see :func:`_compiled_graph`). Applies at host
            times to models with a raw network (see :meth:`_compiles`); ``benchmarks/bench.py``
            measures it.

    With M = 1 a GLASS step is the DDIM / ancestral step x_{t'} = gamma x_t + abar D_t(x_t) + sbar eps.
    """

    stochastic = True  # draws noise: needs a Gaussian path

    def __init__(
        self,
        steps: int = 8,
        rho: str | float = "ddpm",
        kappa: float | None = None,
        solver: InnerSolver = "euler",
        inner_grid: InnerGrid = "uniform",
        compile: bool | str = False,
    ):
        steps = check_int("steps", steps, 1)
        if isinstance(rho, str):
            if rho != "ddpm":
                raise ValueError(f"rho must be 'ddpm' or a number in [-1, 1], got {rho!r}")
        elif isinstance(rho, bool) or not isinstance(rho, numbers.Real) or not -1 <= rho <= 1:
            raise ValueError(f"rho must be 'ddpm' or a number in [-1, 1], got {rho!r}")
        else:
            rho = rho if isinstance(rho, int) else float(rho)  # numpy scalars too
        if kappa is not None:
            if isinstance(kappa, bool) or not isinstance(kappa, numbers.Real) or not kappa >= 0:
                raise ValueError(f"kappa must be a number >= 0 or null, got {kappa!r}")
            kappa = kappa if isinstance(kappa, int) else float(kappa)
            if rho != "ddpm":
                raise ValueError("kappa (rho = rho_DDPM^kappa) needs rho='ddpm'")
        if solver not in get_args(InnerSolver):
            raise ValueError(
                f"solver must be one of {', '.join(get_args(InnerSolver))}, got {solver!r}"
            )
        if inner_grid not in get_args(InnerGrid):
            kinds = ", ".join(get_args(InnerGrid))
            raise ValueError(f"inner_grid must be one of {kinds}, got {inner_grid!r}")
        self.steps, self.rho, self.kappa, self.solver = steps, rho, kappa, solver
        self.inner_grid = inner_grid
        if compile is True:
            compile = "default"
        if compile is not False and compile not in COMPILE_MODES:
            modes = ", ".join(COMPILE_MODES)
            raise ValueError(
                f"compile must be true, false or a torch.compile mode ({modes}), got {compile!r}"
            )
        self.compile = compile

    def __repr__(self) -> str:
        k = f", kappa={self.kappa}" if self.kappa is not None else ""
        g = f", inner_grid={self.inner_grid!r}" if self.inner_grid != "uniform" else ""
        g += f", compile={self.compile!r}" if self.compile else ""
        return f"GLASS(steps={self.steps}, rho={self.rho!r}{k}, solver={self.solver!r}{g})"

    @property
    def nfe(self) -> int:
        """Network calls per transition."""
        return 2 * self.steps if self.solver == "midpoint" else self.steps

    @property
    def label(self) -> str:
        extras = [] if self.rho == "ddpm" else [f"rho={self.rho:g}"]
        extras += [f"kappa={self.kappa:g}"] if self.kappa is not None else []
        extras += [self.solver] if self.solver != "euler" else []
        extras += [f"inner_grid={self.inner_grid}"] if self.inner_grid != "uniform" else []
        return kernel_label("glass", self.steps, *extras)

    def coefficients(self, schedule: Schedule, t, t_next) -> Coefficients:
        return transition_coefficients(
            schedule, t, t_next, resolve_rho(schedule, t, t_next, self.rho, self.kappa)
        )

    def plan(self, schedule: Schedule, t, t_next) -> InnerPlan:
        """The precomputed inner loop of a transition t -> t' (:func:`inner_plan`). Plans of host
        times are kept (up to 256 per kernel): a sampler that repeats a transition (a generation grid
        run again, FK steering's particles, a benchmark) computes its schedule arithmetic once."""
        host = isinstance(t, Tensor) and t.ndim == 0 and t.device.type == "cpu" and isinstance(t_next, Tensor)
        key = (id(schedule), float(t), float(t_next)) if host else None
        cache = self.__dict__.setdefault("_plans", {})
        if key is not None and key in cache and cache[key][0] is schedule:
            return cache[key][1]
        p = inner_plan(
            schedule, self.coefficients(schedule, t, t_next), self.steps, self.solver, self.inner_grid
        )
        if key is not None:
            if len(cache) >= 256:
                cache.clear()
            cache[key] = (schedule, p)  # the schedule itself is kept: its id is never reused meanwhile
        return p

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
        ``denoised``: D_t(x) if the caller already has it (used at s = 0, saving one NFE).

        The schedule arithmetic runs once, before the loop, on the host for a scalar t (on x's device
        for per-sample times); the loop itself never synchronises host and device. NaN or Inf is
        reported once, after the loop, with the network call and time where it first appeared."""
        y = self._transition(model, x, t, t_next, generator, denoised, **cond)
        return check_transition(model, y, self, t, t_next, x)

    def _affine(self, model, x: Tensor, per_sample: bool, t_star: Tensor) -> tuple[list, list] | None:
        """The denoiser's (a, b) at every inner time, as host floats, when the loop of :meth:`_folded`
        applies: Euler steps at host times, a :class:`~glass.models.base.Model` whose denoiser is
        affine in its network's output (``model.affine``; wrappers such as guidance are not), no
        autograd through x. Else None."""
        if per_sample or self.solver != "euler" or not isinstance(model, Model) or not model.fold_eager:
            return None
        if torch.is_grad_enabled() and x.requires_grad:
            return None
        coeffs = model.affine(t_star)  # the plan's host times: no copy back from the device
        return None if coeffs is None else (coeffs[0].tolist(), coeffs[1].tolist())

    def _compiles(self, model, x: Tensor, per_sample: bool, t_star: Tensor) -> tuple[Tensor, Tensor] | None:
        """The denoiser's (a, b) at the plan's times when ``compile`` applies: host times, a model whose
        denoiser is affine in its raw network (``model.affine`` not None: ``from_prediction`` models,
        the MNIST UNet), no autograd through x. Else None: the eager loop runs, with a warning the
        first time."""
        coeffs = model.affine(t_star) if isinstance(model, Model) and not per_sample else None
        why = (
            "per-sample times" if per_sample
            else f"{type(model).__name__}'s denoiser is not affine in one network output" if coeffs is None
            else "autograd through x" if torch.is_grad_enabled() and x.requires_grad
            else None
        )  # fmt: skip
        if why is not None and not self.__dict__.get("_warned"):
            self._warned = True
            warnings.warn(f"{self!r}: compile does not apply ({why}); the eager loop runs", stacklevel=4)
        return coeffs if why is None else None

    def _folded(self, model, x_t: Tensor, xbar: Tensor, p: InnerPlan, t_star: Tensor, coeffs, denoised,
                cond) -> Tensor:  # fmt: skip
        """The Euler loop of the inner ODE (eq. 19) with the denoiser folded into the update (the same
        numbers as the plain loop, to float rounding). With D = a x_in + b f(x_in) and
        x_in = in_x x_t + in_xb xbar, step j is

            xbar <- (c_xb + c_d a in_xb) xbar + (c_x + c_d a in_x) x_t + (c_d b) f(x_in),

        so a step is the network call, its input (two operations and the cast to the network's dtype)
        and three in-place operations; the coefficients are host floats computed once per transition."""
        a, bb = coeffs
        x_dtype, t_dtype = model.network_dtypes
        times = t_star.to(t_dtype)[:, None].expand(-1, x_t.shape[0])  # (M, B): a view per step
        x_net = x_t.to(x_dtype)
        for j in range(self.steps):
            c_xb, c_d, c_x = p.c_xb[j], p.c_d[j], p.c_x[j]
            if j == 0 and denoised is not None:  # D_t(x_t) given (Prop. 2 at s = 0): no network call
                xbar = xbar.mul_(c_xb).add_(x_t, alpha=c_x).add_(denoised.to(x_t), alpha=c_d)
                continue
            if j == 0:  # x_in = x_t
                inp, in_x, in_xb = x_net, 1.0, 0.0
            else:
                in_x, in_xb = p.in_x[j], p.in_xb[j]
                inp = torch.mul(xbar, in_xb).add_(x_t, alpha=in_x).to(x_dtype)
            out = model.network(inp, times[j], **cond)
            k = c_d * a[j]
            xbar = xbar.mul_(c_xb + k * in_xb).add_(x_t, alpha=c_x + k * in_x).add_(out, alpha=c_d * bb[j])
        return xbar

    def _transition(self, model, x, t, t_next, generator=None, denoised=None, **cond) -> Tensor:
        check_times(t, t_next)
        check_state(model, x, t, t_next, denoised)
        x_t = x.to(torch.float64)
        per_sample = is_per_sample(t, t_next)
        if per_sample:  # (B,) times: the plan lives on x's device
            t64, tn64 = as_time(t, x_t), as_time(t_next, x_t)
        else:  # the plan is Python floats; one copy of a device scalar per transition at most
            t64, tn64 = as_time(t).cpu().reshape(()), as_time(t_next).cpu().reshape(())
        p = self.plan(model.schedule, t64, tn64)
        eps = randn(x_t.shape, generator, device=x.device)
        calls = self.nfe - (denoised is not None)  # network calls left to make
        coeffs = self._compiles(model, x, per_sample, p.t_star) if self.compile and calls else None
        if coeffs is not None:
            return self._compiled(model, x_t, eps, p, coeffs, denoised, cond).to(x.dtype)
        t_star = _to_device(p.t_star, x.device)  # the network's times: one asynchronous copy

        def b(v):  # a Python float, or a (B,) coefficient shaped to broadcast
            return v if isinstance(v, float) else bcast(v, x_t)

        xbar = b(p.gamma) * x_t + SBAR0 * eps  # xbar_0: the only randomness
        coeffs = self._affine(model, x, per_sample, p.t_star)
        if coeffs is not None:
            return self._folded(model, x_t, xbar, p, t_star, coeffs, denoised, cond).to(x.dtype)

        def denoise(j: int, inp: Tensor) -> Tensor:
            return model.denoise(inp, t_star[j], **cond)

        return inner_loop(self.solver, self.steps, p, denoise, xbar, x_t, denoised).to(x.dtype)

    def _compiled(self, model, x_t: Tensor, eps: Tensor, p: InnerPlan, coeffs, denoised, cond) -> Tensor:
        """The transition as one compiled graph (``compile``): :func:`compiled_transition` under
        ``torch.compile``, with the plan and the model's (a, b) as device tensors (one graph serves
        every t, t'), then the network calls counted and watched as :meth:`Model.network` would."""
        key, cache = (id(p), x_t.device), self.__dict__.setdefault("_device_plans", {})
        entry = cache.get(key)
        if entry is None or entry[0] is not p or entry[1] is not coeffs[0] or entry[2] is not coeffs[1]:
            if len(cache) >= 256:  # (a, b) are the model's kept coefficients: another model, other objects
                cache.clear()
            rows = [p.in_x, p.in_xb, p.c_xb, p.c_d, p.c_x, p.c_m, p.c_c, [p.gamma] * len(p.in_x)]
            host = torch.cat([torch.tensor(rows, dtype=torch.float64), torch.stack([*coeffs, p.t_star])])
            entry = cache[key] = (p, *coeffs, _to_device(host, x_t.device))  # asynchronous, once
        plan = entry[3]
        coef, gamma, ab = plan[:7], plan[7, 0], plan[8:10]
        x_dtype, t_dtype = model.network_dtypes
        times = plan[10].to(t_dtype)[:, None].expand(-1, x_t.shape[0])
        graph = _compiled_graph(self.compile)
        with torch.no_grad():
            y, sums = graph(model, self.solver, self.steps, x_t, eps, gamma, coef, ab, times, x_dtype,
                            denoised, cond)  # fmt: skip
        if self.compile in ("reduce-overhead", "max-autotune"):  # CUDA graphs reuse their output buffers
            y, sums = y.clone(), sums.clone()
        called = range(1 if denoised is not None else 0, len(p.in_x))
        model.record_calls([times[j] for j in called], sums)
        return y


def _to_device(v: Tensor, device: torch.device) -> Tensor:
    """A host tensor on ``device`` without synchronising: pinned and copied asynchronously to a GPU."""
    if device.type == "cuda" and v.device.type == "cpu":
        return v.pin_memory().to(device, non_blocking=True)
    return v.to(device)


def inner_loop(solver: str, steps: int, p: InnerPlan, denoise, xbar: Tensor, x_t: Tensor,
               denoised: Tensor | None = None) -> Tensor:  # fmt: skip
    """The inner ODE (eq. 19) from xbar_0 over the plan ``p``. The GLASS denoiser at evaluation j
    (Proposition 2) is ``denoise(j, x_in)`` at the network input x_in = alpha_{t*} S = in_x x_t +
    in_xb xbar, and D_t(x_t) at s = 0 (``denoised`` when the caller has it: no network call).
    Shared by the eager and the compiled transition."""

    def b(v):  # a Python float, or a 0-d or (B,) coefficient shaped to broadcast
        return v if isinstance(v, float) else bcast(v, x_t)

    def glass_d(j: int, xb: Tensor) -> Tensor:
        if j == 0:  # s = 0: the inner measurement carries no information
            return denoised.to(x_t) if denoised is not None else denoise(0, x_t)
        return denoise(j, b(p.in_x[j]) * x_t + b(p.in_xb[j]) * xb)

    def update(k: int, xb: Tensor, d: Tensor) -> Tensor:
        return b(p.c_xb[k]) * xb + b(p.c_d[k]) * d + b(p.c_x[k]) * x_t

    d_prev = d_prev2 = None
    for i in range(steps):
        if solver == "midpoint":  # stages at s_i and s_i + h_i / 2, both < 1
            x_mid = update(2 * i, xbar, glass_d(2 * i, xbar))
            xbar = xbar + update(2 * i + 1, x_mid, glass_d(2 * i + 1, x_mid))
            continue
        d = glass_d(i, xbar)
        if solver == "multistep" and i >= 1:  # correct the step just taken with D_i
            xbar = xbar + b(p.c_c[i - 1]) * (d - d_prev)
            if i >= 2:
                xbar = xbar - b(p.c_m[i - 1]) * (d_prev - d_prev2)
        new = update(i, xbar, d)
        if solver == "multistep" and i >= 1:
            new = new + b(p.c_m[i]) * (d - d_prev)
        xbar, d_prev2, d_prev = new, d_prev, d
    return xbar


def compiled_transition(model, solver, steps, x_t, eps, gamma, coef, ab, times, x_dtype, denoised, cond):
    """The GLASS transition as one function of tensors, for ``torch.compile``: xbar_0 = gamma x_t +
    eps, then :func:`inner_loop` with the denoiser D = a x_in + b f(x_in) of the model's raw network
    f (the conversion of eqs. 14, 26, 27, ``model.affine``). ``coef`` holds the plan's rows (in_x,
    in_xb, c_xb, c_d, c_x, c_m, c_c), ``ab`` the rows (a, b) and ``times`` the network's times, one
    per evaluation. Returns xbar_1 and the float64 sum of every network output (the NaN watch)."""
    p = InnerPlan(gamma, times, *(list(row.unbind(0)) for row in coef))
    sums = []

    def denoise(j: int, inp: Tensor) -> Tensor:
        out = model.raw_network(inp.to(x_dtype), times[j], cond)
        sums.append(out.sum(dtype=torch.float64))
        return ab[0, j] * inp + ab[1, j] * out.to(ab.dtype)  # float64, as the eager conversion

    y = inner_loop(solver, steps, p, denoise, gamma * x_t + SBAR0 * eps, x_t, denoised)
    return y, torch.stack(sums)


_GRAPHS: dict = {}


def _compiled_graph(mode: str):
    """``torch.compile(compiled_transition, mode=mode)``, one per mode per process. Dynamo keeps a
    graph per model, solver, M and autograd mode beneath it, specialised to the first batch size;
    a second batch size compiles one graph for every batch size (its default ``dynamic=None``), so
    batch sizes never use up its recompile limit (8 graphs; beyond it a call runs eagerly)."""
    if mode not in _GRAPHS:
        _GRAPHS[mode] = torch.compile(compiled_transition, mode=mode)
    return _GRAPHS[mode]
