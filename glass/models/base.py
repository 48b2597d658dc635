"""One model interface: ``denoise(x, t, **cond) -> D_t(x) = E[z | x_t = x]`` (DESIGN §1).

Every model, whatever it predicts (velocity, epsilon, x0, v), is adapted to this denoiser once, so
samplers never see prediction types. The wrapper counts network function evaluations (NFE): one per
call of :meth:`Model.denoise`, whatever the batch size. Tasks read ``model.nfe``; nothing counts by
hand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import torch
from torch import Tensor

from glass.schedules import Schedule, as_time, get

Prediction = Literal["velocity", "epsilon", "x0", "v"]

__all__ = ["Model", "CallableModel", "Prediction", "from_prediction"]


class Model:
    """Base class for every model seen by a sampler.

    Subclasses implement ``_denoise(x, t, **cond)`` with ``x`` already cast to ``self.dtype`` and
    ``t`` a float64 tensor of shape (B,). Public calls go through :meth:`denoise`, which counts NFE
    and returns the input's dtype (samplers keep their state in float64).
    """

    def __init__(
        self,
        schedule: str | Schedule = "linear",
        shape: tuple[int, ...] = (),
        dtype: torch.dtype = torch.float32,
    ):
        self.schedule = get(schedule)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype
        self.nfe = 0

    # -- the interface -----------------------------------------------------------------------------
    def denoise(self, x: Tensor, t: float | Tensor, **cond) -> Tensor:
        """D_t(x) = E[z | x_t = x]; counts one network function evaluation."""
        t = as_time(t, x)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        self.nfe += 1
        return self._denoise(x.to(self.dtype), t, **cond).to(x.dtype)

    def velocity(self, x: Tensor, t: float | Tensor, **cond) -> Tensor:
        """Marginal velocity u_t(x) from the denoiser (eq. 14); one NFE."""
        return self.schedule.x0_to_velocity(self.denoise(x, t, **cond), x, t)

    def reset_nfe(self) -> int:
        """Set the NFE counter to zero and return its previous value."""
        n, self.nfe = self.nfe, 0
        return n

    def _denoise(self, x: Tensor, t: Tensor, **cond) -> Tensor:
        raise NotImplementedError


class CallableModel(Model):
    """Adapt a network ``fn(x, t, **cond)`` that predicts ``prediction`` under ``schedule``.

    The network sees ``x`` and ``t`` in ``dtype``; the conversion to the denoiser (eqs. 14, 26, 27)
    runs in float64.
    """

    def __init__(
        self,
        fn: Callable[..., Tensor],
        prediction: Prediction,
        schedule: str | Schedule = "linear",
        shape: tuple[int, ...] = (),
        dtype: torch.dtype = torch.float32,
    ):
        if prediction not in get_args(Prediction):
            raise ValueError(
                f"unknown prediction type {prediction!r}; choose from: {', '.join(get_args(Prediction))}"
            )
        super().__init__(schedule, shape, dtype)
        self.fn = fn
        self.prediction = prediction

    def _denoise(self, x: Tensor, t: Tensor, **cond) -> Tensor:
        out = self.fn(x, t.to(self.dtype), **cond).to(torch.float64)
        x64, s = x.to(torch.float64), self.schedule
        if self.prediction == "x0":
            return out
        if self.prediction == "velocity":
            return s.velocity_to_x0(out, x64, t)
        if self.prediction == "epsilon":
            return s.eps_to_x0(out, x64, t)
        return s.v_to_x0(out, x64, t)


def from_prediction(
    fn: Callable[..., Tensor],
    prediction: Prediction,
    schedule: str | Schedule = "linear",
    shape: tuple[int, ...] = (),
    dtype: torch.dtype = torch.float32,
) -> CallableModel:
    """Shorthand for :class:`CallableModel`."""
    return CallableModel(fn, prediction, schedule, shape, dtype)
