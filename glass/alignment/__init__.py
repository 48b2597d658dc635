"""Reward alignment: Feynman-Kac steering / SMC, best-of-N, resampling and potentials."""

from glass.alignment.fk import FKResult, best_of_n, fk_steering
from glass.alignment.guidance import Guided
from glass.alignment.potentials import POTENTIALS, log_potential
from glass.alignment.resampling import RESAMPLERS, ess, resample

__all__ = [
    "fk_steering",
    "best_of_n",
    "FKResult",
    "Guided",
    "resample",
    "ess",
    "log_potential",
    "RESAMPLERS",
    "POTENTIALS",
]
