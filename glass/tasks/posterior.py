"""Posterior sampling (paper §6.1): noise data to time t, then sample p_{1|t}(z | x_t).

``points`` data points are noised to time t and ``n`` posterior samples are drawn at each by one
transition (NFE per sample: one transition's); ``chunk`` splits the points x n rows into network
batches, each drawing the noise its rows would get in one batch. Every kernel of a comparison
(``sampler=compare``) sees the same x_t and the same per-sample noise streams
(``glass.noise.Streams``: posterior sample i draws the same noise on every device and in every batch).

- Oracle (model=gmm, gmm64): the metric is *conditional*: at each x_t the samples are compared with
  exact posterior samples at that x_t, and the distances (and noise floors) are averaged over the
  points. A sampler that ignores x_t, or a deterministic one (the ODE returns one point per x_t),
  scores badly, as it should.
- Images (model=mnist): ``points`` validation images (held out from the flow's training and from the
  FID reference); FID of all posterior samples against the test set
  (a marginal measure, as in the paper), and ``label_agreement``, the fraction of samples the
  shipped classifier puts in the class of the image they came from (a conditional measure: an
  x_t-blind sampler scores ~0.1; the exact posterior's agreement grows with t towards the
  classifier's accuracy).

For GLASS the transition to t' = 1 does not depend on rho. The ODE is deterministic (one sample per
x_t); it is reported as such.
"""

from __future__ import annotations

import torch
from torch import Tensor

from glass.models.base import capabilities_of
from glass.noise import Streams
from glass.samplers.base import derive_seed, row_slices, transition_rows
from glass.tasks.base import (
    Task,
    check_finite,
    check_gaussian_path,
    check_int,
    check_time,
    is_oracle,
    noise_to,
    scoring,
)

__all__ = ["Posterior"]


class Posterior(Task):
    """``points`` / ``n`` default to 8 x 500 on the oracle and 256 x 1 on images (null)."""

    name = "posterior"
    needs_reward = False

    def check(self, model, reward) -> None:
        check_gaussian_path(model, "posterior")
        if not capabilities_of(model).data:
            raise ValueError(
                f"task=posterior noises data samples, and {model!r} has no data set "
                "(use model=mnist, gmm or gmm64)"
            )

    def __init__(
        self, t: float = 0.2, points: int | None = None, n: int | None = None, chunk: int | None = None
    ):
        self.t = check_time("t", t)
        self.points = None if points is None else check_int("points", points, 1)
        self.n = None if n is None else check_int("n", n, 1)
        self.chunk = None if chunk is None else check_int("chunk", chunk, 1)

    def sizes(self, model) -> tuple[int, int]:
        oracle = is_oracle(model)
        points = self.points or (8 if oracle else 256)
        n = self.n or (500 if oracle else 1)
        if oracle and n < 2:
            raise ValueError(f"task.n must be >= 2 on the oracle (distances need samples), got {n}")
        return points, n

    def budget(self, model) -> tuple[int, int, str]:
        points, n = self.sizes(model)
        return points * n, 1, "task.points x task.n; one transition"

    def inputs(self, model, metric, generator, reward, progress) -> dict:
        points, n = self.sizes(model)
        # held out from the FID reference (the test set): a sample that copied its source image
        # would otherwise be scored against itself
        z, labels = model.data_samples(points, generator, split="valid")
        x_t = noise_to(model, z, self.t, generator)
        seed = derive_seed(generator)  # per-sample streams: the same noise on every device
        return {"points": points, "n": n, "z": z, "labels": labels, "x_t": x_t, "seed": seed,
                "x_rep": x_t.repeat_interleave(n, 0), "metric": metric}  # fmt: skip

    def describe(self, label: str, inputs: dict) -> str:
        return f"{label} (posterior samples at t = {self.t:g})"

    def run_kernel(self, model, kernel, inputs: dict, advance) -> tuple[Tensor, dict]:
        points, n, metric, t = inputs["points"], inputs["n"], inputs["metric"], self.t
        streams = Streams(inputs["seed"], points * n, model.device)  # every kernel: the same noise
        x_rep = inputs["x_rep"]
        slices = row_slices(len(x_rep), self.chunk)
        s = transition_rows(model, kernel, x_rep, t, 1.0, streams, None, {}, slices)
        calls = model.reset_nfe()  # one count per network batch: per sample, a chunked run's share
        nfe = calls // len(slices)
        check_finite(s, self.describe(kernel.label, inputs))
        with scoring(inputs):
            if is_oracle(model):
                m = self._conditional(model, metric, s, inputs["x_rep"], t, points, n)
            else:
                m = metric(s)
                same = model.classify(s) == inputs["labels"].repeat_interleave(n)
                m["label_agreement"] = float(same.float().mean())
        row = {**m, "nfe": nfe, "n_points": points, "n_per_point": n}
        return s, {**row, "network_calls": calls} if calls != nfe else row

    def finish(self, model, inputs: dict, outputs: dict, generator):
        points, n, x_t, z = inputs["points"], inputs["n"], inputs["x_t"], inputs["z"]
        extra = {"x_t": x_t.cpu(), "z": z.cpu(), "point": torch.arange(points).repeat_interleave(n)}
        oracle = is_oracle(model)
        reference = model.sample_posterior(inputs["x_rep"], self.t, generator) if oracle else z.cpu()
        return reference, extra

    @staticmethod
    def _conditional(model, metric, s, x_rep, t, points, n) -> dict:
        per_point = [
            metric(
                s[i * n : (i + 1) * n],
                lambda g, i=i: model.sample_posterior(x_rep[i * n : (i + 1) * n], t, g),
            )
            for i in range(points)
        ]
        return {k: sum(m[k] for m in per_point) / len(per_point) for k in per_point[0]}
