"""Feynman-Kac steering / SMC (Singhal et al. 2025) with any transition kernel as the proposal, and
best-of-N (paper §5, eq. 6).

``groups`` independent particle systems of ``particles`` particles each run as one batch (split into
``chunk``-sized network batches for memory). Per outer transition: propose x_{t_{k+1}} with the
kernel, score the intermediate reward, multiply the weights by the potential, resample within each
group when scheduled. The intermediate reward on the denoiser output D_{t_{k+1}}(x) costs no extra
network call: that call is handed to the next transition as ``denoised`` (every kernel's first
evaluation is D_t(x_t): GLASS at s = 0, SDE and ODE at their first step; see
``glass.samplers.base``). NFE is counted by the model wrapper; ``nfe`` below is per particle path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from glass.alignment.potentials import POTENTIALS, RewardState, log_potential
from glass.alignment.resampling import RESAMPLERS, ess, resample
from glass.checks import check_choice, check_finite, check_int, check_kernel, check_number, check_reward
from glass.conditioning import per_row
from glass.noise import noise_source
from glass.rewards.base import score
from glass.samplers.base import (
    denoise_rows,
    generate,
    peek_seed,
    prior_sample,
    replacement,
    row_slices,
    time_grid,
    transition_rows,
)  # fmt: skip

__all__ = ["FKResult", "fk_steering", "best_of_n", "check_fk_options", "Intermediate"]

Intermediate = Literal["denoiser", "posterior"]


@dataclass
class FKResult:
    """Final particles (groups, particles, ...), their normalized log-weights and rewards r(x_1), and
    per-step diagnostics: ESS before resampling, whether each group resampled, ancestor indices."""

    x: Tensor
    log_weights: Tensor
    rewards: Tensor
    nfe: int
    ess: list[Tensor]
    resampled: list[Tensor]
    ancestors: list[Tensor]
    log_weight_history: list[Tensor]

    def weighted_reward(self) -> Tensor:
        """Self-normalized estimate of E_{p^r}[r] per group."""
        return (torch.softmax(self.log_weights, -1) * self.rewards).sum(-1)

    def draw_index(self, generator=None) -> Tensor:
        """Per group, the index of one particle drawn by the final weights; ``generator`` is a CPU
        generator (the weights live on the CPU)."""
        return torch.multinomial(torch.softmax(self.log_weights, -1), 1, generator=generator)[:, 0]

    def draw(self, generator=None) -> Tensor:
        """One particle per group, drawn by the final weights (a sample of the steered target)."""
        idx = self.draw_index(generator)
        return self.x[torch.arange(len(idx)), idx.to(self.x.device)]

    def best_index(self) -> Tensor:
        """Per group, the index of its highest-reward particle."""
        return self.rewards.argmax(-1)

    def best(self) -> tuple[Tensor, Tensor]:
        """The highest-reward particle of each group and its reward."""
        idx = self.best_index()
        rows = torch.arange(len(idx))
        return self.x[rows, idx.to(self.x.device)], self.rewards[rows, idx]


def check_fk_options(
    particles, groups, lam, potential, resampler, resample_every, ess_threshold, intermediate, prefix=""
):
    """Validate FK options; errors name the Python argument (``prefix="task."``: the config key)."""
    check_int(f"{prefix}particles", particles, 1)
    check_int(f"{prefix}groups", groups, 1)
    check_int(f"{prefix}resample_every", resample_every, 1)
    check_number(f"{prefix}lam", lam, minimum=0)
    check_choice(f"{prefix}potential", potential, POTENTIALS)
    check_choice(f"{prefix}resampler", resampler, RESAMPLERS)
    check_choice(f"{prefix}intermediate", intermediate, get_args(Intermediate))
    if ess_threshold is not None and not 0 < check_number(f"{prefix}ess_threshold", ess_threshold) <= 1:
        none = "null" if prefix else "None"
        raise ValueError(f"{prefix}ess_threshold must be in (0, 1] or {none}, got {ess_threshold!r}")


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
    generator=None,
    progress=None,
    callback=None,
    **cond,
) -> FKResult:
    """Feynman-Kac steering towards p^r(z) proportional to p(z) exp(lam r(z)) (paper eq. 6).

    ``reward`` scores images: latent models' particles are decoded first (``model.decode``) unless
    the reward sets ``wants_latents = True``; it gets the conditioning too (``prompt=``). ``**cond``
    is per group (``prompt=``: a string or one per group). ``generator``: a ``torch.Generator``, a
    list of them (one per particle) or :class:`glass.noise.Streams`. ``callback(i, t, x, denoised,
    log_weights=, ess=, ancestors=)`` runs after each transition's weighting and resampling and may
    return replacement particles (or ``(x, d)`` with d = D_t(x)): they go on from there (their
    denoiser is computed by the next transition, counted), and at the last transition the final
    rewards and weights are those of the replacement. ``progress=True`` shows a bar.

    Resampling happens after transition k = 0..K-2 (counted from 0; not after the last) when
    ``(k + 1) % resample_every == 0`` and, if ``ess_threshold`` is set, only for groups whose
    ESS < ess_threshold * particles.
    ``intermediate="posterior"`` scores x_t by one GLASS posterior sample with ``posterior_steps``
    steps (extra NFE, counted) instead of the free denoiser output.
    """
    check_fk_options(
        particles, groups, lam, potential, resampler, resample_every, ess_threshold, intermediate
    )
    check_kernel(kernel)
    check_reward(reward)
    if posterior_steps is not None:
        check_int("posterior_steps", posterior_steps, 1)
        if intermediate != "posterior":  # the denoiser's intermediate reward takes no posterior sample
            raise ValueError(f"posterior_steps applies to intermediate='posterior', not {intermediate!r}")
    with torch.no_grad():
        return _fk(model, kernel, reward, grid, particles, groups, lam, potential, resampler, resample_every,
                   ess_threshold, intermediate, posterior_steps, chunk, noise_source(generator), progress,
                   callback, cond)  # fmt: skip


def _fk(model, kernel, reward, grid, particles, groups, lam, potential, resampler,  # fmt: skip
        resample_every, ess_threshold, intermediate, posterior_steps, chunk, generator, progress, callback,
        cond):
    times = time_grid(grid, model)
    cond = per_row(cond, groups, particles, "groups")
    n_total = groups * particles
    seed = peek_seed(generator)  # resampling draws on the CPU; the caller's noise is generate()'s
    x = prior_sample(model, n_total, generator, float(times[0]))
    slices = row_slices(n_total, chunk)
    step = _Step(model, kernel, reward, cond, slices, generator, intermediate, posterior_steps)
    cpu_gen = None if seed is None else torch.Generator().manual_seed(seed)
    hook = _Weighing(step, groups, particles, lam, potential, resampler, resample_every, ess_threshold,
                     len(times) - 2, cpu_gen, callback)  # fmt: skip
    calls = model.nfe  # the caller's counter keeps running: this call's share is read as a difference
    generate(model, kernel, grid, x=x, generator=generator, progress=progress, callback=hook, chunk=chunk,
             **cond)  # fmt: skip
    p = hook.p
    return FKResult(
        x=p.x.reshape(groups, particles, *p.x.shape[1:]),
        log_weights=p.log_w - torch.logsumexp(p.log_w, -1, keepdim=True),
        rewards=hook.r.reshape(groups, particles),
        nfe=(model.nfe - calls) // len(slices),
        **hook.history,
    )


class _Weighing:
    """The FK part of each step, as ``generate``'s per-step hook: score the particles (the intermediate
    reward on D_t(x), computed here and handed back to the next transition, or the final reward),
    multiply the weights by the potential, resample within groups when scheduled."""

    def __init__(self, step, groups, particles, lam, potential, resampler, resample_every, ess_threshold,
                 k_last, generator, callback):  # fmt: skip
        self.step, self.groups, self.particles, self.lam = step, groups, particles, lam
        self.potential, self.resampler = potential, resampler
        self.every, self.threshold = resample_every, ess_threshold
        self.k_last, self.generator, self.callback = k_last, generator, callback
        self.p: _Particles | None = None
        self.r: Tensor | None = None
        self.history = {"ess": [], "resampled": [], "ancestors": [], "log_weight_history": []}

    def __call__(self, k: int, t: float, x: Tensor, d_start):
        if self.p is None:
            lineage = torch.zeros(len(x), dtype=torch.float64)  # sum of log potentials along each ancestry
            log_w = torch.zeros(self.groups, self.particles, dtype=torch.float64)
            self.p = _Particles(x, None, lineage, RewardState.empty(lineage), log_w)
        p = self.p
        if k < self.k_last:
            p.x = x
            p.d, self.r = self.step.intermediate(x, t)
            log_g = log_potential(self.potential, self.lam, self.r, p.state)
            p.state = p.state.update(self.r)
            self._weigh(log_g)
        else:
            before = (p.lineage, p.log_w)
            self._final(x)
        e = self.history["ess"][-1]
        do = torch.zeros(self.groups, dtype=torch.bool)
        if k < self.k_last and (k + 1) % self.every == 0:
            do = torch.ones_like(do) if self.threshold is None else e < self.threshold * self.particles
        idx = p.resample(do, self.resampler, self.generator)
        self.history["resampled"].append(do)
        self.history["ancestors"].append(idx)
        if self.callback is not None:
            out = self.callback(k, t, p.x, d_start, log_weights=p.log_w, ess=e, ancestors=idx)
            out = replacement(out, p.x)
            if out is not None and out[0] is not p.x:
                p.x, p.d = out  # d None: the next transition computes D_t of the new particles (counted)
                if k == self.k_last:  # the final rewards and weights are those of the returned particles
                    p.lineage, p.log_w = before
                    del self.history["ess"][-1], self.history["log_weight_history"][-1]
                    self._final(p.x)
        return (p.x, p.d) if k < self.k_last else p.x

    def _final(self, x: Tensor) -> None:
        """The last transition's weighting: the final reward, and the correction that makes the product
        of the potentials exp(lam r(x_1))."""
        self.p.x = x
        self.r = self.step.rate(x)
        tilt = log_potential("current", self.lam, self.r, self.p.state)  # lam r(x_1) (0 at lam = 0)
        self._weigh(tilt - self.p.lineage)

    def _weigh(self, log_g: Tensor) -> None:
        """Multiply the weights by the potentials. A particle at weight 0 (log -inf: an intermediate
        reward of -inf killed it) stays at 0 until resampling replaces it: a later +inf (the difference
        potential after r = -inf, or the final correction lam r(x_1) - lineage) would make it NaN."""
        p = self.p
        p.lineage = p.lineage + log_g
        log_w = p.log_w + log_g.reshape(self.groups, self.particles)
        p.log_w = torch.where(p.log_w.isneginf(), p.log_w, log_w)
        self.history["ess"].append(ess(p.log_w))
        self.history["log_weight_history"].append(p.log_w.clone())


@dataclass
class _Particles:
    """The particle system between transitions: states, their denoiser outputs, ancestral sums of log
    potentials, reward state and (groups, particles) log-weights."""

    x: Tensor
    d: Tensor | None
    lineage: Tensor
    state: RewardState
    log_w: Tensor

    def resample(self, do: Tensor, resampler: str, generator) -> Tensor:
        """Resample the groups flagged in ``do`` (weights reset to 0); returns ancestor indices."""
        groups, particles = self.log_w.shape
        idx = torch.arange(particles).expand(groups, -1).clone()
        if bool(do.any()):
            idx[do] = resample(self.log_w[do], resampler, generator)
            self.log_w[do] = 0.0
            flat = (idx + (torch.arange(groups) * particles)[:, None]).reshape(-1)
            self.x, self.d = self.x[flat.to(self.x.device)], self.d[flat.to(self.d.device)]
            self.lineage, self.state = self.lineage[flat], self.state.index(flat)
        return idx


@dataclass
class _Step:
    """Scoring the particles chunk by chunk: the intermediate reward of x_t by the denoiser (free: handed
    to the next transition) or a posterior sample, and the reward of x_1."""

    model: object
    kernel: object
    reward: object
    cond: dict
    slices: list
    generator: object
    mode: str  # how x_t is scored: "denoiser" or "posterior"
    posterior_steps: int | None

    def rate(self, z: Tensor) -> Tensor:
        return score(self.reward, self.model, z, **self.cond).double().cpu()

    def intermediate(self, x: Tensor, t: float) -> tuple[Tensor, Tensor]:
        """(D_t(x), the intermediate reward of x)."""
        from glass.samplers.glass import GLASS

        d = denoise_rows(self.model, x, t, self.cond, self.slices)
        if self.mode == "denoiser":
            return d, self.rate(d)
        post = GLASS(self.posterior_steps or self.kernel.steps)  # its first evaluation is the call just made
        z = transition_rows(self.model, post, x, t, 1.0, self.generator, d, self.cond, self.slices)
        return d, self.rate(z)


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
    with_index: bool = False,
    **cond,
) -> tuple[Tensor, Tensor, int]:
    """N independent samples per group through the kernel's transitions; keep the highest reward
    (scored on images, as :func:`fk_steering`; ``**cond`` per group). Returns (best samples
    (groups, ...), their rewards (groups,), NFE per sample path), and with ``with_index`` the index of
    each group's kept sample among its N."""
    check_int("n", n, 1)
    check_int("groups", groups, 1)
    check_reward(reward)  # the kernel: generate checks it before any work
    total = groups * n
    slices = row_slices(total, chunk)
    cond = per_row(cond, groups, n, "groups")
    calls = model.nfe  # the caller's counter keeps running: this call's share is read as a difference
    x = generate(model, kernel, grid, total, generator=generator, progress=progress, chunk=chunk, **cond)
    with torch.no_grad():
        r = score(reward, model, x, **cond).double().cpu().reshape(groups, n)
    if bool(r.isnan().any()):  # argmax would keep a NaN as the best (FK steering fails on it too)
        raise FloatingPointError(
            f"the reward {reward!r} returned NaN for {int(r.isnan().sum())} of {total} samples; "
            "best-of-N cannot rank them"
        )
    idx = r.argmax(1)
    best = x.reshape(groups, n, *x.shape[1:])[torch.arange(groups), idx.to(x.device)]
    check_finite(x, repr(kernel))
    out = (best, r[torch.arange(groups), idx], (model.nfe - calls) // len(slices))
    return (*out, idx) if with_index else out
