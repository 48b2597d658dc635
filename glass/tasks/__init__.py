"""Tasks: thin compositions of model + sampler (transition) + metric."""

from glass.tasks.base import Result
from glass.tasks.generate import Generate
from glass.tasks.posterior import Posterior

__all__ = ["Result", "Generate", "Posterior"]
