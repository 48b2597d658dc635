"""Held-out rewards beside the steered one (``metric=rewards``), for text-to-image runs.

Every output is scored by each reward of ``rewards`` (ImageReward, PickScore, HPSv2, CLIP score by
default: the paper's Table 1 columns) against its own prompt; each is reported per method as the mean
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

__all__ = ["HeldOutRewards"]


def _mean_se(v: Tensor) -> tuple[float, float]:
    v = v.double()
    return float(v.mean()), (float(v.std() / math.sqrt(len(v))) if len(v) > 1 else 0.0)


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

    def __call__(self, model, x: Tensor, prompts: list[str], per_prompt: int) -> dict:
        from glass.rewards.base import images_of

        rewards = self.load()
        scores = {name: [] for name in rewards}
        features = []
        with torch.no_grad():
            for i in range(0, len(x), self.batch):
                part, texts = x[i : i + self.batch].to(model.device), prompts[i : i + self.batch]
                images = images_of(model, part)  # decoded once a batch, for every reward
                for name, reward in rewards.items():
                    scores[name].append(reward(images, prompt=texts).double().cpu())
                if self.diversity is not None:
                    features.append(rewards[self.diversity].image_features(images).double().cpu())
        out = {}
        for name, parts in scores.items():
            v = torch.cat(parts)
            out[name], out[f"{name}_se"] = _mean_se(v)
            out[f"{name}_n"] = len(v)
        if self.diversity is not None and per_prompt > 1:
            f = torch.nn.functional.normalize(torch.cat(features), dim=-1).reshape(
                -1, per_prompt, features[0].shape[-1]
            )
            per = torch.stack([torch.pdist(g).mean() for g in f])
            out["diversity"], out["diversity_se"] = _mean_se(per)
            out["diversity_n_prompts"] = len(per)
        return out
