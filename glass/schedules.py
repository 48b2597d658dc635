"""Gaussian probability paths x_t = alpha_t z + sigma_t eps (paper eq. 2).

Time runs from t = 0 (pure noise, alpha_0 = 0, sigma_0 = 1) to t = 1 (data, alpha_1 = 1,
sigma_1 = 0). A schedule is a small object returning alpha, sigma, their time derivatives, the
inverse signal-to-noise ratio g(t) = sigma_t^2 / alpha_t^2 and its inverse g^{-1}. All arithmetic
is float64 and vectorised over t. The conversions between velocity, epsilon, x0 (denoiser),
v-prediction and score live here too (paper eqs. 14, 26, 27), so every model adapter and sampler
shares one implementation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["Schedule", "Linear", "VP", "Cosine", "Custom", "get", "names", "as_time", "bcast"]

F64 = torch.float64


def as_time(t: float | Tensor, like: Tensor | None = None) -> Tensor:
    """Return t as a float64 tensor (on ``like``'s device when given)."""
    device = like.device if like is not None else None
    if isinstance(t, Tensor):
        return t.to(dtype=F64, device=device if device is not None else t.device)
    return torch.as_tensor(float(t), dtype=F64, device=device)


def bcast(c: Tensor, x: Tensor) -> Tensor:
    """Reshape a scalar or per-sample (B,) coefficient so it broadcasts against x of shape (B, ...)."""
    if c.ndim == 0:
        return c
    return c.reshape(c.shape[0], *([1] * (x.ndim - 1)))


class Schedule:
    """Base class: subclasses give alpha, sigma and their derivatives in closed form.

    ``g_inv`` defaults to bisection on the strictly decreasing g; the built-in schedules override
    it with their closed forms (paper §2, eqs. 2, 14, 26-27).
    """

    name: str = "schedule"

    # --- the path ------------------------------------------------------------------------------
    def alpha(self, t: float | Tensor) -> Tensor:
        raise NotImplementedError

    def sigma(self, t: float | Tensor) -> Tensor:
        raise NotImplementedError

    def d_alpha(self, t: float | Tensor) -> Tensor:
        raise NotImplementedError

    def d_sigma(self, t: float | Tensor) -> Tensor:
        raise NotImplementedError

    def g(self, t: float | Tensor) -> Tensor:
        """Inverse signal-to-noise ratio g(t) = sigma_t^2 / alpha_t^2 (strictly decreasing)."""
        t = as_time(t)
        return (self.sigma(t) / self.alpha(t)) ** 2

    def g_inv(self, y: float | Tensor, iters: int = 100) -> Tensor:
        """Solve g(t) = y for t by bisection (g is strictly decreasing on (0, 1))."""
        y = as_time(y)
        lo = torch.zeros_like(y)
        hi = torch.ones_like(y)
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            above = self.g(mid) > y  # g too large -> t too small
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        out = 0.5 * (lo + hi)
        out = torch.where(torch.isinf(y), torch.zeros_like(out), out)
        return torch.where(y == 0, torch.ones_like(out), out)

    def nu2(self, t: float | Tensor) -> Tensor:
        """Squared diffusion coefficient of the paper's DDPM SDE (eq. 5):
        nu_t^2 = 2 (alpha'/alpha) sigma^2 - 2 sigma sigma'."""
        t = as_time(t)
        a, s = self.alpha(t), self.sigma(t)
        return 2 * self.d_alpha(t) / a * s**2 - 2 * s * self.d_sigma(t)

    # --- conversions (eqs. 14, 26, 27) ----------------------------------------------------------
    def velocity_to_x0(self, u: Tensor, x: Tensor, t: float | Tensor) -> Tensor:
        """D = (sigma u - sigma' x) / (alpha' sigma - alpha sigma')  (eq. 26)."""
        t = as_time(t, x)
        a, s, da, ds = (bcast(f(t), x) for f in (self.alpha, self.sigma, self.d_alpha, self.d_sigma))
        return (s * u - ds * x) / (da * s - a * ds)

    def x0_to_velocity(self, d: Tensor, x: Tensor, t: float | Tensor) -> Tensor:
        """u = (sigma'/sigma) x + (alpha' - alpha sigma'/sigma) D  (eq. 14)."""
        t = as_time(t, x)
        a, s, da, ds = (bcast(f(t), x) for f in (self.alpha, self.sigma, self.d_alpha, self.d_sigma))
        return ds / s * x + (da - a * ds / s) * d

    def x0_to_eps(self, d: Tensor, x: Tensor, t: float | Tensor) -> Tensor:
        """eps_hat = (x - alpha D) / sigma  (eq. 27)."""
        t = as_time(t, x)
        return (x - bcast(self.alpha(t), x) * d) / bcast(self.sigma(t), x)

    def eps_to_x0(self, eps: Tensor, x: Tensor, t: float | Tensor) -> Tensor:
        """D = (x - sigma eps) / alpha  (eq. 27 solved for D; undefined at t = 0)."""
        t = as_time(t, x)
        return (x - bcast(self.sigma(t), x) * eps) / bcast(self.alpha(t), x)

    def x0_to_score(self, d: Tensor, x: Tensor, t: float | Tensor) -> Tensor:
        """Tweedie: grad log p_t(x) = (alpha D - x) / sigma^2  (eq. 27)."""
        t = as_time(t, x)
        return (bcast(self.alpha(t), x) * d - x) / bcast(self.sigma(t), x) ** 2

    def v_to_x0(self, v: Tensor, x: Tensor, t: float | Tensor) -> Tensor:
        """v-prediction (Salimans & Ho 2022), v = alpha eps - sigma z: z = (alpha x - sigma v) /
        (alpha^2 + sigma^2), valid for any schedule (the denominator is 1 for VP)."""
        t = as_time(t, x)
        a, s = bcast(self.alpha(t), x), bcast(self.sigma(t), x)
        return (a * x - s * v) / (a**2 + s**2)

    def x0_to_v(self, d: Tensor, x: Tensor, t: float | Tensor) -> Tensor:
        """Inverse of :meth:`v_to_x0` given eps_hat from eq. 27."""
        t = as_time(t, x)
        a, s = bcast(self.alpha(t), x), bcast(self.sigma(t), x)
        return a * self.x0_to_eps(d, x, t) - s * d

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Linear(Schedule):
    """CondOT / rectified-flow path (SiT, FLUX, SD3): alpha = t, sigma = 1 - t."""

    name = "linear"

    def alpha(self, t):
        return as_time(t)

    def sigma(self, t):
        return 1 - as_time(t)

    def d_alpha(self, t):
        return torch.ones_like(as_time(t))

    def d_sigma(self, t):
        return -torch.ones_like(as_time(t))

    def g(self, t):
        t = as_time(t)
        return ((1 - t) / t) ** 2

    def g_inv(self, y, iters: int = 0):
        return 1 / (1 + torch.sqrt(as_time(y)))


class VP(Schedule):
    """Variance-preserving path in the paper's form: alpha = sqrt(t), sigma = sqrt(1 - t)."""

    name = "vp"

    def alpha(self, t):
        return torch.sqrt(as_time(t))

    def sigma(self, t):
        return torch.sqrt(1 - as_time(t))

    def d_alpha(self, t):
        return 0.5 / torch.sqrt(as_time(t))

    def d_sigma(self, t):
        return -0.5 / torch.sqrt(1 - as_time(t))

    def g(self, t):
        return 1 / as_time(t) - 1

    def g_inv(self, y, iters: int = 0):
        return 1 / (1 + as_time(y))


class Cosine(Schedule):
    """Cosine path: alpha = sin(pi t / 2), sigma = cos(pi t / 2)."""

    name = "cosine"

    def alpha(self, t):
        return torch.sin(math.pi / 2 * as_time(t))

    def sigma(self, t):
        return torch.cos(math.pi / 2 * as_time(t))

    def d_alpha(self, t):
        return math.pi / 2 * torch.cos(math.pi / 2 * as_time(t))

    def d_sigma(self, t):
        return -math.pi / 2 * torch.sin(math.pi / 2 * as_time(t))

    def g(self, t):
        return 1 / torch.tan(math.pi / 2 * as_time(t)) ** 2

    def g_inv(self, y, iters: int = 0):
        return 2 / math.pi * torch.atan(1 / torch.sqrt(as_time(y)))


class Custom(Schedule):
    """A user schedule from two callables alpha(t), sigma(t) on float64 tensors.

    Derivatives come from autograd; g^{-1} from bisection. The callables must satisfy the path
    conventions (alpha_0 = sigma_1 = 0, alpha_1 = sigma_0 = 1, SNR strictly increasing).
    """

    name = "custom"

    def __init__(self, alpha: Callable[[Tensor], Tensor], sigma: Callable[[Tensor], Tensor]):
        self._alpha, self._sigma = alpha, sigma
        ends = torch.tensor([0.0, 1.0], dtype=F64)
        a, s = alpha(ends), sigma(ends)
        if not (torch.allclose(a, ends, atol=1e-9) and torch.allclose(s, 1 - ends, atol=1e-9)):
            raise ValueError(
                "custom schedule must have alpha(0)=0, alpha(1)=1, sigma(0)=1, sigma(1)=0; "
                f"got alpha={a.tolist()}, sigma={s.tolist()}"
            )

    def alpha(self, t):
        return self._alpha(as_time(t))

    def sigma(self, t):
        return self._sigma(as_time(t))

    @staticmethod
    def _derivative(f, t):
        t = as_time(t).detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(f(t).sum(), t)
        return grad

    def d_alpha(self, t):
        return self._derivative(self._alpha, t)

    def d_sigma(self, t):
        return self._derivative(self._sigma, t)


_REGISTRY: dict[str, type[Schedule]] = {"linear": Linear, "vp": VP, "cosine": Cosine}


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str | Schedule) -> Schedule:
    """Return the schedule called ``name`` (``linear``, ``vp``, ``cosine``), or pass one through."""
    if isinstance(name, Schedule):
        return name
    try:
        return _REGISTRY[name]()
    except (KeyError, TypeError):
        raise ValueError(f"unknown schedule {name!r}; choose from: {', '.join(names())}") from None
