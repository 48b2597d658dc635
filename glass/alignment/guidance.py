"""Reward guidance (paper eqs. 43-50, App. D.4) as a tilted denoiser.

Flow guidance (eq. 43) is u^r = u + c_t grad V_t with c_t = nu_t^2 / 2, and V_t ~ beta r(D_t(x))
(eq. 45). The velocity is affine in the denoiser with coefficient (alpha' sigma - alpha sigma') / sigma,
so the same change is the tilted denoiser (eq. 44)

    D^r_t(x) = D_t(x) + lam (sigma_t^2 / alpha_t) g,   g = grad_z r(z) at z = D_t(x) (detached),

with lam the paper's guidance strength (c_t = lam nu_t^2 / 2 in its experiments, lam = 0.4), applied
only for t in the window [t_lo, t_hi] (the paper: [0.2, 0.7]). Every kernel then gets its guided
version by seeing this model:
- ODE: u(D^r) = u + lam (nu_t^2 / 2) g: flow guidance (eq. 43);
- SDE: the drift uses D^r in the velocity and in the score, score^r = score + lam g: SDE guidance;
- GLASS: the inner velocity u_s = w1 xbar + w2 Dhat + w3 x_t with Dhat = D^r_{t*}(alpha_{t*} S) adds
  lam (sigma_{t*}^2 / alpha_{t*}) w2(s) g: GLASS guidance (eq. 50).
By default (``grad="detached"``) the gradient is taken at the detached denoiser output, as in the
paper's experiments (no backward pass through the network). ``grad="network"`` uses
grad_x r(D_t(x)) through the network instead (eq. 45 as written; one backward pass): for Gaussian
data and a linear reward this is exact, D^r = E_{p^r}[z | x_t], which the oracle tests check.
Reward-gradient passes are counted in ``grad_evals``, separately from NFE.
"""

from __future__ import annotations

import torch
from torch import Tensor

from glass.checks import check_choice, check_number
from glass.schedules import as_time, bcast

__all__ = ["Guided", "check_guidance"]


def check_guidance(lam=0.4, t_lo=0.2, t_hi=0.7, grad="detached", prefix: str = "") -> None:
    """Validate guidance options (also called when a run is prepared); errors name the Python
    argument, or the config key with ``prefix="task.guidance."``."""
    check_number(f"{prefix}lam", lam, minimum=0)
    check_choice(f"{prefix}grad", grad, ("detached", "network"))
    lo, hi = check_number(f"{prefix}t_lo", t_lo), check_number(f"{prefix}t_hi", t_hi)
    if not 0 < lo < hi < 1:  # t_lo = t_hi: a window of one instant, which no step may ever hit
        raise ValueError(f"the guidance window must satisfy 0 < t_lo < t_hi < 1, got [{t_lo}, {t_hi}]")


class Guided:
    """``model`` with its denoiser tilted towards ``reward`` (see the module docstring)."""

    def __init__(
        self,
        model,
        reward,
        lam: float = 0.4,
        t_lo: float = 0.2,
        t_hi: float = 0.7,
        grad: str = "detached",
        decode=None,
    ):
        """``decode``: latents -> what the reward scores; by default the model's images (latent
        models, see ``glass.rewards.base.reward_input``) or the samples themselves."""
        if not getattr(reward, "differentiable", False):
            raise ValueError(f"guidance needs a differentiable reward, {reward!r} is not")
        check_guidance(lam, t_lo, t_hi, grad)
        self._model, self.reward, self.lam, self.t_lo, self.t_hi = model, reward, float(lam), t_lo, t_hi
        self.grad = grad
        self._reward_input = decode  # not ``self.decode``: that is the model's (forwarded), e.g. for images
        self.grad_evals = 0

    def _images(self, z: Tensor) -> Tensor:
        if self._reward_input is not None:
            return self._reward_input(z)
        from glass.rewards.base import reward_input

        return reward_input(self.reward, self._model, z)

    def _reward(self, images: Tensor, cond: dict) -> Tensor:
        from glass.rewards.base import reward_cond

        return self.reward(images, **reward_cond(self._model, cond))

    def reward_grad(self, z: Tensor, **cond) -> Tensor:
        """grad_z r(images of z) at a detached z (one reward-gradient pass)."""
        with torch.inference_mode(False), torch.enable_grad():
            z = z.detach().clone().requires_grad_(True)
            x = self._images(z)
            (g,) = torch.autograd.grad(self._reward(x, cond).sum(), z)
        self.grad_evals += 1
        return g

    def _through_network(self, x: Tensor, t, **cond) -> tuple[Tensor, Tensor]:
        """D_t(x) and grad_x r(decode(D_t(x))) by a backward pass through the network."""
        with torch.inference_mode(False), torch.enable_grad():
            xx = x.detach().clone().requires_grad_(True)
            d = self._model.denoise(xx, t, **cond)
            z = self._images(d)
            (g,) = torch.autograd.grad(self._reward(z, cond).sum(), xx)
        self.grad_evals += 1
        return d.detach(), g

    def denoise(self, x: Tensor, t, **cond) -> Tensor:
        tt = as_time(t, x)
        active = (tt >= self.t_lo) & (tt <= self.t_hi)
        # one host sync per call (t* is a device tensor inside GLASS): it saves a reward-gradient
        # pass, usually far dearer, whenever the whole batch is outside the window
        if self.lam == 0 or not bool(active.any()):
            return self._model.denoise(x, t, **cond)
        if self.grad == "network":
            d, g = self._through_network(x, t, **cond)
        else:
            d = self._model.denoise(x, t, **cond)
            g = self.reward_grad(d, **cond)
        sch = self._model.schedule
        scale = torch.where(active, self.lam * sch.sigma(tt) ** 2 / sch.alpha(tt), torch.zeros_like(tt))
        return d + bcast(scale, d).to(d) * g.to(d)

    def velocity(self, x: Tensor, t, **cond) -> Tensor:
        return self.schedule.x0_to_velocity(self.denoise(x, t, **cond), x, t)

    def __getattr__(self, name):
        return getattr(self._model, name)

    def __repr__(self) -> str:
        window = f"[{self.t_lo:g}, {self.t_hi:g}]"
        return f"Guided({self._model!r}, {self.reward!r}, lam={self.lam:g}, window={window})"
