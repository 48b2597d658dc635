"""The reward contract and the model-dependent default.

A reward is a callable ``reward(x1, **cond) -> (N,)`` tensor (float64) on clean samples x_1 in the
model's data space, with ``differentiable`` telling whether gradients through it are meaningful.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

__all__ = ["Reward", "Default", "resolve_reward"]


class Reward(Protocol):
    differentiable: bool

    def __call__(self, x1: Tensor, **cond) -> Tensor: ...


class Default:
    """``reward=default``: the model's natural reward (MNIST: classifier log-probability of
    class 0; Gaussian-mixture oracle: the linear reward w.z with |w| = 1)."""

    def __repr__(self) -> str:
        return "Default()"


def resolve_reward(reward, model):
    """Replace ``Default`` by the model's default reward; check the reward fits the model."""
    from glass.rewards.classifier import ClassifierLogProb
    from glass.rewards.linear import Linear

    oracle = hasattr(model, "sample_posterior")
    if isinstance(reward, Default):
        return Linear() if oracle else ClassifierLogProb()
    if isinstance(reward, ClassifierLogProb) and oracle:
        raise ValueError("reward=classifier needs an MNIST model (model=mnist), got the oracle")
    if isinstance(reward, Linear) and not oracle:
        raise ValueError("reward=linear is the oracle's reward (model=gmm or gmm64)")
    return reward
