"""Rewards r(x_1) -> (N,) for value estimation and alignment (``reward=...``)."""

from glass.rewards.base import Default, Reward, resolve_reward
from glass.rewards.classifier import ClassifierLogProb
from glass.rewards.linear import Linear

__all__ = ["Reward", "Default", "resolve_reward", "ClassifierLogProb", "Linear"]
