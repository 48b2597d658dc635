"""Tasks: thin compositions of model + sampler (transition) + metric (+ reward)."""

from glass.tasks.align import BestOfN, FKSteering, Guidance
from glass.tasks.base import Result
from glass.tasks.generate import Generate
from glass.tasks.inverse import Inverse
from glass.tasks.posterior import Posterior
from glass.tasks.value import Value

__all__ = ["Result", "Generate", "Posterior", "Value", "FKSteering", "BestOfN", "Guidance", "Inverse"]
