"""Posterior sampling (paper §6.1): noise data to time t, then sample p_{1|t}(z | x_t).

The sampler's transition from t to t' = 1 is the posterior sampler (for GLASS it does not depend
on rho). The ODE is deterministic: it returns one point per x_t, so it is reported but cannot
represent a posterior. On the oracle, samples are compared *jointly with their conditioning point*:
pairs (x_t, z) against (x_t, z_exact), so a sampler that ignores x_t cannot score well.
"""

from __future__ import annotations

import torch

from glass.schedules import bcast
from glass.tasks.base import Result, check_int, require_oracle

__all__ = ["Posterior"]


class Posterior:
    name = "posterior"

    def __init__(self, t: float = 0.2, n: int = 2000):
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t < 1:
            raise ValueError(f"task.t must be a number in [0, 1), got {t!r}")
        self.t, self.n = float(t), check_int("task.n", n, 2)

    def __call__(self, model, sampler, metric, generator: torch.Generator, progress=None) -> Result:
        require_oracle(model, "task=posterior with metric=oracle")
        sch, t = model.schedule, self.t
        z = model.sample(self.n, generator)
        x_t = bcast(sch.alpha(t), z) * z + bcast(sch.sigma(t), z) * torch.randn(
            z.shape, generator=generator, dtype=z.dtype
        )
        model.reset_nfe()
        samples = sampler.transition(model, x_t, t, 1.0, generator)
        nfe = model.reset_nfe()
        metrics = metric(
            torch.cat([x_t, samples], 1),
            lambda g: torch.cat([x_t, model.sample_posterior(x_t, t, g)], 1),
        )
        # one conditioning point, many samples: what the figure shows
        x_fix = x_t[:1].expand(min(self.n, 1000), -1).clone()
        fixed = sampler.transition(model, x_fix, t, 1.0, generator)
        model.reset_nfe()
        return Result(
            {**metrics, "nfe": nfe},
            samples,
            model.sample_posterior(x_t, t, generator),
            {
                "x_t": x_t,
                "x_fixed": x_t[:1],
                "fixed_samples": fixed,
                "fixed_exact": model.sample_posterior(x_fix, t, generator),
            },
        )
