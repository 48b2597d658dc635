"""Models adapted to the single denoiser interface ``denoise(x, t, **cond)``."""

from glass.models.base import CallableModel, Model, from_prediction
from glass.models.gmm import GaussianMixture, random_mixture, ring

__all__ = ["Model", "CallableModel", "from_prediction", "GaussianMixture", "ring", "random_mixture"]
