"""Figures of a run: samples over the exact density (d = 2) or a 2-D projection beside exact
samples (d > 2). Matplotlib with the Agg backend, imported lazily."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

__all__ = ["plot_result"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _pca(reference: Tensor) -> tuple[Tensor, Tensor]:
    center = reference.mean(0)
    _, _, v = torch.linalg.svd(reference - center, full_matrices=False)
    return center, v[:2].T


def _density_panel(ax, logp, samples: Tensor, lim: float, title: str, n_show: int = 1500):
    grid = torch.linspace(-lim, lim, 200, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    dens = logp(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)).exp().reshape(200, 200)
    ax.contourf(xx.numpy(), yy.numpy(), dens.numpy(), levels=20, cmap="Greys")
    s = samples[:n_show].numpy()
    ax.scatter(s[:, 0], s[:, 1], s=3, c="tab:red", alpha=0.5, linewidths=0)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", title=title)


def _projection_panel(ax, samples: Tensor, reference: Tensor, title: str, n_show: int = 1500):
    center, basis = _pca(reference)
    r = ((reference[:n_show] - center) @ basis).numpy()
    s = ((samples[:n_show] - center) @ basis).numpy()
    ax.scatter(r[:, 0], r[:, 1], s=3, c="0.5", alpha=0.5, linewidths=0, label="exact")
    ax.scatter(s[:, 0], s[:, 1], s=3, c="tab:red", alpha=0.5, linewidths=0, label="sampler")
    ax.set(title=title, xlabel="PC 1 of exact samples", ylabel="PC 2")
    ax.legend(loc="upper right", markerscale=4, fontsize=8)


def plot_result(model, task, result, title: str, path: Path) -> Path:
    """Write the run's figure to ``path`` (PNG) and return it.

    Generation: samples over the exact density (d = 2) or a 2-D projection beside exact samples.
    Posterior: the same for all conditioning points (coloured by point, x_t marked), plus the first
    point's exact posterior against its samples.
    """
    plt = _plt()
    two_d = result.samples.shape[1] == 2 and hasattr(model, "log_prob")
    posterior = "point" in result.extra
    fig, axes = plt.subplots(1, 2 if posterior else 1, figsize=(10 if posterior else 5, 5), squeeze=False)
    ax0 = axes[0, 0]
    if not posterior:
        if two_d:
            lim = float(result.reference.abs().max()) * 1.15
            _density_panel(ax0, model.log_prob, result.samples, lim, "samples over the exact data density")
        else:
            _projection_panel(
                ax0, result.samples, result.reference, f"2-D projection (d = {result.samples.shape[1]})"
            )
    else:
        point, x_t = result.extra["point"], result.extra["x_t"]
        first = point == 0
        if two_d:
            lim = float(torch.cat([result.reference, x_t]).abs().max()) * 1.15
            _density_panel(
                ax0, model.log_prob, result.samples[:0], lim, f"posterior samples at {len(x_t)} points x_t"
            )
            s = result.samples.numpy()
            ax0.scatter(s[:, 0], s[:, 1], s=3, c=point.numpy(), cmap="tab10", alpha=0.5, linewidths=0)
            ax0.scatter(
                x_t[:, 0].numpy(),
                x_t[:, 1].numpy(),
                c=range(len(x_t)),
                cmap="tab10",
                marker="X",
                s=70,
                edgecolors="k",
                label="x_t",
            )
            ax0.legend(loc="upper right", fontsize=8)
            x0 = x_t[:1]
            _density_panel(
                axes[0, 1],
                lambda z: model.posterior_log_prob(z, x0, task.t),
                result.samples[first],
                lim,
                f"first x_t (t = {task.t:g}): exact posterior vs samples",
            )
            axes[0, 1].scatter(
                [float(x0[0, 0])], [float(x0[0, 1])], marker="X", c="tab:blue", s=70, edgecolors="k"
            )
        else:
            d = result.samples.shape[1]
            _projection_panel(ax0, result.samples, result.reference, f"all points, 2-D projection (d = {d})")
            _projection_panel(
                axes[0, 1],
                result.samples[first],
                result.reference[first],
                f"first x_t (t = {task.t:g}): posterior, projected",
            )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
