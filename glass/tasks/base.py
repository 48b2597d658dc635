"""What every task returns, and the checks tasks share."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["Result", "check_int", "require_oracle"]


@dataclass
class Result:
    """Metrics (flat name -> number; ``nfe`` included) and the arrays the plots need."""

    metrics: dict[str, float]
    samples: Tensor
    reference: Tensor
    extra: dict[str, Tensor] = field(default_factory=dict)


def check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def require_oracle(model, what: str) -> None:
    if not hasattr(model, "sample_posterior"):
        raise ValueError(f"{what} needs an exact oracle model (model=gmm or model=gmm64), got {model!r}")
