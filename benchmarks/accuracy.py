"""Accuracy per NFE on the exact oracle (d = 64 Gaussian mixture), used by ``make bench``.

For P conditioning points x_t ~ p_t, every kernel draws n samples of x_{t'} | x_t, and the error is the
Fréchet distance between the samples' mean and covariance and the exact conditional's (the
closed-form moments of a Gaussian mixture posterior pushed through eqs. 16-17), averaged over the
points, with its Monte-Carlo floor (exact samples scored the same way) beside it: ``make bench`` uses
n = 4096 samples per point (``--quick``: 1024), where the floor is below the errors being compared, so
"the NFE needed to reach error e" is well defined. The energy distance (which also sees the modes, but
has a higher floor) is reported beside it on the first min(n, 1000) samples.

    posterior:  t -> 1 (p_{1|t}, the paper's posterior sampling)
    transition: t -> t' < 1 with rho_DDPM

Kernels: GLASS (Euler, the paper's; the t*-uniform inner grid; multistep; midpoint), the SDE of eq. 5
(Euler-Maruyama), DDPM ancestral sampling.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

import glass
from glass.metrics.oracle import energy_distance, frechet_to_moments

F64 = torch.float64

KERNELS = {
    "GLASS Euler (paper)": lambda n: glass.GLASS(n),
    "GLASS Euler, t*-grid": lambda n: glass.GLASS(n, inner_grid="time"),
    "GLASS multistep": lambda n: glass.GLASS(n, solver="multistep"),
    "GLASS midpoint": lambda n: glass.GLASS(n // 2, solver="midpoint") if n >= 2 else None,
    "SDE (eq. 5)": lambda n: glass.SDE(n),
    "DDPM ancestral": lambda n: glass.DDPM(n),
}


def measure(
    t: float = 0.2,
    t_next: float = 1.0,
    budgets=(1, 2, 4, 8, 16, 32, 64),
    points: int = 8,
    n: int = 16384,
    n_energy: int = 2000,
    seed: int = 0,
    kernels: dict | None = None,
) -> dict:
    """Errors of every kernel at every NFE budget; returns a JSON-able dict."""
    from glass.models.gmm import random_mixture

    model = random_mixture(dim=64, n_components=8, scale=1.0, std=0.3, seed=0)
    g = torch.Generator().manual_seed(seed)
    x = model.sample_marginal(points, t, g)
    mean, cov = model.transition_moments(x, t, t_next)
    x_rep = x.repeat_interleave(n, 0)
    exact = model.sample_transition(x_rep, t, t_next, generator=g).reshape(points, n, -1)
    floor = float(frechet_to_moments(exact, mean, cov).mean())
    ex2 = model.sample_transition(x.repeat_interleave(n_energy, 0), t, t_next, generator=g)
    ex3 = model.sample_transition(x.repeat_interleave(n_energy, 0), t, t_next, generator=g)
    e_floor = _energy(ex2, ex3, points, n_energy)
    scale = float(torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1).mean())
    out = {
        "t": t,
        "t_next": t_next,
        "points": points,
        "n": n,
        "n_energy": n_energy,
        "dim": 64,
        "trace_cov": scale,
        "frechet_floor": floor,
        "energy_floor": e_floor,
        "kernels": {},
    }
    for label, make in (kernels or KERNELS).items():
        rows = []
        for b in budgets:
            kernel = make(b)
            if kernel is None:
                continue
            gk = torch.Generator().manual_seed(seed + 1)
            model.reset_nfe()
            y = kernel.transition(model, x_rep, t, t_next, generator=gk).reshape(points, n, -1)
            nfe = model.reset_nfe()
            assert nfe == b, (label, b, nfe)
            fd = float(frechet_to_moments(y, mean, cov).mean())
            finite = bool(torch.isfinite(y).all())
            ref = model.sample_transition(x.repeat_interleave(n_energy, 0), t, t_next, generator=g)
            ed = (
                _energy(y[:, :n_energy].reshape(-1, y.shape[-1]), ref, points, n_energy)
                if finite
                else math.inf
            )
            rows.append({"nfe": b, "frechet": fd if finite else math.inf, "energy": ed})
        out["kernels"][label] = rows
    return out


def _energy(a: Tensor, b: Tensor, points: int, n: int) -> float:
    a, b = a.reshape(points, n, -1), b.reshape(points, n, -1)
    return sum(energy_distance(a[i], b[i]) for i in range(points)) / points


def nfe_to_reach(rows: list[dict], target: float, key: str = "frechet") -> float | None:
    """The NFE at which the error first falls to ``target``, interpolated log-log between budgets;
    None when no budget reaches it."""
    prev = None
    for r in rows:
        if r[key] <= target:
            if prev is None:
                return float(r["nfe"])
            (n0, e0), (n1, e1) = (prev["nfe"], prev[key]), (r["nfe"], r[key])
            if e1 <= 0 or e0 <= e1:
                return float(n1)
            f = math.log(e0 / target) / math.log(e0 / e1)
            return float(math.exp(math.log(n0) + f * math.log(n1 / n0)))
        prev = r
    return None
