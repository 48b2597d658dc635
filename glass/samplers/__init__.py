"""Transition kernels behind one interface: ODE, SDE (DDPM, eq. 5), DDPM ancestral and GLASS."""

from glass.samplers.ancestral import DDPM
from glass.samplers.base import Transition, generate, posterior, time_grid
from glass.samplers.glass import GLASS, rho_ddpm, transition_coefficients
from glass.samplers.ode import ODE
from glass.samplers.sde import SDE

__all__ = [
    "ODE",
    "SDE",
    "DDPM",
    "GLASS",
    "Transition",
    "generate",
    "posterior",
    "time_grid",
    "rho_ddpm",
    "transition_coefficients",
]
