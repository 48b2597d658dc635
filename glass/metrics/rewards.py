"""Held-out rewards beside the steered one (``metric=rewards``), for text-to-image runs.

Every output is scored by each reward of ``rewards`` (ImageReward, PickScore, HPSv2, CLIP score by
default: the paper's Table 1 columns; when the steered reward is one of them, as ImageReward is by
default, that column is not held out) against its own prompt; each is reported per method as the mean
with its standard error and sample count. ``diversity`` (a CLIP-family reward's image features) adds
the mean pairwise distance of the unit-norm image features of one prompt's outputs, averaged over
prompts. The reward models are built from their own configs (``conf/reward/<name>.yaml``, composed
under ``configs``), loaded once when the run is prepared (missing weights fail there, in one line).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from glass.checks import check_int

__all__ = ["HeldOutRewards", "summary", "diversity", "mean_se"]


def mean_se(values) -> tuple[float, float]:
    """Mean and standard error (float64) of a tensor or a list of numbers; the error of one value is
    NaN (unknown: a 0 would read as exact; the CLI then shows the value alone)."""
    v = torch.as_tensor(values, dtype=torch.float64)
    return float(v.mean()), (float(v.std() / math.sqrt(len(v))) if len(v) > 1 else math.nan)


class HeldOutRewards:
    """See the module docstring."""

    text_to_image = True  # tasks hand it the model, the outputs and their prompts

    def __init__(self, rewards=("imagereward", "pickscore", "hpsv2", "clip"), configs=None,
                 diversity: str | None = "clip", batch: int = 8):  # fmt: skip
        self.names = [rewards] if isinstance(rewards, str) else list(rewards)
        self.configs = dict(configs or {})
        if not self.names:
            raise ValueError("rewards must name at least one reward")
        unknown = [n for n in self.names if n not in self.configs]
        if unknown:
            raise ValueError(
                f"rewards: unknown reward {unknown[0]!r}; choose from: {', '.join(sorted(self.configs))}"
            )
        if diversity is not None and diversity not in self.names:
            raise ValueError(
                f"diversity must be one of the rewards ({', '.join(self.names)}) or null, got {diversity!r}"
            )
        self.diversity, self.batch = diversity, check_int("batch", batch, 1)
        self._rewards: dict | None = None

    def __repr__(self) -> str:
        return f"HeldOutRewards({', '.join(self.names)})"

    def load(self) -> dict:
        """Build and load every reward model (once)."""
        if self._rewards is None:
            from glass.config import UserError, instantiate

            rewards = {}
            for name in self.names:
                try:
                    rewards[name] = instantiate(self.configs[name], "reward")
                except UserError as e:
                    raise ValueError(str(e)) from None
                if hasattr(rewards[name], "load"):
                    rewards[name].load()
            if self.diversity is not None and not hasattr(rewards[self.diversity], "image_features"):
                raise ValueError(
                    f"diversity needs a CLIP-family reward (clip, pickscore, hpsv2), got {self.diversity}"
                )
            self._rewards = rewards
        return self._rewards

    def score(self, images: Tensor, prompts: list[str]) -> tuple[dict[str, Tensor], Tensor | None]:
        """({reward name: one score per image}, the diversity reward's image features or None) for
        images in [-1, 1] (:func:`glass.rewards.base.images_of`), scored against their prompts."""
        rewards = self.load()
        with torch.no_grad():
            scores = {name: reward(images, prompt=prompts).double().cpu() for name, reward in rewards.items()}
            features = None
            if self.diversity is not None:
                features = rewards[self.diversity].image_features(images).double().cpu()
        return scores, features

    def release(self) -> None:
        """Free the reward models (built again by the next :meth:`load`)."""
        self._rewards = None
        import gc

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def __call__(self, model, x: Tensor, prompts: list[str], per_prompt: int) -> dict:
        """Every reward's mean, standard error and count over ``x`` (decoded a batch at a time), and the
        diversity within each prompt's ``per_prompt`` consecutive outputs."""
        from glass.rewards.base import images_of

        scores: dict[str, list] = {}
        features = []
        for i in range(0, len(x), self.batch):
            with torch.no_grad():
                images = images_of(model, x[i : i + self.batch].to(model.device))  # decoded once a batch
            part, feats = self.score(images, prompts[i : i + self.batch])
            for name, v in part.items():
                scores.setdefault(name, []).append(v)
            if feats is not None:
                features.append(feats)
        out = {}
        for name, parts in scores.items():
            out.update(summary(name, torch.cat(parts)))
        if features and per_prompt > 1:
            per = diversity(torch.cat(features).reshape(-1, per_prompt, features[0].shape[-1]))
            out.update(summary("diversity", per, count="diversity_n_prompts"))
        return out


def summary(name: str, v: Tensor, count: str | None = None) -> dict:
    """``{name: mean, name_se: standard error, name_n: count}`` of the values ``v``."""
    mean, se = mean_se(v)
    return {name: mean, f"{name}_se": se, count or f"{name}_n": len(v)}


def diversity(features: Tensor) -> Tensor:
    """Per prompt, the mean pairwise distance of its outputs' unit-norm image features: ``features``
    of shape (prompts, outputs per prompt, dim)."""
    f = torch.nn.functional.normalize(features.double(), dim=-1)
    return torch.stack([torch.pdist(g).mean() for g in f])
