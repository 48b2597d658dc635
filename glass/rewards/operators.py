"""Linear measurement operators A for inverse problems: y = A x + noise.

Each operator maps a batch of data points x of shape (B, *shape) to flat measurements (B, m), is
linear (so :meth:`LinearOperator.matrix` is exact, built by applying it to the identity basis) and
differentiable. Images are (C, H, W); a vector of d numbers is treated as a one-column image
(1, d, 1), so "lower half" means its last d / 2 coordinates and pooling / blurring act along it.

- ``inpaint``: observe the pixels outside ``region`` (``lower``, ``upper``, ``left``, ``right``:
  that half is missing; ``center``: the middle half-size square is missing);
- ``downsample``: average-pool by ``factor`` (super-resolution);
- ``blur``: Gaussian blur of standard deviation ``width`` pixels, kernel radius ceil(3 width), zero
  padding (deblurring);
- ``identity``: every pixel (denoising).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from glass.checks import check_choice, check_int, check_positive

__all__ = ["OPERATORS", "REGIONS", "LinearOperator", "make_operator"]

OPERATORS = ("inpaint", "downsample", "blur", "identity")
REGIONS = ("lower", "upper", "left", "right", "center")


def _as_image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) == 1:
        return (1, shape[0], 1)
    if len(shape) == 3:
        return tuple(shape)  # type: ignore[return-value]
    raise ValueError(f"measurement operators take vectors (d,) or images (C, H, W), got shape {shape}")


class LinearOperator:
    """A linear map from data points of ``shape`` to flat measurements (see the module docstring)."""

    def __init__(self, name: str, shape, region: str = "lower", factor: int = 4, width: float = 1.0):
        self.name = check_choice("reward.operator", name, OPERATORS)
        self.shape = tuple(int(s) for s in shape)
        self.c, self.h, self.w = _as_image_shape(self.shape)
        self.region, self.factor, self.width = region, factor, width
        if name == "inpaint":
            check_choice("reward.region", region, REGIONS)
            self.observed = ~self._missing()  # (C, H, W) bool
            if not bool(self.observed.any()) or bool(self.observed.all()):
                raise ValueError(f"reward.region={region} leaves nothing to inpaint in data of shape {shape}")
            self.index = self.observed.reshape(-1).nonzero()[:, 0]  # flat indices: no mask sync on GPUs
        elif name == "downsample":
            check_int("reward.factor", factor, 1)
            fw = 1 if self.w == 1 else factor
            if self.h % factor or self.w % fw:
                raise ValueError(
                    f"reward.factor={factor} must divide the data's size {self.h} x {self.w} "
                    f"(shape {self.shape})"
                )
            self.kernel = (factor, fw)
        elif name == "blur":
            check_positive("reward.width", width, " (pixels)")
            radius = math.ceil(3 * width)
            x = torch.arange(-radius, radius + 1, dtype=torch.float64)
            g = torch.exp(-0.5 * (x / width) ** 2)
            g = g / g.sum()
            k = g[:, None] * g[None, :] if self.w > 1 else g[:, None]
            self.blur_kernel = k  # (kh, kw), sums to 1
        self._on: dict = {}  # the index / conv weight per (device, dtype): copied once, not every call
        self._matrix: Tensor | None = None

    def _missing(self) -> Tensor:
        c, h, w = self.c, self.h, self.w
        m = torch.zeros(c, h, w, dtype=torch.bool)
        if self.region == "lower":
            m[:, h - h // 2 :, :] = True
        elif self.region == "upper":
            m[:, : h // 2, :] = True
        elif self.region == "left":
            m[:, :, : w // 2] = True
        elif self.region == "right":
            m[:, :, w - w // 2 :] = True
        else:  # center: the middle square of half the size
            m[:, h // 4 : h // 4 + h // 2, w // 4 : w // 4 + max(1, w // 2)] = True
        return m

    @property
    def size(self) -> int:
        """m, the number of measured values."""
        return int(self(torch.zeros(1, *self.shape, dtype=torch.float64)).shape[1])

    def __call__(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"the measurement operator takes data of shape {self.shape}, got {tuple(x.shape[1:])}"
            )
        img = x.reshape(len(x), self.c, self.h, self.w)
        if self.name == "identity":
            return img.reshape(len(x), -1)
        if self.name == "inpaint":
            return img.reshape(len(x), -1).index_select(1, self._constant("index", x))
        if self.name == "downsample":
            return F.avg_pool2d(img, self.kernel).reshape(len(x), -1)
        k = self.blur_kernel
        pad = (k.shape[0] // 2, k.shape[1] // 2)
        return F.conv2d(img, self._constant("weight", x), padding=pad, groups=self.c).reshape(len(x), -1)

    def _constant(self, name: str, like: Tensor) -> Tensor:
        """The inpainting index or the blur weight on ``like``'s device (and dtype), made once."""
        key = (name, like.device, like.dtype)
        if key not in self._on:
            if name == "index":
                self._on[key] = self.index.to(like.device)
            else:
                k = self.blur_kernel.to(like)
                self._on[key] = k.expand(self.c, 1, *k.shape).contiguous()
        return self._on[key]

    def matrix(self) -> Tensor:
        """A as an (m, d) float64 matrix (the operator applied to the identity basis; made once)."""
        if self._matrix is None:
            d = math.prod(self.shape)
            basis = torch.eye(d, dtype=torch.float64).reshape(d, *self.shape)
            self._matrix = self(basis).T.contiguous()
        return self._matrix

    def show(self, y: Tensor) -> Tensor:
        """Measurements (B, m) as data points (B, *shape) to look at: inpainting puts the observed
        pixels in place and leaves the missing ones at 0 (mid-grey in [-1, 1]: black would read as
        observed background on MNIST), downsampling repeats each pooled value over its block; blur and
        identity are images already."""
        b = len(y)
        if self.name == "inpaint":
            out = torch.zeros((b, self.c * self.h * self.w), dtype=y.dtype, device=y.device)
            out[:, self._constant("index", y)] = y
        elif self.name == "downsample":
            fh, fw = self.kernel
            small = y.reshape(b, self.c, self.h // fh, self.w // fw)
            out = small.repeat_interleave(fh, 2).repeat_interleave(fw, 3)
        else:
            out = y
        return out.reshape(b, *self.shape)

    def describe(self) -> str:
        if self.name == "inpaint":
            return f"inpainting ({self.region} {'square' if self.region == 'center' else 'half'} missing)"
        if self.name == "downsample":
            return f"{self.factor}x super-resolution"
        if self.name == "blur":
            return f"deblurring (Gaussian, width {self.width:g})"
        return "denoising"

    def __repr__(self) -> str:
        opts = {"inpaint": f"region={self.region}", "downsample": f"factor={self.factor}",
                "blur": f"width={self.width:g}", "identity": ""}[self.name]  # fmt: skip
        return f"{self.name}({opts})" if opts else self.name


def make_operator(name: str, shape, region: str = "lower", factor: int = 4, width: float = 1.0):
    """The operator ``name`` for data of ``shape`` (see the module docstring)."""
    return LinearOperator(name, shape, region, factor, width)
