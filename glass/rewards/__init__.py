"""Rewards r(x_1) -> (N,) for value estimation and alignment (``reward=...``)."""

from glass.rewards.base import Default, Reward, resolve_reward, score
from glass.rewards.classifier import ClassifierLogProb
from glass.rewards.hub import CLIPScore, HPSv2, ImageReward, PickScore, RewardUnavailable
from glass.rewards.ink import Ink
from glass.rewards.jpeg import JpegCompressibility
from glass.rewards.linear import Linear

__all__ = [
    "Reward",
    "Default",
    "resolve_reward",
    "score",
    "ClassifierLogProb",
    "Linear",
    "Ink",
    "JpegCompressibility",
    "CLIPScore",
    "PickScore",
    "HPSv2",
    "ImageReward",
    "RewardUnavailable",
]
