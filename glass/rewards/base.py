"""The reward contract and the model-dependent default.

A reward is a callable ``reward(x1, **cond) -> (N,)`` tensor (float64) on clean samples x_1 in the
model's data space (images in [-1, 1]), with ``differentiable`` telling whether gradients through it
are meaningful. Latent models decode first (:func:`reward_input`: ``model.decode``), unless the
reward declares ``wants_latents = True``. Rewards with
weights to fetch have ``load()``, called when the run is prepared so missing weights fail early.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from glass.models.base import capabilities_of

__all__ = ["Reward", "DefaultReward", "check_fits", "resolve_reward", "score", "reward_cond", "reward_input",
           "images_of"]


class Reward(Protocol):
    differentiable: bool

    def __call__(self, x1: Tensor, **cond) -> Tensor: ...


class DefaultReward:
    """``reward=default``: the model's natural reward (MNIST: classifier log-probability of class
    ``target``; Gaussian-mixture oracle: the linear reward w.z with |w| = 1; pretrained image models
    (FLUX, SD3, SD, SiT): ImageReward, the paper's reward)."""

    def __init__(self, target: int = 0):
        self.target = target

    def __repr__(self) -> str:
        return f"DefaultReward(target={self.target})"


def check_fits(reward, model) -> None:
    """Options of the shipped rewards that depend on the model, checked before any work (also when
    the task scores no reward): the linear reward's ``direction`` against the oracle's dimension, and
    a classifier checkpoint given by ``path`` (loaded now, so a bad file fails before sampling). Other
    rewards (a user's own class among them) are not looked into."""
    from glass.rewards.classifier import ClassifierLogProb
    from glass.rewards.linear import LinearReward

    if isinstance(reward, LinearReward) and capabilities_of(model).oracle:
        reward.weights(model.dim)
    if isinstance(reward, ClassifierLogProb) and reward.path:
        reward.net(model.device)


def resolve_reward(reward, model):
    """Replace ``DefaultReward`` by the model's default reward; check the reward fits the model."""
    from glass.rewards.classifier import ClassifierLogProb
    from glass.rewards.linear import LinearReward
    from glass.rewards.measurement import Measurement

    caps = capabilities_of(model)
    oracle, mnist = caps.oracle, caps.classifier
    if isinstance(reward, DefaultReward):
        if not (oracle or mnist):  # a pretrained image model: the paper's reward
            from glass.rewards.hub import ImageReward

            reward = ImageReward()
        else:
            if oracle:
                return LinearReward()
            try:
                return ClassifierLogProb(target=reward.target)
            except ValueError as e:  # the config key that set it
                raise ValueError(f"reward.{e}") from None
    if isinstance(reward, ClassifierLogProb) and not (oracle or mnist):
        raise ValueError("reward=classifier scores MNIST digits (model=mnist); use e.g. reward=imagereward")
    if isinstance(reward, ClassifierLogProb) and oracle:
        raise ValueError("reward=classifier needs an MNIST model (model=mnist), got the oracle")
    if isinstance(reward, LinearReward) and not oracle:
        raise ValueError("reward=linear is the oracle's reward (model=gmm or gmm64)")
    if oracle and not isinstance(reward, (LinearReward, Measurement)):
        raise ValueError(f"{reward!r} scores images; the oracle's rewards are reward=linear and measurement")
    if isinstance(reward, Measurement) and reward.op is None:
        reward = reward.bind(model)
    if hasattr(reward, "load"):
        reward.load()
    return reward


def images_of(model, x: Tensor) -> Tensor:
    """The model's samples as images in [-1, 1], the data convention rewards score: latent models
    decode with ``model.decode`` (whose [0, 1] images are mapped), data-space samples are images."""
    return model.decode(x) * 2 - 1 if capabilities_of(model).latent else x


def reward_input(reward, model, x: Tensor) -> Tensor:
    """What ``reward`` scores for the model's samples ``x``: :func:`images_of`, or ``x`` itself for
    rewards that declare ``wants_latents = True``."""
    return x if getattr(reward, "wants_latents", False) else images_of(model, x)


# Conditioning that says how a sample was drawn, not what it should match: not handed to rewards.
SAMPLING_ONLY = ("negative_prompt",)


def reward_cond(model, cond: dict) -> dict:
    """The conditioning a reward gets: the sampler's, less :data:`SAMPLING_ONLY` keys, with the
    model's default prompt when none is given (text-to-image models score against their prompt)."""
    cond = {k: v for k, v in cond.items() if k not in SAMPLING_ONLY}
    if capabilities_of(model).prompts and model.prompt_text is not None and "prompt" not in cond:
        cond["prompt"] = model.prompt_text
    return cond


def score(reward, model, x1: Tensor, **cond) -> Tensor:
    """r(images of x_1) with :func:`reward_cond`'s conditioning, checked to be one number per sample."""
    r = reward(reward_input(reward, model, x1), **reward_cond(model, cond))
    if not isinstance(r, Tensor) or r.shape != (len(x1),):
        got = f"shape {tuple(r.shape)}" if isinstance(r, Tensor) else type(r).__name__
        n = len(x1)
        raise ValueError(f"{reward!r} returned {got} for {n} samples; a reward returns shape ({n},)")
    return r
