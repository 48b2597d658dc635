"""Ink: mean brightness of an MNIST image in [0, 1] (differentiable). A crude, easily hacked reward
(thick strokes and blobs score high): the quality measures beside it expose that."""

from __future__ import annotations

from torch import Tensor

__all__ = ["Ink"]


class Ink:
    differentiable = True

    def __call__(self, x1: Tensor, **cond) -> Tensor:
        return ((x1.double() + 1) / 2).clamp(0, 1).reshape(len(x1), -1).mean(1)

    def __repr__(self) -> str:
        return "Ink()"
