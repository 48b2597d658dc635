"""Inverse problems (beyond the paper): sample p(x | y) for measurements y = A x_0 + noise of held-out
data points x_0, with reward=measurement (glass/rewards/measurement.py) and one alignment method:

- ``method=fk_steering``: FK steering with lam = 1 (target p(x) exp(r(x)) = p(x | y)), outputs drawn by
  the final weights (posterior samples), optionally with guidance in the proposals (a heuristic: the
  weights carry no proposal ratio for guided transitions, so it tends to q(x) exp(r(x)) with q the
  guided sampler's law, roughly p(x) exp((1 + lam_g) r(x)));
- ``method=best_of_n``: the most likely of ``particles`` samples (a maximum-likelihood pick, not a
  posterior sample);
- ``method=guidance``: likelihood guidance with each kernel: the denoiser tilted by the likelihood's
  gradient with the fixed step lam sigma_t^2 / alpha_t (flow guidance with the ODE, SDE guidance, GLASS
  guidance, eq. 50); unlike DPS (Chung et al. 2023) the step is not normalised by ||y - A D||.

``images`` points of the split ``reward.source=SPLIT:INDEX`` names (from index ``first``, else from
INDEX; the default ``valid:0`` observes MNIST validation images, so the outputs' FID against the test
set never meets the images they were measured from) are observed one at a time, each with its own
measurement noise (from ``reward.seed`` and its index) and its own noise streams; ``samples`` outputs per
measurement. Every kernel of a comparison sees the same measurements and streams. Metrics:
- oracle: energy distance of each y's samples to exact posterior samples (the mixture of
  ``GaussianMixture.condition``: p(x | y) itself, whatever ``lam`` the method uses), with its noise
  floor, averaged over the points; posterior-mean error relative to the posterior's spread; the exact
  posterior's E[r] beside the samples' ``log_likelihood``;
- MNIST: PSNR and SSIM to the original (torchmetrics, pixels in [0, 1]), measurement consistency
  ||A x - y|| / (noise sqrt(m)) (about 1 when x explains y to the noise level), label agreement with
  the original's class, diversity (mean pairwise RMS pixel distance of one y's samples), FID of all
  outputs against the test set (with the count; with ``reward.source=test:INDEX`` the observed images
  are among its reference images).
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import Tensor

from glass.checks import check_choice
from glass.noise import Streams, indexed_seed
from glass.samplers.base import derive_seed, row_slices
from glass.tasks.align import BestOfN, FKSteering, Guidance
from glass.tasks.base import Task, check_finite, check_gaussian_path, check_int, is_oracle, scoring

__all__ = ["Inverse", "METHODS"]

METHODS = ("fk_steering", "best_of_n", "guidance")
#: the options each method does not use: a value other than the default (Inverse's signature, which
#: conf/task/inverse.yaml repeats) is refused
UNUSED = {"fk_steering": (), "best_of_n": ("lam", "resample_every", "ess_threshold"),
          "guidance": ("particles", "lam", "resample_every", "ess_threshold")}  # fmt: skip
#: guidance strength of method=guidance: lam = 1 weighs the likelihood as the posterior does, but the
#: first-order (detached) step D + lam (sigma_t^2 / alpha_t) A^T (y - A D) / noise^2 overshoots when
#: noise is small (MNIST inpainting at noise 0.1: NaN at lam = 1); 0.1 is stable there
GUIDANCE_LAM = 0.1


class Inverse(Task):
    name = "inverse"

    def __init__(
        self,
        method: str = "fk_steering",
        images: int = 8,
        first: int | None = None,
        samples: int | None = None,
        particles: int = 4,
        transitions: int = 5,
        lam: float = 1.0,
        resample_every: int = 1,
        ess_threshold: float | None = None,
        guidance: dict | None = None,
        chunk: int | None = None,
    ):
        self.method = check_choice("task.method", method, METHODS)
        given = dict(particles=particles, lam=lam, resample_every=resample_every, ess_threshold=ess_threshold)
        defaults = inspect.signature(Inverse.__init__).parameters
        for key in UNUSED[method]:  # a value the method would drop is refused, not silently ignored
            if given[key] != defaults[key].default:
                users = ", ".join(m for m in METHODS if key not in UNUSED[m])
                raise ValueError(
                    f"task.{key}={given[key]} is not used by task.method={method} (only by {users}); "
                    "leave it out"
                )
        self.images = check_int("task.images", images, 1)
        self.first = None if first is None else check_int("task.first", first, 0)
        self.samples = None if samples is None else check_int("task.samples", samples, 2)
        given = {k: v for k, v in (guidance or {}).items() if v is not None}
        lam0 = GUIDANCE_LAM if method == "guidance" else 0.0  # guidance off in the other methods
        guidance = {"lam": lam0, "t_lo": 0.05, "t_hi": 0.95, "grad": "detached", **given}
        common = dict(transitions=transitions, groups=2, chunk=chunk, guidance=guidance)
        if method == "fk_steering":
            self.inner = FKSteering(lam=lam, particles=particles, resample_every=resample_every,
                                    ess_threshold=ess_threshold, output="draw", warn_ode=False,
                                    **common)  # fmt: skip
        elif method == "best_of_n":
            self.inner = BestOfN(particles=particles, **common)
        else:
            self.inner = Guidance(**common)

    def check(self, model, reward) -> None:
        from glass.models.base import capabilities_of
        from glass.rewards.measurement import Measurement

        check_gaussian_path(model, self.name)
        if not isinstance(reward, Measurement):
            raise ValueError(f"task=inverse needs reward=measurement, got {reward!r}")
        if not capabilities_of(model).data:
            raise ValueError(f"task=inverse observes data points; {model!r} has none (use mnist, gmm, gmm64)")
        if reward.point() is None:
            raise ValueError(
                f"task=inverse observes data points (reward.source=valid:INDEX or test:INDEX, task.images "
                f"from there); for reward.source={reward.source} use task=fk_steering, best_of_n or guidance"
            )
        self.inner.check(model, reward)
        split, first = self.start(reward)
        try:  # the last point exists (MNIST: 10,000 validation and 10,000 test images)
            model.data_point(first + self.images - 1, split)
        except ValueError as e:
            raise ValueError(
                f"task.images={self.images} {split} points from index {first} run past the split ({e})"
            ) from None

    def start(self, reward) -> tuple[str, int]:
        """The split and first index: ``reward.source=SPLIT:INDEX``'s split, from ``task.first``, else
        from INDEX."""
        split, index = reward.point()
        return split, self.first if self.first is not None else index

    def sizes(self, model) -> tuple[int, int]:
        oracle = is_oracle(model)
        return self.images, self.samples or (256 if oracle else 4)

    def budget(self, model) -> tuple[int, int, str]:
        """The measurements run one at a time: samples x particles paths are live at once, beside the
        images x samples outputs kept (one copy each, fewer than a live path's; the larger counts)."""
        images, samples = self.sizes(model)
        particles = getattr(self.inner, "particles", 1)
        k = self.inner.transitions
        if particles >= images:
            return samples * particles, k, "task.samples x task.particles; task.transitions"
        return images * samples, k, "task.images x task.samples; task.transitions"

    def describe(self, label: str, inputs: dict) -> str:
        return f"{label} ({self.method}, inverse problem: {inputs['rewards'][0].op.describe()})"

    def units(self, model, inputs: dict) -> int:
        return self.images

    def inputs(self, model, metric, generator, reward, progress) -> dict:
        images, samples = self.sizes(model)
        seed = derive_seed(generator)
        rewards, (split, first) = [], self.start(reward)
        for i in range(first, first + images):
            rewards.append(reward.observe_point(model, split, i))  # the measurement SPLIT:i gives
        exact = [r.exact_target(model, 1.0) for r in rewards] if is_oracle(model) else None
        return {"images": images, "samples": samples, "seed": seed, "rewards": rewards, "exact": exact,
                "metric": metric, "first": first}  # fmt: skip

    def run_kernel(self, model, kernel, inputs: dict, advance) -> tuple[Tensor, dict]:
        samples, rewards = inputs["samples"], inputs["rewards"]
        outs, info_rows, grad_evals = [], [], 0  # reward-gradient passes (each over one measurement's batch)
        for i, reward in enumerate(rewards):
            guided = self.inner.guided(model, reward)
            seed = indexed_seed(inputs["seed"], inputs["first"] + i)
            streams = Streams(seed, samples * self.inner.particles, model.device)
            x, _, info, _ = self.inner.run(guided, kernel, reward, samples, streams, {})
            grad_evals += getattr(guided, "grad_evals", 0)
            outs.append(x.detach())
            info_rows.append(info)
            if advance:
                advance()
        x = torch.stack(outs)  # (images, samples, *shape)
        check_finite(x, self.describe(kernel.label, inputs))  # before any metric sees a NaN
        chunks = len(row_slices(samples * self.inner.particles, self.inner.chunk))  # per path, as NFE
        row = {"nfe": info_rows[0]["nfe"], "nfe_per_sample": info_rows[0]["nfe_per_sample"],
               "grad_evals": grad_evals / len(rewards) / chunks}  # fmt: skip
        if "ess_min" in info_rows[0]:
            row["ess_min"] = sum(r["ess_min"] for r in info_rows) / len(info_rows)
        with scoring(inputs):
            row["log_likelihood"] = float(torch.cat([r(xi).cpu() for r, xi in zip(rewards, x)]).mean())
            consistency = torch.cat([r.consistency(xi).cpu() for r, xi in zip(rewards, x)])
            row["consistency"] = float(consistency.mean())
            if is_oracle(model):
                row |= self._oracle(inputs["metric"], x, inputs["exact"])
                row["exact_log_likelihood"] = self._exact_log_likelihood(rewards, inputs["exact"])
            else:
                row |= self._images(model, inputs["metric"], x, rewards)
        return x.reshape(-1, *x.shape[2:]), {**row, "images": len(rewards), "samples_per_image": samples}

    @staticmethod
    def _oracle(metric, x: Tensor, exact: list) -> dict:
        per = [metric(xi, lambda g, e=e, n=len(xi): e.sample(n, g)) for xi, e in zip(x, exact)]
        out = {k: sum(m[k] for m in per) / len(per) for k in per[0]}
        # posterior-mean error in units of the posterior's spread (sqrt of the mean variance)
        err = [float((xi.double().mean(0) - e.mean()).norm() / e.covariance().diagonal().mean().sqrt())
               for xi, e in zip(x, exact)]  # fmt: skip
        out["mean_error"] = sum(err) / len(err)
        return out

    @staticmethod
    def _exact_log_likelihood(rewards: list, exact: list) -> float:
        """E[r] under each exact posterior, averaged over the measurements (what the samples'
        ``log_likelihood`` would be if they were exact posterior samples)."""
        return sum(r.exact_mean(e) for r, e in zip(rewards, exact)) / len(rewards)

    @staticmethod
    def _images(model, metric, x: Tensor, rewards: list) -> dict:
        from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

        from glass.metrics.fid import FID
        from glass.models.mnist import to_pixels

        n_img, n = x.shape[:2]
        pix = to_pixels(x.float().cpu())  # (images, samples, C, H, W)
        orig = torch.cat([to_pixels(r.original.float()) for r in rewards])  # (images, C, H, W)
        target = orig[:, None].expand_as(pix).reshape(-1, *pix.shape[2:])
        flat = pix.reshape(-1, *pix.shape[2:])
        psnr = peak_signal_noise_ratio(flat, target, data_range=1.0, reduction="none", dim=(1, 2, 3))
        ssim = structural_similarity_index_measure(flat, target, data_range=1.0, reduction="none")
        out = {"psnr": float(psnr.mean()), "ssim": float(ssim.mean())}
        labels = torch.tensor([r.label for r in rewards]).repeat_interleave(n)
        same = model.classify(x.reshape(-1, *x.shape[2:])) == labels
        out["label_agreement"] = float(same.double().mean())
        d = pix.reshape(n_img, n, -1).double()
        pair = torch.cdist(d, d) / math.sqrt(d.shape[-1])  # RMS pixel distance
        out["diversity"] = float(pair.sum((1, 2)).mean() / (n * (n - 1)))
        if isinstance(metric, FID):
            out |= metric(x.reshape(-1, *x.shape[2:]).float())
        return out

    def finish(self, model, inputs: dict, outputs: dict, generator):
        rewards = inputs["rewards"]
        extra = {"originals": torch.cat([r.original for r in rewards]).float(),
                 "observations": torch.cat([r.shown() for r in rewards]).float(),
                 "labels": [r.label for r in rewards], "samples_per_image": inputs["samples"],
                 "problem": rewards[0].op.describe()}  # fmt: skip
        if inputs["exact"] is None:
            return extra["originals"], extra
        # the oracle's figure: exact posterior samples of each measurement, markers at the originals
        n = inputs["samples"]
        reference = torch.cat([e.sample(n, generator) for e in inputs["exact"]])
        extra |= {"x_t": extra["originals"], "point": torch.arange(len(rewards)).repeat_interleave(n)}
        return reference, extra
