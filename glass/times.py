"""Time checks and step grids shared by every kernel and the oracle (beside :mod:`glass.schedules`)."""

from __future__ import annotations

import torch
from torch import Tensor

from glass.schedules import as_time

__all__ = ["check_times", "step_times", "host_times", "is_per_sample"]


def _show(v) -> str:
    if isinstance(v, Tensor):
        return str(v.tolist()) if v.numel() <= 4 else f"tensor of {v.numel()} values"
    return repr(v)


def check_times(t: float | Tensor, t_next: float | Tensor) -> None:
    """Validate 0 <= t < t_next <= 1 with a one-line ValueError naming the bad value (host floats
    are checked without tensors; device tensors cost one synchronisation each)."""
    if isinstance(t, (int, float)) and isinstance(t_next, (int, float)) and not isinstance(t, bool):
        if not 0 <= t < 1:
            raise ValueError(f"t must lie in [0, 1), got {_show(t)}")
        if not t < t_next <= 1:
            raise ValueError(f"t_next must satisfy t < t_next <= 1, got t={_show(t)}, t_next={_show(t_next)}")
        return
    t64, tn64 = as_time(t), as_time(t_next)
    if not bool(torch.all((t64 >= 0) & (t64 < 1))):
        raise ValueError(f"t must lie in [0, 1), got {_show(t)}")
    if not bool(torch.all((tn64 > t64) & (tn64 <= 1))):
        raise ValueError(f"t_next must satisfy t < t_next <= 1, got t={_show(t)}, t_next={_show(t_next)}")


def is_per_sample(t: float | Tensor, t_next: float | Tensor) -> bool:
    """Whether a transition has per-sample (B,) times rather than one scalar pair."""
    return any(isinstance(v, Tensor) and v.numel() > 1 for v in (t, t_next))


def host_times(t: float | Tensor, t_next: float | Tensor, steps: int) -> list[float] | None:
    """:func:`step_times` as Python floats when the whole batch shares one (t, t_next), else None: the
    kernels decide their per-step branches from these without a host-device synchronisation."""
    if is_per_sample(t, t_next):
        return None
    return [float(v) for v in step_times(float(t), float(t_next), steps, torch.empty(0))]


def step_times(t: float | Tensor, t_next: float | Tensor, steps: int, like: Tensor) -> list[Tensor]:
    """Uniform grid t = tau_0 < ... < tau_steps = t_next (float64, on ``like``'s device), with both
    end points exact: the last entry *is* t_next, so a test such as ``tau == 1`` is reliable
    (t + (t_next - t) * M / M can round to 1 - 1e-16)."""
    t, t_next = as_time(t, like), as_time(t_next, like)
    return [t + (t_next - t) * (i / steps) for i in range(steps)] + [t_next]
