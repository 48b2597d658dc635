"""MNIST classifier reward: log-probability of a target class under the shipped classifier (the
analog of the paper's ImageNet classifier log-likelihood reward)."""

from __future__ import annotations

import torch
from torch import Tensor

from glass.checks import check_int

__all__ = ["ClassifierLogProb"]


class ClassifierLogProb:
    """r(z) = log p(target | z) under the shipped (or given) classifier; differentiable."""

    differentiable = True

    def __init__(self, target: int = 0, path: str | None = None, batch: int = 1000):
        check_int("target", target, 0, 9)  # a digit class
        self.target, self.path, self.batch = target, path, batch
        self._net = None

    def load(self) -> None:
        """Load the classifier (once): ``resolve_reward`` calls it when a run is prepared, as for every
        reward with weights, so a bad checkpoint fails early and the weights are part of the reward
        (the value task's truth cache hashes them)."""
        if self._net is None:
            from glass.models.mnist import load_classifier

            self._net = load_classifier(self.path)

    def net(self, device) -> torch.nn.Module:
        self.load()
        return self._net.to(device)

    def __call__(self, x1: Tensor, **cond) -> Tensor:
        net = self.net(x1.device)
        out = [
            torch.log_softmax(net(x1[i : i + self.batch].float()).double(), dim=1)[:, self.target]
            for i in range(0, len(x1), self.batch)
        ]
        return torch.cat(out)

    def __repr__(self) -> str:
        return f"ClassifierLogProb(target={self.target})"
