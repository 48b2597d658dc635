"""Feynman-Kac steering / SMC (Singhal et al. 2025) with any transition kernel as the proposal, and
best-of-N (DESIGN §4).

``groups`` independent particle systems of ``particles`` particles each run as one batch (split into
``chunk``-sized network batches for memory). Per outer transition: propose x_{t_{k+1}} with the
kernel, score the intermediate reward, multiply the weights by the potential, resample within each
group when scheduled. The intermediate reward on the denoiser output D_{t_{k+1}}(x) costs no extra
network call: that exact call is handed to the next transition as its first evaluation (every kernel
starts with D_t(x_t): GLASS at s = 0, SDE and ODE at their first step). NFE is counted by the model
wrapper; ``nfe`` below is per particle path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

import torch
from torch import Tensor

from glass.alignment.potentials import POTENTIALS, RewardState, log_potential
from glass.alignment.resampling import RESAMPLERS, ess, resample
from glass.samplers.base import time_grid
from glass.schedules import as_time

__all__ = ["FKResult", "fk_steering", "best_of_n", "Intermediate"]

Intermediate = Literal["denoiser", "posterior"]


class _Prefilled:
    """The model, except that its first ``denoise`` call at exactly (x, t) returns a precomputed
    D_t(x) without a network call. Everything else is forwarded to the model."""

    def __init__(self, model, x: Tensor, t: float, d: Tensor):
        self._model, self._x, self._t, self._d = model, x, t, d

    def denoise(self, y: Tensor, t, **cond) -> Tensor:
        if self._d is not None and y.shape == self._x.shape:
            tt = as_time(t, y)
            if bool((tt == self._t).all()) and torch.equal(y.to(self._x.dtype), self._x):
                d, self._d = self._d, None
                return d.to(y.dtype)
        return self._model.denoise(y, t, **cond)

    def __getattr__(self, name):
        return getattr(self._model, name)


def _chunks(n: int, chunk: int | None) -> list[slice]:
    size = n if not chunk else chunk
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


@dataclass
class FKResult:
    """Final particles (groups, particles, ...), their normalized log-weights and rewards r(x_1), and
    per-step diagnostics: ESS before resampling, whether each group resampled, ancestor indices."""

    x: Tensor
    log_weights: Tensor
    rewards: Tensor
    nfe: int
    ess: list[Tensor] = field(default_factory=list)
    resampled: list[Tensor] = field(default_factory=list)
    ancestors: list[Tensor] = field(default_factory=list)
    log_weight_history: list[Tensor] = field(default_factory=list)

    def weighted_reward(self) -> Tensor:
        """Self-normalized estimate of E_{p^r}[r] per group."""
        return (torch.softmax(self.log_weights, -1) * self.rewards).sum(-1)

    def draw(self, generator=None) -> Tensor:
        """One particle per group, drawn by the final weights (a sample of the steered target)."""
        idx = torch.multinomial(torch.softmax(self.log_weights, -1), 1, generator=generator)[:, 0]
        return self.x[torch.arange(len(idx)), idx.to(self.x.device)]

    def best(self) -> tuple[Tensor, Tensor]:
        """The highest-reward particle of each group and its reward."""
        idx = self.rewards.argmax(-1)
        return self.x[torch.arange(len(idx)), idx.to(self.x.device)], self.rewards[
            torch.arange(len(idx)), idx
        ]


def _check(particles, groups, lam, potential, resampler, resample_every, ess_threshold, intermediate):
    for name, v, lo in (
        ("particles", particles, 1),
        ("groups", groups, 1),
        ("resample_every", resample_every, 1),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"task.{name} must be an integer >= {lo}, got {v!r}")
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
        raise ValueError(f"task.lam must be a number >= 0, got {lam!r}")
    if potential not in POTENTIALS:
        raise ValueError(f"task.potential must be one of {', '.join(POTENTIALS)}, got {potential!r}")
    if resampler not in RESAMPLERS:
        raise ValueError(f"task.resampler must be one of {', '.join(RESAMPLERS)}, got {resampler!r}")
    if ess_threshold is not None and (
        isinstance(ess_threshold, bool)
        or not isinstance(ess_threshold, (int, float))
        or not 0 < ess_threshold <= 1
    ):
        raise ValueError(f"task.ess_threshold must be in (0, 1] or null, got {ess_threshold!r}")
    if intermediate not in get_args(Intermediate):
        raise ValueError(f"task.intermediate must be denoiser or posterior, got {intermediate!r}")


def fk_steering(
    model,
    kernel,
    reward,
    grid: int = 5,
    particles: int = 8,
    groups: int = 1,
    lam: float = 1.0,
    potential: str = "difference",
    resampler: str = "systematic",
    resample_every: int = 1,
    ess_threshold: float | None = None,
    intermediate: str = "denoiser",
    posterior_steps: int | None = None,
    chunk: int | None = None,
    generator: torch.Generator | None = None,
    progress=None,
    **cond,
) -> FKResult:
    """Feynman-Kac steering towards p^r(z) proportional to p(z) exp(lam r(z)).

    Resampling happens after transition k < K (not after the last) when ``(k + 1) % resample_every
    == 0`` and, if ``ess_threshold`` is set, only for groups whose ESS < ess_threshold * particles.
    ``intermediate="posterior"`` scores x_t by one GLASS posterior sample with ``posterior_steps``
    steps (extra NFE, counted) instead of the free denoiser output.
    """
    _check(particles, groups, lam, potential, resampler, resample_every, ess_threshold, intermediate)
    from glass.samplers.glass import GLASS

    times = time_grid(grid)
    n_total, device = groups * particles, getattr(model, "device", torch.device("cpu"))
    seed = int(torch.randint(0, 2**62, (1,), generator=generator)) if generator is not None else None
    cpu_gen = torch.Generator().manual_seed(seed) if seed is not None else None
    x = torch.randn((n_total, *model.shape), generator=generator, dtype=torch.float64, device=device)
    x = x * model.schedule.sigma(times[0]).item()
    slices = _chunks(n_total, chunk)
    log_w = torch.zeros(groups, particles, dtype=torch.float64)
    lineage = torch.zeros(n_total, dtype=torch.float64)  # sum of log potentials along each ancestry
    state = RewardState.empty(lineage)
    d_next: Tensor | None = None
    out = FKResult(x, log_w, lineage, 0)
    offsets = (torch.arange(groups) * particles)[:, None]
    model.reset_nfe()
    k_last = len(times) - 2
    for k, (t0, t1) in enumerate(zip(times[:-1].tolist(), times[1:].tolist())):
        parts = []
        for sl in slices:
            m = _Prefilled(model, x[sl].double(), t0, d_next[sl]) if d_next is not None else model
            parts.append(kernel.transition(m, x[sl], t0, t1, generator=generator, **cond))
        x = torch.cat(parts)
        if not torch.isfinite(x).all():
            raise FloatingPointError(f"{kernel!r} produced NaN or Inf particles at t = {t1:g}")
        if k < k_last:
            d_next = torch.cat([model.denoise(x[sl], t1, **cond) for sl in slices])
            if intermediate == "denoiser":
                r = reward(d_next).double().cpu()
            else:
                post = GLASS(posterior_steps or kernel.steps)
                z = torch.cat(
                    [post.transition(model, x[sl], t1, 1.0, generator=generator, **cond) for sl in slices]
                )
                r = reward(z).double().cpu()
            log_g = log_potential(potential, lam, r, state)
            state = state.update(r)
        else:
            r = reward(x).double().cpu()
            log_g = lam * r - lineage  # final correction: the product of potentials is exp(lam r(x_1))
        lineage = lineage + log_g
        log_w = log_w + log_g.reshape(groups, particles)
        e = ess(log_w)
        out.ess.append(e)
        out.log_weight_history.append(log_w.clone())
        do = torch.zeros(groups, dtype=torch.bool)
        if k < k_last and (k + 1) % resample_every == 0:
            do = (
                torch.ones(groups, dtype=torch.bool)
                if ess_threshold is None
                else e < ess_threshold * particles
            )
        idx = torch.arange(particles).expand(groups, -1).clone()
        if bool(do.any()):
            idx[do] = resample(log_w[do], resampler, cpu_gen)
            log_w[do] = 0.0
            flat = (idx + offsets).reshape(-1)
            x, lineage, state = x[flat.to(x.device)], lineage[flat], state.index(flat)
            d_next = d_next[flat.to(d_next.device)] if d_next is not None else None
        out.resampled.append(do)
        out.ancestors.append(idx)
        if progress is not None:
            progress()
    out.x = x.reshape(groups, particles, *x.shape[1:])
    out.log_weights = log_w - torch.logsumexp(log_w, -1, keepdim=True)
    out.rewards = r.reshape(groups, particles)
    out.nfe = model.reset_nfe() // len(slices)
    return out


def best_of_n(
    model,
    kernel,
    reward,
    grid: int = 5,
    n: int = 8,
    groups: int = 1,
    chunk=None,
    generator=None,
    progress=None,
    **cond,
) -> tuple[Tensor, Tensor, int]:
    """N independent samples per group through the kernel's transitions; keep the highest reward.
    Returns (best samples (groups, ...), their rewards (groups,), NFE per sample path)."""
    from glass.samplers import generate

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"task.particles must be an integer >= 1, got {n!r}")
    total = groups * n
    slices = _chunks(total, chunk)
    model.reset_nfe()
    x = torch.cat(
        [
            generate(model, kernel, grid, s.stop - s.start, generator=generator, progress=progress, **cond)
            for s in slices
        ]
    )
    r = reward(x).double().cpu().reshape(groups, n)
    idx = r.argmax(1)
    best = x.reshape(groups, n, *x.shape[1:])[torch.arange(groups), idx.to(x.device)]
    return best, r[torch.arange(groups), idx], model.reset_nfe() // len(slices)
