"""glass-flows: GLASS Flows transition sampling (Holderrieth et al., arXiv 2509.25170).

Public API::

    import glass
    gmm = glass.GaussianMixture(means, stds, weights, schedule="linear")
    x1 = glass.generate(gmm, glass.GLASS(steps=8, rho="ddpm"), 5, n=1000)
    z = glass.GLASS(steps=8).transition(gmm, x_t, 0.2, 1.0)   # posterior sample
    glass.schedules.get("cosine")

    model = glass.from_pipe(pipe)                                 # a loaded diffusers pipeline
    x = glass.generate(model, glass.GLASS(4), 8, n=2, prompt=["a cat", "a dog"])
"""

from glass import schedules
from glass.alignment import best_of_n, fk_steering  # noqa: E402
from glass.models import CallableModel, GaussianMixture, Model, from_prediction
from glass.pipelines import from_pipe
from glass.samplers import DDPM, GLASS, ODE, SDE, generate, posterior, rho_ddpm, time_grid

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
    "posterior",
    "from_pipe",
    "fk_steering",
    "best_of_n",
    "rho_ddpm",
    "time_grid",
    "__version__",
]
