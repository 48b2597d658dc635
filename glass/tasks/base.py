"""What every task returns, and the pieces tasks share."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from glass.checks import check_finite, check_int, check_time
from glass.models.base import capabilities_of
from glass.samplers.base import derive_seed
from glass.schedules import bcast

__all__ = [
    "Result", "check_int", "check_time", "check_finite", "is_oracle", "identical_streams", "noise_to",
    "check_gaussian_path",
]  # fmt: skip


def check_gaussian_path(model, task_name: str) -> None:
    """Tasks that noise data or run stochastic transitions need x_t = alpha_t z + sigma_t eps."""
    if not getattr(model, "gaussian_path", True):
        raise ValueError(
            f"task={task_name} needs a Gaussian probability path, and {model!r} has a designed prior "
            "(use task=generate with sampler=ode)"
        )


@dataclass
class Result:
    """``rows``: one dict of metrics per kernel (``sampler`` label, ``nfe`` and the metric values);
    ``samples``: the first kernel's samples (or, for images, label -> samples); the arrays the plots
    need in ``extra``."""

    rows: list[dict]
    samples: Tensor | dict[str, Tensor]
    reference: Tensor | None = None
    extra: dict = field(default_factory=dict)


def is_oracle(model) -> bool:
    """Whether the model is an exact oracle (closed-form posterior samples)."""
    return capabilities_of(model).oracle


def identical_streams(generator: torch.Generator, device):
    """A seed drawn from ``generator``, returned as a factory of fresh generators on ``device``:
    every kernel of a comparison gets an identical copy of the same stream, whatever device the
    model runs on."""
    seed = derive_seed(generator)
    return lambda: torch.Generator(device=device).manual_seed(seed)


def noise_to(model, z: Tensor, t: float, generator: torch.Generator) -> Tensor:
    """x_t = alpha_t z + sigma_t eps (paper eq. 2), eps drawn on the CPU with ``generator``."""
    sch = model.schedule
    eps = torch.randn(z.shape, generator=generator, dtype=torch.float64).to(z.device)
    return bcast(sch.alpha(t), z).to(z.device) * z + bcast(sch.sigma(t), z).to(z.device) * eps
