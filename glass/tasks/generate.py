"""Sampling from noise with K transitions of the sampler (paper Table 4 setting: K x M NFE).

Every kernel of a comparison starts from the same noise with the same random stream. Scored on the
oracle against exact samples, on images by FID against the test set.
"""

from __future__ import annotations

import torch

from glass.noise import Streams
from glass.samplers import generate
from glass.samplers.base import derive_seed
from glass.samplers.compare import kernels_of
from glass.tasks.base import Result, check_finite, check_int, identical_streams, is_oracle

__all__ = ["Generate"]


class Generate:
    """``n`` defaults to 2000 on the oracle and 1000 on images (null)."""

    name = "generate"
    needs_reward = False

    def __init__(self, transitions: int = 5, n: int | None = None):
        self.transitions = check_int("task.transitions", transitions, 1)
        self.n = None if n is None else check_int("task.n", n, 2)

    def __call__(self, model, sampler, metric, generator: torch.Generator, progress=None, **_) -> Result:
        oracle = is_oracle(model)
        n = self.n or (2000 if oracle else 1000)
        seed = derive_seed(generator)  # per-sample streams: sample i is the same for every task.n
        kernels = kernels_of(sampler)
        advance = progress("generate", self.transitions * len(kernels)) if progress else None
        rows, samples = [], {}
        path = (
            metric.measure(model, identical_streams(generator, model.device)())
            if getattr(metric, "path_metric", False)
            else {}
        )
        for label, kernel in kernels:
            model.reset_nfe()
            streams = Streams(seed, n, model.device)
            s = generate(model, kernel, self.transitions, n, generator=streams, progress=advance)
            nfe = model.reset_nfe()
            check_finite(s, label)
            scores = metric(s, lambda g: model.sample(n, g)) if oracle else metric(s)
            row = {"sampler": label, **scores, **path, "nfe": nfe}
            # a generated prior's calls count in main-network units (Gaussian prior: nfe itself)
            row["nfe_effective"] = round(
                nfe + (model.prior_cost() if hasattr(model, "prior_cost") else 0.0), 3
            )
            rows.append(row)
            samples[label] = s.cpu()
        first = samples[kernels[0][0]]
        reference = model.sample(n, generator) if oracle else None
        return Result(rows, first if len(kernels) == 1 else samples, reference)
