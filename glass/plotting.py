"""Figures of a run (see :func:`plot_result`). Matplotlib with the Agg backend, imported lazily."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from glass import figtext
from glass.models.base import capabilities_of

__all__ = ["plot_result", "image_rows", "plain_log_ticks"]


def plain_log_ticks(ax) -> None:
    """A log y axis labelled in plain numbers (60, not 6 x 10^1): within one decade a few round
    numbers (1.05, 1.1, ...: 2 and 3 alone would leave most of a narrow range unlabelled); up to three
    decades the powers of ten and their 2 and 5 multiples; beyond, the powers of ten. Call it once the
    axis limits are final: it fixes them (autoscale off)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    low, high = ax.get_ylim()
    if 0 < low and high / low < 10:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
        ax.yaxis.set_minor_locator(NullLocator())
    elif 0 < low and high / low <= 1000:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.set_ylim(low, high)  # the locators must not move the limits
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(NullFormatter())


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

    - value: estimate vs ground truth, one panel per kernel;
    - images (posterior): a grid with rows original / noised x_t / one row per kernel;
      images (generate): one row of samples per kernel;
    - oracle: per kernel, samples over the exact density (d = 2) or a 2-D projection beside exact
      samples (d > 2); for the posterior also the first point's exact posterior against its samples.
    """
    plt = _plt()
    if task.name == "value":
        fig = _value_figure(plt, result)
    elif task.name == "inverse" and not capabilities_of(model).oracle:
        fig = _inverse_figure(
            plt, result, result.samples if isinstance(result.samples, dict) else {"": result.samples}
        )
    else:
        samples = result.samples if isinstance(result.samples, dict) else {"": result.samples}
        if not capabilities_of(model).oracle:
            fig = _image_figure(plt, task, result, samples, model)
        else:
            fig = _oracle_figure(plt, model, task, result, samples)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _value_figure(plt, result):
    estimates, truth = result.samples, result.reference.numpy()
    k = len(estimates)
    fig, axes = plt.subplots(1, k, figsize=(3.6 * k, 3.6), squeeze=False)
    lo, hi = float(truth.min()), float(truth.max())
    for ax, row, (label, v) in zip(axes[0], result.rows, estimates.items()):
        ax.scatter(truth, v.numpy(), s=8, alpha=0.7, linewidths=0)
        ax.plot([lo, hi], [lo, hi], c="0.5", lw=0.8, ls="--")
        ax.set(
            title=f"{figtext.label(label)}\nPearson r {row['pearson']:.3f}, Spearman ρ {row['spearman']:.3f}",
            xlabel="ground-truth $V_t$",
            ylabel="estimate",
        )
        ax.title.set_fontsize(9)
    return fig


def _pixels(model, s: Tensor) -> Tensor:
    """Samples -> pixels in [0, 1], (N, C, H, W): MNIST directly, latent models through their VAE
    (latents without a VAE: the first three channels, min-max scaled)."""
    from glass.models.mnist import to_pixels

    if capabilities_of(model).latent and getattr(model, "vae", None) is not None:
        with torch.no_grad():
            return model.decode(s.to(model.device)).float().cpu()
    if s.shape[1] in (1, 3):
        return to_pixels(s.float())
    x = s[:, :3].float()
    lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-8)


def image_rows(plt, rows, groups: int, per: int = 1, size: tuple[float, float] = (0.9, 0.95)):
    """A grid of images with a label per row: ``rows`` of (label, images (C, H, W) in [0, 1]). A row of
    ``groups`` images (when ``per`` > 1) puts one at the start of each group of ``per`` columns (an
    original beside its samples); any other row fills the columns in order. Drawn as one image on one
    axes (images of another size scaled to the largest, nearest-neighbour), which costs the same for
    ten images or a thousand, where an axes per image took 10 ms each."""
    import torch.nn.functional as F

    cols = groups * per
    images = [img for _, pix in rows for img in pix]
    h, w = max(int(i.shape[-2]) for i in images), max(int(i.shape[-1]) for i in images)
    gap = max(1, round(0.25 * max(h, w)))
    canvas = torch.ones(3, len(rows) * (h + gap) - gap, cols * (w + gap) - gap)
    for r, (_, pix) in enumerate(rows):
        spaced = per > 1 and len(pix) == groups
        for k, img in enumerate(pix):
            c = k * per if spaced else k
            if c >= cols:
                break
            img = img.detach().float().cpu()
            if tuple(img.shape[-2:]) != (h, w):
                img = F.interpolate(img[None], size=(h, w), mode="nearest")[0]
            img = img[:3] if img.shape[0] >= 3 else img[:1].expand(3, h, w)
            y, x = r * (h + gap), c * (w + gap)
            canvas[:, y : y + h, x : x + w] = img.clamp(0, 1)
    fig, ax = plt.subplots(figsize=(cols * size[0] + 1.8, len(rows) * size[1]))
    ax.imshow(canvas.permute(1, 2, 0).numpy())
    ax.set_xticks([])
    centers = [r * (h + gap) + (h - 1) / 2 for r in range(len(rows))]
    ax.set_yticks(centers, [label for label, _ in rows], fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return fig


def _image_figure(plt, task, result, samples: dict, model=None, n_cols: int = 10):
    from glass.models.mnist import to_pixels

    def to_pixels_of(s):  # noqa: F811 - MNIST, or a latent model's decoded images
        return _pixels(model, s) if model is not None else to_pixels(s.float())

    # rows of (label, pixels in [0, 1]); noisy x_t spans about [-2, 2], so it gets its own scale
    rows: list[tuple[str, Tensor]] = []
    if task.name == "posterior":
        n = len(next(iter(samples.values()))) // len(result.extra["z"])
        rows.append(("original", to_pixels(result.extra["z"][:n_cols].float())))
        rows.append((f"$x_t$, t = {task.t:g}", ((result.extra["x_t"][:n_cols].float() + 2) / 4).clamp(0, 1)))
        rows += [(figtext.label(label), to_pixels_of(s[::n][:n_cols])) for label, s in samples.items()]
    else:
        rows += [(figtext.label(label), to_pixels_of(s[:n_cols])) for label, s in samples.items()]
    return image_rows(plt, rows, max(len(r[1]) for r in rows))


POINTS_SHOWN = 4  # posterior figures: samples of this many points x_t, one colour each


def _posterior_panel(ax, model, s, point, x_t, reference, lim, title, shown, marker="x_t"):
    """Posterior samples of the first ``shown`` points x_t, one colour per point, with the point.

    Each point's exact posterior samples in a light tint of its colour; d = 2: over the exact data
    density (grey), with the point marked; d > 2: in the exact samples' 2-D PCA projection."""
    import matplotlib.colors as mcolors

    colors = [mcolors.to_rgb(c) for c in ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange")]
    two_d = reference.shape[1] == 2
    if two_d:
        _density_panel(ax, model.log_prob, s[:0], lim, title)
        project = lambda v: v  # noqa: E731
    else:
        center, basis = _pca(reference)
        project = lambda v: (v - center) @ basis  # noqa: E731
        ax.set(title=title, xlabel="PC 1 of exact posterior samples", ylabel="PC 2")
    for i in range(shown):
        c = colors[i % len(colors)]
        mine = point == i
        r = project(reference[mine][:400]).numpy()  # the exact posterior's samples, a light tint
        tint = tuple(0.55 + 0.45 * v for v in c)
        ax.scatter(r[:, 0], r[:, 1], s=5, color=tint, alpha=0.6, linewidths=0)
        p = project(s[mine][:400]).numpy()
        ax.scatter(p[:, 0], p[:, 1], s=6, color=c, alpha=0.7, linewidths=0)
        if two_d:
            ax.scatter([float(x_t[i, 0])], [float(x_t[i, 1])], color=c, marker="X", s=90, edgecolors="k")
    handles = [ax.scatter([], [], color="0.75", s=12, label="exact posterior (light)"),
               ax.scatter([], [], color="0.3", s=12, label="sampler (dark)")]  # fmt: skip
    if two_d:
        handles.append(ax.scatter([], [], color="k", marker="X", s=60, label=marker))
    ax.legend(handles=handles, loc="upper right", fontsize=8)


def _inverse_figure(plt, result, samples: dict, n_images: int = 4, per_image: int = 3):
    """Inverse problems on images: per observed image (columns grouped), the original, the measurement y
    as an image, then ``per_image`` posterior samples of each method (rows)."""
    from glass.models.mnist import to_pixels

    extra = result.extra
    n_img = min(n_images, len(extra["originals"]))
    k = extra["samples_per_image"]
    per = min(per_image, k)
    rows = [("original", [to_pixels(extra["originals"][i]) for i in range(n_img)]),
            ("y", [to_pixels(extra["observations"][i]) for i in range(n_img)])]  # fmt: skip
    for label, s in samples.items():
        pix = [to_pixels(s[i * k + j].float()) for i in range(n_img) for j in range(per)]
        rows.append((figtext.label(label) if label else "samples", pix))
    fig = image_rows(plt, rows, n_img, per, size=(0.8, 0.85))
    problem = figtext.label(extra["problem"])
    fig.text(0.5, 0.005, f"{problem}: {per} of {k} samples per measurement", ha="center", fontsize=8)
    return fig


def _oracle_figure(plt, model, task, result, samples: dict):
    posterior = task.name in ("posterior", "inverse")
    fig, axes = plt.subplots(1, len(samples), figsize=(5 * len(samples), 5), squeeze=False)
    d = result.reference.shape[1]
    two_d = d == 2 and capabilities_of(model).oracle
    for ax, (label, s) in zip(axes[0], samples.items()):
        name = f"{figtext.label(label)}: " if label else ""
        if not posterior:
            if two_d:
                lim = float(result.reference.abs().max()) * 1.15
                _density_panel(ax, model.log_prob, s, lim, f"{name}samples over the exact data density")
            else:
                _projection_panel(ax, s, result.reference, f"{name}2-D projection (d = {d})")
            continue
        point, x_t = result.extra["point"], result.extra["x_t"]  # inverse: x_t holds the originals x_0
        shown = min(POINTS_SHOWN, len(x_t))
        lim = float(torch.cat([result.reference, x_t]).abs().max()) * 1.15
        where = "" if two_d else f", 2-D projection of d = {d}"
        if task.name == "inverse":
            problem = figtext.label(result.extra["problem"])
            title = f"{name}{problem}: posterior samples\nfor {shown} of {len(x_t)} measurements y{where}"
        else:
            title = f"{name}posterior samples\nat {shown} of {len(x_t)} points x_t (t = {task.t:g}){where}"
        marker = "x_0 (the original)" if task.name == "inverse" else "x_t"
        _posterior_panel(ax, model, s, point, x_t, result.reference, lim, title, shown, marker)
        ax.title.set_fontsize(9)
    return fig
