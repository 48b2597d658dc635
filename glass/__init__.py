"""glass-flows: GLASS Flows transition sampling (Holderrieth et al., arXiv 2509.25170).

Public API::

    import glass
    gmm = glass.GaussianMixture(means, stds, weights, schedule="linear")
    x1 = glass.generate(gmm, glass.GLASS(steps=8, rho="ddpm"), 5, n=1000)
    z = glass.GLASS(steps=8).transition(gmm, x_t, 0.2, 1.0)   # posterior sample
    glass.schedules.get("cosine")
"""

from glass import schedules
from glass.models import CallableModel, GaussianMixture, Model, from_prediction
from glass.samplers import DDPM, GLASS, ODE, SDE, generate, rho_ddpm, time_grid

__version__ = "0.1.0"

__all__ = [
    "schedules",
    "Model",
    "CallableModel",
    "from_prediction",
    "GaussianMixture",
    "ODE",
    "SDE",
    "DDPM",
    "GLASS",
    "generate",
    "rho_ddpm",
    "time_grid",
    "__version__",
]
