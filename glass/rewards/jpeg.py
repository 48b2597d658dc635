"""JPEG compressibility: minus the JPEG size in kilobytes (torchvision's encoder; the reward of
Black et al. 2023's DDPO experiments). Not differentiable: usable by FK steering and best-of-N, not by
guidance."""

from __future__ import annotations

import torch
from torch import Tensor

from glass.checks import check_int

__all__ = ["JpegCompressibility"]


class JpegCompressibility:
    differentiable = False

    def __init__(self, quality: int = 75):
        check_int("quality", quality, 1, 100)
        self.quality = quality

    def __call__(self, x1: Tensor, **cond) -> Tensor:
        from torchvision.io import encode_jpeg

        pixels = ((x1.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        sizes = [len(encode_jpeg(img, quality=self.quality)) for img in pixels]
        return -torch.tensor(sizes, dtype=torch.float64) / 1000.0

    def __repr__(self) -> str:
        return f"JpegCompressibility(quality={self.quality})"
