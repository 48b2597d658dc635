"""Distances of samples to an exactly known distribution, with their Monte-Carlo noise floor.

- Energy distance (Szekely & Rizzo 2013), V-statistic form
  ED(X, Y) = 2 E|X - Y| - E|X - X'| - E|Y - Y'| >= 0, zero iff the laws agree.
- Sliced Wasserstein-2: root mean over random unit directions of the squared W2 between the 1-D
  projections (sorted samples).

Both are biased upwards by finite samples. The *noise floor* is the same statistic between two
independent exact draws of the same size (mean and std over ``floor_repeats`` pairs): a sampler is
indistinguishable from the exact law at this sample size when its distance is within a few floor
standard deviations of the floor mean.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import torch
from torch import Tensor

__all__ = ["energy_distance", "sliced_wasserstein", "frechet_to_moments", "OracleDistance"]

Kind = Literal["energy", "sliced_w2", "both"]


def _mean_cdist(a: Tensor, b: Tensor, chunk: int = 2048) -> Tensor:
    total = torch.zeros((), dtype=torch.float64)
    for i in range(0, a.shape[0], chunk):
        total = total + torch.cdist(a[i : i + chunk], b).sum()
    return total / (a.shape[0] * b.shape[0])


def energy_distance(x: Tensor, y: Tensor) -> float:
    """V-statistic energy distance between the rows of x and of y (flattened to vectors)."""
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    y = y.reshape(y.shape[0], -1).to(torch.float64)
    return float(2 * _mean_cdist(x, y) - _mean_cdist(x, x) - _mean_cdist(y, y))


def sliced_wasserstein(x: Tensor, y: Tensor, n_projections: int = 256, seed: int = 0) -> float:
    """Sliced W2 between equally many rows of x and y, over ``n_projections`` seeded directions."""
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    y = y.reshape(y.shape[0], -1).to(torch.float64)
    if x.shape != y.shape:
        raise ValueError(f"sliced W2 needs equal sample sets, got {tuple(x.shape)} and {tuple(y.shape)}")
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(x.shape[1], n_projections, generator=gen, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, _ = torch.sort(x @ theta.to(x.device), dim=0)
    py, _ = torch.sort(y @ theta.to(y.device), dim=0)
    return float(((px - py) ** 2).mean().sqrt())


def _sqrtm_psd(a: Tensor) -> Tensor:
    vals, vecs = torch.linalg.eigh(a)
    return (vecs * vals.clamp(min=0).sqrt()[..., None, :]) @ vecs.transpose(-1, -2)


def frechet_to_moments(samples: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    """Fréchet distance (squared W2 between Gaussians) of sample sets to exact moments, per set:
    ``samples`` (P, n, d), ``mean`` (P, d), ``cov`` (P, d, d) -> (P,). Its Monte-Carlo floor (exact
    samples scored the same way) shrinks like d^2 / n; far lower than the energy distance's at equal n,
    but blind to everything beyond the first two moments."""
    samples = samples.to(torch.float64)
    m = samples.mean(1)
    xc = samples - m[:, None]
    c = xc.transpose(1, 2) @ xc / (samples.shape[1] - 1)
    r = _sqrtm_psd(cov)
    cross = _sqrtm_psd(r @ c @ r)
    tr = torch.diagonal(c + cov - 2 * cross, dim1=-2, dim2=-1).sum(-1)
    return ((m - mean) ** 2).sum(-1) + tr


class OracleDistance:
    """Metric ``oracle``: distance of samples to exact samples plus the noise floor.

    Called as ``metric(samples, exact)``, where ``exact(generator)`` draws a fresh exact sample set
    of the same size. Returns a flat dict, e.g. ``energy``, ``energy_floor``, ``energy_floor_std``.
    The exact reference set and the floor's draws come from ``seed``, the same in every run (not the
    run's seed): samplers and seeds are scored against one reference, which paired differences largely
    cancel (the energy distance's reference self-term exactly); seed-to-seed standard errors leave out
    the reference's own sampling error, a bias shared by every seed (the floor shows its size).
    """

    text_to_image = False  # scores samples alone (metric=rewards gets the model and prompts)

    def __init__(
        self,
        kind: Kind = "both",
        n_projections: int = 256,
        floor_repeats: int = 3,
        seed: int = 1234,
    ):
        if kind not in get_args(Kind):
            raise ValueError(f"metric.kind must be one of {', '.join(get_args(Kind))}, got {kind!r}")
        if not isinstance(floor_repeats, int) or floor_repeats < 2:
            raise ValueError(f"metric.floor_repeats must be an integer >= 2, got {floor_repeats!r}")
        if not isinstance(n_projections, int) or n_projections < 1:
            raise ValueError(f"metric.n_projections must be an integer >= 1, got {n_projections!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"metric.seed must be an integer >= 0, got {seed!r}")
        self.kind, self.n_projections, self.floor_repeats, self.seed = (
            kind,
            n_projections,
            floor_repeats,
            seed,
        )

    def _stats(self) -> dict[str, Callable[[Tensor, Tensor], float]]:
        out = {}
        if self.kind in ("energy", "both"):
            out["energy"] = energy_distance
        if self.kind in ("sliced_w2", "both"):
            out["sliced_w2"] = lambda a, b: sliced_wasserstein(a, b, self.n_projections)
        return out

    def __call__(self, samples: Tensor, exact: Callable[[torch.Generator], Tensor]) -> dict[str, float]:
        gen = torch.Generator().manual_seed(self.seed)
        ref = exact(gen)
        draws = [exact(gen) for _ in range(self.floor_repeats)]
        result: dict[str, float] = {}
        for name, fn in self._stats().items():
            result[name] = fn(samples, ref)
            floor = torch.tensor([fn(d, ref) for d in draws], dtype=torch.float64)
            result[f"{name}_floor"] = float(floor.mean())
            result[f"{name}_floor_std"] = float(floor.std())
        return result
