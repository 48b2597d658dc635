"""Reward alignment tasks: ``fk_steering``, ``best_of_n`` and ``guidance`` (paper §5-6.3, eq. 6).

Each is a thin composition of model + transition kernel(s) + reward (+ guidance): ``groups``
independent outputs are produced, each from ``particles`` sample paths of K transitions x M steps, so
every method at the same K, M and particles spends the same NFE (reported per output sample as
``nfe_per_sample``; reward-gradient passes separately as ``grad_evals``). Guidance (``guidance.lam``
> 0) tilts the model's denoiser (``glass.alignment.guidance.Guided``) and composes with FK steering.

Quality beside the reward, to expose reward hacking:
- oracle with the linear reward: energy distance of the outputs to exact samples of the tilted
  target p(z) exp(lam w.z) (with its noise floor) and the exact E_{p^r}[r];
- images: FID against the images of the reward's target class among the FID's reference images
  (``metric.reference``, first ``metric.n_reference`` of the split; default the test split), the
  fraction classified as that class, and diversity (mean pairwise distance of the outputs' features
  in the FID's feature space).
For FK steering, ``unique_fraction`` is the fraction of distinct final particles per group: an ODE
proposal cannot diversify resampled copies, so it collapses towards 1 / particles.
"""

from __future__ import annotations

import torch
from torch import Tensor

from glass.alignment import best_of_n, fk_steering
from glass.alignment.fk import check_fk_options
from glass.alignment.guidance import Guided, check_guidance
from glass.metrics.fid import FID, extract_features
from glass.metrics.none import NoMetric
from glass.metrics.rewards import mean_se
from glass.models.base import capabilities_of
from glass.noise import Streams, indexed_seed
from glass.rewards.base import score
from glass.samplers.base import derive_seed, row_slices
from glass.tasks.base import Task, check_gaussian_path, check_int, is_oracle, scoring
from glass.tasks.prompts import PromptOptions

__all__ = ["FKSteering", "BestOfN", "Guidance"]


class _Align(Task):
    name = "align"

    def __init__(
        self,
        particles: int = 8,
        transitions: int = 5,
        groups: int | None = None,
        chunk: int | None = None,
        guidance: dict | None = None,
        prompts: str | None = None,
        per_prompt: int = 1,
        prompt_range: str | None = None,
        save_latents: bool = False,
    ):
        self.particles = check_int("particles", particles, 1)
        self.transitions = check_int("transitions", transitions, 1)
        self.groups = None if groups is None else check_int("groups", groups, 2)
        self.chunk = None if chunk is None else check_int("chunk", chunk, 1)
        self.prompts = PromptOptions(prompts, per_prompt, prompt_range, save_latents)
        if self.prompts and groups is not None:
            raise ValueError(
                "groups and prompts both set the number of outputs: give one (per_prompt with prompts)"
            )
        self.guidance = dict(guidance or {})
        unknown = set(self.guidance) - {"lam", "t_lo", "t_hi", "grad"}
        if unknown:
            raise ValueError(f"task.guidance: unknown keys {sorted(unknown)}; allowed: lam, t_lo, t_hi, grad")
        check_guidance(**{"lam": 0.0, **self.guidance}, prefix="task.guidance.")

    def target_lam(self) -> float | None:
        """lam of the tilted target p(z) exp(lam r(z)) the method aims at (None: no target)."""
        return self.guidance.get("lam") or None

    def check(self, model, reward) -> None:
        """Called when the run is prepared: guidance needs a differentiable reward."""
        check_gaussian_path(model, self.name)
        self.prompts.check(model)
        if self.guidance.get("lam") and not getattr(reward, "differentiable", False):
            raise ValueError(
                f"guidance needs a differentiable reward, {reward!r} is not (set task.guidance.lam=0)"
            )

    def texts(self) -> list[str]:
        return self.prompts.texts()

    def budget(self, model) -> tuple[int, int, str] | None:
        if self.prompts:  # one prompt at a time
            return None
        what = "task.groups x task.particles; task.transitions"
        return self.n_groups(model) * self.particles, self.transitions, what

    def n_groups(self, model) -> int:
        if self.prompts:
            return self.prompts.outputs()
        return self.groups or (256 if is_oracle(model) else 32)

    def guided(self, model, reward):
        if not self.guidance.get("lam"):
            return model
        return Guided(model, reward, **self.guidance)

    def run(self, model, kernel, reward, groups, generator, cond) -> tuple[Tensor, Tensor, dict, dict]:
        """One method's (outputs, rewards, row entries, trace) with one kernel; ``cond`` per group."""
        raise NotImplementedError

    def inputs(self, model, metric, generator, reward, progress) -> dict:
        groups = self.n_groups(model)
        seed = derive_seed(generator)  # per-sample streams: the same numbers for every task.chunk
        quality = AlignedQuality(model, reward, metric, groups, generator, self.target_lam(), self.prompts)
        return {"groups": groups, "seed": seed, "guided": self.guided(model, reward), "reward": reward,
                "quality": quality, "reference": quality.reference, "traces": {}, "rewards": {}}  # fmt: skip

    def run_kernel(self, model, kernel, inputs: dict, advance) -> tuple[Tensor, dict]:
        m, groups = inputs["guided"], inputs["groups"]
        if getattr(m, "grad_evals", None) is not None:
            m.grad_evals = 0
        streams = Streams(inputs["seed"], groups * self.particles, model.device)
        x, r, info, trace = self.run(m, kernel, inputs["reward"], groups, streams, self.prompts.cond())
        inputs["rewards"][kernel.label] = r
        mean, se = mean_se(r)
        # per sample path, as NFE: a reward-gradient pass runs once per chunk of rows
        chunks = len(row_slices(groups * self.particles, self.chunk))
        row = {"reward": mean, "reward_se": se, **info, "grad_evals": getattr(m, "grad_evals", 0) / chunks}
        inputs["traces"][kernel.label] = trace
        with scoring(inputs):
            quality = inputs["quality"](x)
        return x, {**row, **quality, "groups": groups, "particles": self.particles}

    def finish(self, model, inputs: dict, outputs: dict, generator):
        extra = {"trace": inputs["traces"], "output_rewards": inputs["rewards"]}
        return inputs["reference"], extra


class FKSteering(_Align):
    """Feynman-Kac steering (``glass.alignment.fk_steering``). The output of each group is the
    highest-reward final particle (``output=best``, the images' default, as best-of-N) or one particle
    drawn by the final weights (``draw``, the oracle's default: a sample of the tilted target);
    ``reward_weighted`` is the self-normalized estimate of E_{p^r}[r]. With ``guidance.lam`` the proposals
    are guided but the weights carry no proposal ratio (none in closed form for GLASS), so the particles
    tend to p exp((lam + guidance.lam) r); the oracle still scores them against FK's p exp(lam r)."""

    name = "fk_steering"

    def __init__(self, lam: float = 1.0, potential: str = "difference", resampler: str = "systematic",
                 resample_every: int = 1, ess_threshold: float | None = None, intermediate: str = "denoiser",
                 output: str | None = None, warn_ode: bool = True, **kw):  # fmt: skip
        super().__init__(**kw)
        if output not in (None, "best", "draw"):
            raise ValueError(f"output must be best, draw or null, got {output!r}")
        self.options = dict(lam=lam, potential=potential, resampler=resampler, resample_every=resample_every,
                            ess_threshold=ess_threshold, intermediate=intermediate)  # fmt: skip
        self.output, self.warn_ode = output, warn_ode
        check_fk_options(
            self.particles, 1, lam, potential, resampler, resample_every, ess_threshold, intermediate
        )

    def target_lam(self) -> float:
        return float(self.options["lam"])

    def run(self, model, kernel, reward, groups, generator, cond):
        if self.warn_ode and type(kernel).__name__ == "ODE":
            from glass.loggers import warn

            warn("FK steering with an ODE proposal: resampled copies stay identical (see unique_fraction)")
        res = fk_steering(model, kernel, reward, self.transitions, self.particles,
                          groups, chunk=self.chunk, generator=generator, **self.options, **cond)  # fmt: skip
        if (self.output or ("draw" if is_oracle(model) else "best")) == "best":
            x, r = res.best()
            kept = res.best_index()
        else:
            # a seed of its own: Streams give one fixed derive_seed, which the resampling drew from
            kept = res.draw_index(torch.Generator().manual_seed(indexed_seed(derive_seed(generator), 1)))
            x = res.x[torch.arange(groups), kept.to(res.x.device)]
            r = score(reward, model, x, **cond).cpu()
        flat = res.x.reshape(groups, self.particles, -1)
        unique = (
            torch.tensor([len(torch.unique(g, dim=0)) for g in flat], dtype=torch.float64) / self.particles
        )
        ess = torch.stack(res.ess)  # (K, groups)
        info = {
            "nfe": res.nfe,
            "nfe_per_sample": res.nfe * self.particles,
            "reward_weighted": float(res.weighted_reward().mean()),
            "ess_min": float(ess.min(0).values.mean() / self.particles),
            "resample_steps": float(torch.stack(res.resampled).double().sum(0).mean()),
            "unique_fraction": float(unique.mean()),
        }
        trace = {
            "particle": kept.tolist(),  # the kept particle of each group
            "ess": ess.tolist(),
            "resampled": torch.stack(res.resampled).tolist(),
            "ancestors": torch.stack(res.ancestors)[:, :4].tolist(),  # first 4 groups
            "log_weights": torch.stack(res.log_weight_history)[:, :4].tolist(),
        }
        return x, r, info, trace


class BestOfN(_Align):
    """Best-of-N: ``particles`` independent samples per group, keep the highest reward."""

    name = "best_of_n"

    def target_lam(self) -> None:
        return None

    def run(self, model, kernel, reward, groups, generator, cond):
        x, r, nfe, kept = best_of_n(model, kernel, reward, self.transitions, self.particles, groups,
                                    chunk=self.chunk, generator=generator, with_index=True,
                                    **cond)  # fmt: skip
        return x, r, {"nfe": nfe, "nfe_per_sample": nfe * self.particles}, {"particle": kept.tolist()}


class Guidance(BestOfN):
    """Guided sampling: K transitions of the kernel on the guided model (flow guidance with the ODE,
    SDE guidance, GLASS guidance, eq. 50); one sample per group, i.e. best-of-1 on the guided model."""

    name = "guidance"

    def __init__(self, particles: int = 1, guidance: dict | None = None, **kw):
        guidance = {"lam": 0.4, "t_lo": 0.2, "t_hi": 0.7, "grad": "detached", **(guidance or {})}
        super().__init__(particles=particles, guidance=guidance, **kw)
        if self.particles != 1:
            raise ValueError("particles must be 1 for task=guidance (use fk_steering with task.guidance.lam)")

    def target_lam(self) -> float | None:
        return self.guidance["lam"] or None


class AlignedQuality:
    """Quality of aligned outputs (see the module docstring)."""

    def __init__(self, model, reward, metric, groups, generator, lam: float | None, prompts=None):
        self.model, self.metric, self.oracle, self.prompts = model, metric, is_oracle(model), prompts
        self.tilted, self.reference = None, None
        self.images = capabilities_of(model).classifier  # MNIST: FID, target accuracy, diversity
        if self.oracle:  # the reward's exact target p(z) exp(lam r(z)) (linear reward, measurement)
            self.reward = reward
            if lam is not None:  # lam = 0 (FK steering untilted): the target is p itself
                self.tilted = reward.exact_target(model, lam)
            self.reference = (model if self.tilted is None else self.tilted).sample(groups, generator)
        elif self.images:
            from glass.data import load_mnist
            from glass.models.mnist import to_data

            self.target = getattr(reward, "target", None)
            split, root, count = "test", getattr(model, "data_root", None), None
            if isinstance(metric, FID):  # its reference split, data and count (they were ignored)
                split, root, count = metric.reference, metric.data_root or root, metric.n_reference
            images, labels = load_mnist(split, root)
            images, labels = images[:count], labels[:count]
            ref = images if self.target is None else images[labels == self.target]
            if len(ref) < 2:  # FID needs a covariance
                raise ValueError(
                    f"metric.n_reference={count} leaves {len(ref)} images of class {self.target} in the "
                    f"{split!r} split to compare with; FID needs at least 2"
                )
            self.reference = to_data(ref).double()

    def __call__(self, x: Tensor) -> dict:
        if self.oracle:
            if self.tilted is None:  # best-of-N has no target distribution: reward only
                return {}
            out = self.metric(x, lambda g: self.tilted.sample(len(x), g))
            return {**out, "exact_reward": self.reward.exact_mean(self.tilted)}
        if getattr(self.metric, "text_to_image", False):  # held-out rewards, diversity (callables: no)
            return self.metric(self.model, x, *self.prompts.per_output(self.model, len(x)))
        if not self.images:  # pretrained models: the reward is the measurement
            return {}
        out = self.metric(x.float(), self.reference.float())
        if not isinstance(self.metric, NoMetric):  # metric=none: no FID, nor its feature space
            feats = extract_features(self.metric.extractor(), x.float()).double()  # FID's feature space
            out["diversity"] = float(torch.pdist(feats).mean()) if len(feats) > 1 else 0.0
        if self.target is not None:
            out["target_accuracy"] = float((self.model.classify(x) == self.target).double().mean())
        return out
