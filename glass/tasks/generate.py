"""Sampling from noise with K transitions of the sampler (paper Table 4 setting: K x M NFE)."""

from __future__ import annotations

import torch

from glass.samplers import generate
from glass.tasks.base import Result, check_int, require_oracle

__all__ = ["Generate"]


class Generate:
    name = "generate"

    def __init__(self, transitions: int = 5, n: int = 2000):
        self.transitions = check_int("task.transitions", transitions, 1)
        self.n = check_int("task.n", n, 2)

    def __call__(self, model, sampler, metric, generator: torch.Generator, progress=None) -> Result:
        require_oracle(model, "task=generate with metric=oracle")
        model.reset_nfe()
        advance = progress("generate", self.transitions) if progress else None
        samples = generate(model, sampler, self.transitions, self.n, generator=generator, progress=advance)
        nfe = model.reset_nfe()
        metrics = metric(samples, lambda g: model.sample(self.n, g))
        return Result({**metrics, "nfe": nfe}, samples, model.sample(self.n, generator))
