"""Posterior sampling (paper §6.1): noise data to time t, then sample p_{1|t}(z | x_t).

``points`` data points are noised to time t and ``n`` posterior samples are drawn at each, all in
one batch (so NFE is that of one transition). On the oracle the metric is *conditional*: at each
x_t the samples are compared with exact posterior samples at that x_t, and the distances (and
noise floors) are averaged over the points. A sampler that ignores x_t, or a deterministic one
(the ODE returns one point per x_t), scores badly, as it should. For GLASS the transition to t' = 1
does not depend on rho.
"""

from __future__ import annotations

import torch

from glass.schedules import bcast
from glass.tasks.base import Result, check_int, require_oracle

__all__ = ["Posterior"]


class Posterior:
    name = "posterior"

    def __init__(self, t: float = 0.2, points: int = 8, n: int = 500):
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t < 1:
            raise ValueError(f"task.t must be a number in [0, 1), got {t!r}")
        self.t = float(t)
        self.points = check_int("task.points", points, 1)
        self.n = check_int("task.n", n, 2)

    def __call__(self, model, sampler, metric, generator: torch.Generator, progress=None) -> Result:
        require_oracle(model, "task=posterior with metric=oracle")
        sch, t, n = model.schedule, self.t, self.n
        z = model.sample(self.points, generator)
        x_t = bcast(sch.alpha(t), z) * z + bcast(sch.sigma(t), z) * torch.randn(
            z.shape, generator=generator, dtype=z.dtype
        )
        x_rep = x_t.repeat_interleave(n, 0)
        model.reset_nfe()
        samples = sampler.transition(model, x_rep, t, 1.0, generator)
        nfe = model.reset_nfe()
        per_point = [
            metric(
                samples[i * n : (i + 1) * n],
                lambda g, i=i: model.sample_posterior(x_rep[i * n : (i + 1) * n], t, g),
            )
            for i in range(self.points)
        ]
        metrics = {k: sum(m[k] for m in per_point) / len(per_point) for k in per_point[0]}
        return Result(
            {**metrics, "nfe": nfe},
            samples,
            model.sample_posterior(x_rep, t, generator),
            {"x_t": x_t, "point": torch.arange(self.points).repeat_interleave(n)},
        )
