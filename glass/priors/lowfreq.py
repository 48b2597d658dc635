"""The low-frequency prior: x0 = (1 - a) T(x1) + a eps, T = bicubic downsample then upsample.

Pairing each image x1 with a noised low-pass version of itself is (empirically) an optimal-transport
coupling for a up to about 0.5 (Malnick et al., arXiv 2606.04092), so the flow-matching paths
x_t = t x1 + (1 - t) x0 are nearly straight. The flow model trains with the ordinary loss on (x0, x1)
pairs; at inference x0 is built from a low-resolution sample of a small generator G:
x0 = (1 - a) up(G) + a eps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from glass.noise import randn

__all__ = ["low_pass", "downsample", "upsample", "Gaussian", "LowFrequency"]


def downsample(x: Tensor, factor: int) -> Tensor:
    """Bicubic (antialiased) downsampling of (B, C, H, W) by ``factor`` (sizes rounded down)."""
    h, w = x.shape[-2:]
    size = (max(1, h // factor), max(1, w // factor))
    return F.interpolate(x.float(), size=size, mode="bicubic", antialias=True, align_corners=False).to(
        x.dtype
    )


def upsample(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x.float(), size=size, mode="bicubic", align_corners=False).to(x.dtype)


def low_pass(x: Tensor, factor: int) -> Tensor:
    """T(x): bicubic down by ``factor`` then up to the original size (shape-preserving low-pass)."""
    return upsample(downsample(x, factor), tuple(x.shape[-2:]))


class Gaussian:
    """The standard prior x0 = eps (independent coupling)."""

    name = "gaussian"

    def __repr__(self) -> str:
        return "Gaussian()"

    def pair(self, x1: Tensor, generator=None) -> Tensor:
        return torch.randn(x1.shape, generator=generator, dtype=x1.dtype, device=x1.device)


class LowFrequency:
    """x0 = (1 - a) T(x1) + a eps with T = :func:`low_pass` at ``factor``."""

    name = "lowfreq"

    def __init__(self, factor: int = 4, a: float = 0.5):
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
            raise ValueError(f"prior.factor must be an integer >= 2, got {factor!r}")
        if not (isinstance(a, (int, float)) and 0 < a <= 1):
            raise ValueError(f"prior.a must be in (0, 1], got {a!r}")
        self.factor, self.a = factor, float(a)

    def __repr__(self) -> str:
        return f"LowFrequency(factor={self.factor}, a={self.a:g})"

    def pair(self, x1: Tensor, generator=None) -> Tensor:
        """The prior sample coupled with x1 (training pairs)."""
        eps = randn(x1.shape, generator, dtype=x1.dtype, device=x1.device)
        return (1 - self.a) * low_pass(x1, self.factor) + self.a * eps

    def from_low(self, low: Tensor, size: tuple[int, int], generator=None) -> Tensor:
        """Inference: a low-resolution sample (e.g. from the generator G) -> x0."""
        up = upsample(low, size)
        eps = randn(up.shape, generator, dtype=up.dtype, device=up.device)
        return (1 - self.a) * up + self.a * eps
