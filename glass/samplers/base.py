"""The one transition interface and full generation (DESIGN §2).

A transition kernel is any object with

    kernel.transition(model, x, t, t_next, generator=None, denoised=None, **cond) -> x_{t_next}

Every kernel's first network evaluation is D_t(x) at the transition's start (GLASS at s = 0, SDE and
ODE at their first step); a caller that already has it passes ``denoised`` and saves that NFE
(FK steering scores x_t with exactly this call).

(:class:`~glass.samplers.ODE`, :class:`~glass.samplers.SDE`, :class:`~glass.samplers.GLASS`).
Full generation chains K of them on an outer grid 0 = t_0 < ... < t_K = 1; with M inner steps each
it costs K * M network calls, counted by the model wrapper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from glass.noise import Streams, randn

__all__ = ["Transition", "time_grid", "generate", "derive_seed"]


class Transition(Protocol):
    steps: int

    def transition(self, model, x: Tensor, t, t_next, generator=None, denoised=None, **cond) -> Tensor: ...


def derive_seed(generator: torch.Generator | None) -> int | None:
    """A seed drawn from ``generator`` (on its own device), to start a stream on another device."""
    if generator is None:
        return None
    if isinstance(generator, Streams):
        return generator.derive_seed()
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))


def time_grid(grid: int | Sequence[float] | Tensor, model=None) -> Tensor:
    """Outer grid: K transitions for an int K (uniform on [0, 1], or the model's own grid when it has
    one: ``model.grid(K)``, e.g. FLUX's shifted grid or a DDPM model's [t_min, 1]), else the given
    increasing times, which must start in [0, 1) and end at 1."""
    if isinstance(grid, bool):
        raise ValueError(f"the time grid must be an int K >= 1 or a list of times, got {grid!r}")
    if isinstance(grid, int):
        if grid < 1:
            raise ValueError(f"the number of transitions K must be >= 1, got {grid}")
        if model is not None and hasattr(model, "grid"):
            return time_grid(model.grid(grid))
        return torch.linspace(0, 1, grid + 1, dtype=torch.float64)
    g = torch.as_tensor(grid, dtype=torch.float64).reshape(-1)
    if (
        g.numel() < 2
        or not 0.0 <= float(g[0]) < 1.0
        or float(g[-1]) != 1.0
        or bool(torch.any(g[1:] <= g[:-1]))
    ):
        raise ValueError(f"a time grid must increase strictly from t0 in [0, 1) to 1, got {g.tolist()}")
    return g


def prior_sample(model, n: int, generator: torch.Generator | None = None, t0: float = 0.0) -> Tensor:
    """n draws of the model's x_{t0}: N(0, sigma_{t0}^2 I) on ``model.device``, or the model's own
    designed prior (``model.prior_sample``, e.g. the low-frequency prior) when it has one."""
    if hasattr(model, "prior_sample"):
        return model.prior_sample(n, generator)
    device = getattr(model, "device", torch.device("cpu"))
    x = randn((n, *model.shape), generator, device=device)
    return x * model.schedule.sigma(t0).item()


def generate(
    model,
    kernel: Transition,
    grid: int | Sequence[float] | Tensor = 5,
    n: int | None = None,
    *,
    x: Tensor | None = None,
    generator: torch.Generator | None = None,
    progress=None,
    **cond,
) -> Tensor:
    """Sample from the model: start at x ~ N(0, sigma_{t0}^2 I) on ``model.device`` (exactly p_0 when
    the grid starts at t0 = 0; for t0 > 0, as for DDPM-grid or epsilon models, the usual approximation
    that drops alpha_{t0} z), or at the given ``x``; apply one transition per interval of the outer
    grid; return x_1. ``progress`` is an optional callable called after each transition."""
    times = time_grid(grid, model)
    if x is None:
        if n is None or isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"give n >= 1 samples or a starting x, got n={n!r}")
        x = prior_sample(model, n, generator, float(times[0]))
    for t0, t1 in zip(times[:-1], times[1:]):
        x = kernel.transition(model, x, float(t0), float(t1), generator=generator, **cond)
        if progress is not None:
            progress()
    return x
