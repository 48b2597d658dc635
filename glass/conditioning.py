"""Keyword conditioning (``prompt=``, ``negative_prompt=``, ...) given per output and carried per row.

A Python entry point gets conditioning per *output* (``generate``: per sample; ``fk_steering`` and
``best_of_n``: per group; ``posterior``: per image): a single value shared by all, or a list (or
tensor) with one entry per output. The batch the network sees has ``repeat`` rows per output
(particles, posterior draws), so :func:`per_row` repeats each entry, and :func:`take` cuts the rows
of a chunk. Models declare the keys they take (``Model.conditioning``); :func:`check_keys` refuses
the rest, so nothing is silently ignored.
"""

from __future__ import annotations

import torch

__all__ = ["per_row", "take", "check_keys"]


def _is_per_row(value) -> bool:
    return isinstance(value, (list, tuple)) or (torch.is_tensor(value) and value.ndim > 0)


def check_keys(model, cond: dict) -> None:
    """Every key of ``cond`` must be one the model declares; one ValueError naming the others."""
    allowed = tuple(getattr(model, "conditioning", ()))
    unknown = sorted(set(cond) - set(allowed))
    if unknown:
        takes = f"it takes {', '.join(allowed)}" if allowed else "it takes no conditioning"
        raise ValueError(
            f"{type(model).__name__} does not take the conditioning {', '.join(unknown)}; {takes}"
        )


def per_row(cond: dict, n: int, repeat: int = 1, what: str = "samples") -> dict:
    """Conditioning given for ``n`` outputs -> one entry per row of a batch of n * repeat rows (each
    output's entry repeated ``repeat`` times, consecutively). Shared values stay as they are."""
    out = {}
    for key, value in cond.items():
        if not _is_per_row(value):
            out[key] = value
            continue
        if len(value) != n:
            raise ValueError(
                f"{key} has {len(value)} entries for {n} {what}; give one per {what[:-1]} or a single value"
            )
        if repeat == 1:
            out[key] = value
        elif torch.is_tensor(value):
            out[key] = value.repeat_interleave(repeat, dim=0)
        else:
            out[key] = [v for v in value for _ in range(repeat)]
    return out


def take(cond: dict, index) -> dict:
    """The conditioning of the rows ``index`` (a slice or an index tensor) of a batch."""
    out = {}
    for key, value in cond.items():
        if torch.is_tensor(value) and value.ndim > 0:
            out[key] = value[index.to(value.device) if torch.is_tensor(index) else index]
        elif isinstance(value, (list, tuple)):
            out[key] = value[index] if isinstance(index, slice) else [value[int(i)] for i in index.tolist()]
        else:
            out[key] = value
    return out
