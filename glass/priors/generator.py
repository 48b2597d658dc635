"""The low-resolution generator G of the low-frequency prior: a small flow-matching MLP on
downsampled MNIST (7 x 7 for factor 4), Gaussian prior, linear schedule. At inference it samples the
low-resolution image that the prior upsamples and noises (``glass.priors.LowFrequency.from_low``)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from glass.models.base import CallableModel

__all__ = ["LowResNet", "LowResFlow"]


class LowResNet(nn.Module):
    """MLP velocity field u(x, t) on flattened low-resolution images, sinusoidal time features."""

    def __init__(self, side: int = 7, hidden: int = 512, depth: int = 3, time_features: int = 32):
        super().__init__()
        self.side, self.time_features = side, time_features
        dim = side * side
        layers, width = [], dim + time_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.body = nn.Sequential(*layers, nn.Linear(width, dim))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        half = self.time_features // 2
        freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=x.device) / half)
        args = t.float()[:, None] * 1000.0 * freqs
        feats = torch.cat([args.sin(), args.cos()], dim=1)
        out = self.body(torch.cat([x.reshape(len(x), -1).float(), feats], dim=1))
        return out.reshape(x.shape)


class LowResFlow(CallableModel):
    """G behind the denoiser interface (velocity prediction, linear schedule), shape (1, side, side)."""

    def __init__(self, net: LowResNet, device: str = "cpu"):
        self.net = net.eval().requires_grad_(False).to(device)
        super().__init__(self.net, "velocity", "linear", shape=(1, net.side, net.side), device=device)

    def __repr__(self) -> str:
        return f"LowResFlow({sum(p.numel() for p in self.net.parameters()) / 1e6:.2f}M params, {self.shape})"
