"""Rewards r(x_1) -> (N,) for value estimation and alignment (``reward=...``)."""

from glass.rewards.base import DefaultReward, Reward, resolve_reward, score
from glass.rewards.classifier import ClassifierLogProb
from glass.rewards.hub import CLIPScore, HPSv2, ImageReward, PickScore, RewardUnavailable
from glass.rewards.ink import Ink
from glass.rewards.jpeg import JpegCompressibility
from glass.rewards.linear import LinearReward
from glass.rewards.measurement import Measurement

__all__ = [
    "Reward",
    "DefaultReward",
    "resolve_reward",
    "score",
    "ClassifierLogProb",
    "LinearReward",
    "Measurement",
    "Ink",
    "JpegCompressibility",
    "CLIPScore",
    "PickScore",
    "HPSv2",
    "ImageReward",
    "RewardUnavailable",
]
