"""Figures: the oracle posterior figure shows which samples belong to which x_t."""

import itertools
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch

from glass.models.gmm import random_mixture, ring
from glass.plotting import POINTS_SHOWN, _oracle_figure, _pca, _plt

matplotlib.use("Agg")


@pytest.mark.parametrize("d", [2, 5])
def test_posterior_figure_colours_each_point_and_its_samples(d):
    model = ring() if d == 2 else random_mixture(dim=d)
    points, n = 6, 30
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(points, d, generator=g)
    s = torch.randn(points * n, d, generator=g)
    point = torch.arange(points).repeat_interleave(n)
    result = SimpleNamespace(reference=torch.randn(points * n, d, generator=g),
                             extra={"x_t": x_t, "point": point})  # fmt: skip
    task = SimpleNamespace(name="posterior", t=0.3)
    fig = _oracle_figure(_plt(), model, task, result, {"glass M=2": s, "sde M=2": s + 1})
    for ax, shift in zip(fig.axes, (0, 1)):
        assert f"at {POINTS_SHOWN} of {points} points x_t (t = 0.3)" in ax.get_title()
        scatters = [c for c in ax.collections if len(c.get_offsets())]
        # the sampler's scatters: one per shown point, one colour each, offsets = that point's samples
        sampler = [c for c in scatters if len(c.get_offsets()) == n]
        # exact posterior samples are drawn in a light tint of the same colour; the sampler's are not
        tinted = [c for c in sampler if min(c.get_facecolor()[0][:3]) >= 0.55]
        sampler = [c for c in sampler if min(c.get_facecolor()[0][:3]) < 0.55]
        assert len(tinted) == POINTS_SHOWN
        assert len(sampler) == POINTS_SHOWN
        for i, c in enumerate(sampler):
            mine = (s + shift)[point == i]
            if d > 2:  # projected on the exact samples' first two principal axes
                center, basis = _pca(result.reference)
                mine = (mine - center) @ basis
            np.testing.assert_allclose(c.get_offsets(), mine.numpy(), rtol=1e-5, atol=1e-6)
        assert len({tuple(c.get_facecolor()[0][:3]) for c in sampler}) == POINTS_SHOWN
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_image_rows_places_each_image_in_its_cell_on_one_canvas():
    """One canvas: row r, column c holds the image given there (grouped rows at the start of each
    group), a smaller image scaled up to the cell, grey images in all three channels, empty cells and
    gaps white; the row labels are the y tick labels."""
    from glass.plotting import image_rows

    plt = _plt()
    value = lambda v, c=1, s=4: torch.full((c, s, s), v)  # noqa: E731
    rows = [("originals", [value(0.1), value(0.2, s=2)]),  # 2 groups of 3: at columns 0 and 3
            ("samples", [value(0.3 + 0.1 * k, c=3) for k in range(6)]),
            ("short", [value(0.05)])]  # fmt: skip
    fig = image_rows(plt, rows, groups=2, per=3)
    (ax,) = fig.axes
    canvas = np.asarray(ax.get_images()[0].get_array())
    gap = 1
    assert canvas.shape == (3 * 4 + 2 * gap, 6 * 4 + 5 * gap, 3)

    def cell(r, c):
        y, x = r * (4 + gap), c * (4 + gap)
        return canvas[y : y + 4, x : x + 4]

    np.testing.assert_allclose(cell(0, 0), 0.1)
    np.testing.assert_allclose(cell(0, 3), 0.2)  # a 2 x 2 image scaled to the 4 x 4 cell
    for c in (1, 2, 4, 5):
        np.testing.assert_allclose(cell(0, c), 1.0)  # the rest of each group: empty
    for k in range(6):
        np.testing.assert_allclose(cell(1, k), 0.3 + 0.1 * k, rtol=1e-6)
    np.testing.assert_allclose(cell(2, 0), 0.05)
    np.testing.assert_allclose(cell(2, 1), 1.0)
    np.testing.assert_allclose(canvas[4, :, :], 1.0)  # the gap between rows
    assert [t.get_text() for t in ax.get_yticklabels()] == ["originals", "samples", "short"]
    plt.close(fig)


def test_report_panels_are_titled_in_words_and_fit(tmp_path, monkeypatch):
    """A reproduction plot: a facet by variant is titled by the variant's label alone, other facets
    as "t = 0.05"; a long panel title wraps inside its panel; a log axis reads 60, not 6 x 10^1."""
    import matplotlib.pyplot as plt

    from glass.report import _plot

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figures to look at
    grid = itertools.product(("truth: GLASS", "truth: SDE"), (0.05, 0.2), (2, 4), (0, 1))
    rows = [{"variant": v, "task.t": t, "steps": m, "seed": s, "fid": 50 + m + s + t} for v, t, m, s in grid]
    long = "energy distance to the exact target of every point (mean ± se over seeds)"
    _plot(rows, {"x": "steps", "y": "fid", "facet": "variant", "logy": True}, tmp_path / "a.png", "T")
    _plot(rows, {"x": "steps", "y": "fid", "facet": "task.t"}, tmp_path / "b.png", "T")
    _plot(rows, {"x": "steps", "y": "fid", "title": long}, tmp_path / "c.png", "T")
    by_variant, by_t, single = ([ax.get_title() for ax in fig.axes] for fig in figures)
    assert by_variant == ["truth: GLASS", "truth: SDE"] and by_t == ["t = 0.05", "t = 0.2"]
    assert single[0].replace("\n", " ") == long and "\n" in single[0]
    figures[2].canvas.draw()
    (ax,) = figures[2].axes
    box, panel = ax.title.get_window_extent(), ax.get_window_extent()
    assert panel.x0 - 20 <= box.x0 and box.x1 <= panel.x1 + 20  # within its panel (give or take a margin)
    labels = [t.get_text() for t in figures[0].axes[0].yaxis.get_ticklabels(which="both") if t.get_text()]
    assert labels and all("10^" not in s and "times" not in s for s in labels), labels
    monkeypatch.undo()
    for fig in figures:
        plt.close(fig)


def test_report_figures_say_methods_metrics_and_the_run_in_words(tmp_path, monkeypatch):
    """Figure text, not config names: metrics (fid -> FID), kernels (glass -> GLASS (rho_DDPM), the
    default), rewards (superres -> super-resolution); sums in parentheses on a paired plot; a log axis
    of methods draws points (a bar's length there depends on where the axis starts), with the
    reference level drawn; the suptitle names the model and scale (small and large runs differ);
    titles never wrap inside a parenthesis."""
    import shutil

    import matplotlib.pyplot as plt

    from glass.figtext import label as _label
    from glass.figtext import wrap as _wrap
    from glass.report import _plot, report_from_summary

    names = ("glass", "glass(rho=0.4)", "sde", "superres", "ddpm^0.5", "rho_DDPM^kappa", "truth: GLASS")
    assert [_label(v) for v in names] == [
        r"GLASS ($\rho_\mathrm{DDPM}$)", "GLASS (ρ = 0.4)", "SDE", "super-resolution",
        r"$\rho_\mathrm{DDPM}^{0.5}$", r"$\rho_\mathrm{DDPM}^{\kappa}$", "truth: GLASS"]  # fmt: skip
    assert _label("5 transitions x 10 steps") == "5 transitions × 10 steps"
    assert _label("glass(kappa=0.5) M=8") == "GLASS (κ = 0.5) M = 8"
    assert _label("ddpm^-0.5") == r"$\rho_\mathrm{DDPM}^{-0.5}$"  # a negative power, no raw caret
    for kept in (r"constant $\rho$ sweep", "$V_t$ estimates", "N(0, I)", "fks-glass", "x=ode", "mode 2x2"):
        assert _label(kept) == kept  # formulas already written, and words that only contain a name
    lines = _wrap(_label("FKS-GLASS (ddpm) vs a long tail"), 12).split("\n")
    assert any(r"$\rho_\mathrm{DDPM}$" in line for line in lines)  # a formula stays whole
    wrapped = _wrap("steered reward (MNIST: log p(class 0 | x)) at equal NFE (paper Fig. 7)", 24)
    assert "(class 0 | x)" in wrapped and "Fig. 7" in wrapped and "\n" in wrapped

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figures to look at
    grid = itertools.product(enumerate(("guidance, SDE", "FK, GLASS")), ("inpaint", "superres"), (0, 1))
    rows = [{"variant": v, "reward": r, "seed": s, "consistency": 1.2 + k + 0.1 * s} for (k, v), r, s in grid]
    spec = {"x": "variant", "y": "consistency", "facet": "reward", "logy": True, "ref": 1,
            "ref_label": "1: ideal"}  # fmt: skip
    _plot(rows, spec, tmp_path / "a.png", "T")
    directory = tmp_path / "large"
    directory.mkdir()
    root = Path(__file__).resolve().parents[1]
    shutil.copy(root / "experiments/results/reproduce/table4-sampling/large/summary.csv", directory)
    report_from_summary(directory, "table4-sampling", "large")
    monkeypatch.undo()
    (consistency, paired) = figures
    assert [ax.get_title() for ax in consistency.axes] == ["inpainting", "super-resolution"]
    for ax in consistency.axes:
        assert not ax.patches and ax.get_ylabel() == "measurement consistency"  # points, not bars
        assert any(list(line.get_ydata()) == [1.0, 1.0] for line in ax.get_lines())  # the reference level
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["1: ideal"]
    title = paired.get_suptitle().replace("\n", " ")
    assert "model mnist_v4, scale large" in title and "5 transitions × 10 steps" in title
    (ax,) = paired.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == r"GLASS ($\rho_\mathrm{DDPM}$) − SDE" and labels[1] == "GLASS (ρ = 0.4) − SDE"
    assert ax.get_xlabel().startswith("FID: a − b")
    for fig in figures:
        plt.close(fig)


def test_loss_plot_of_a_continuation_counts_its_steps_from_the_checkpoint_it_continues(tmp_path, monkeypatch):
    """A fine-tuning run's loss curve starts at the step after its init checkpoint's (a v4 curve
    plotted from 0 read as a model trained 7,200 steps in all), in plain numbers."""
    import matplotlib.pyplot as plt

    from glass.train.common import plot_losses

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    plot_losses([2.0 / (k + 1) for k in range(300)], tmp_path / "loss.png", "t", first_step=25_682)
    monkeypatch.undo()
    (fig,) = figures
    (ax,) = fig.axes
    per_step, mean = ax.get_lines()
    assert per_step.get_xdata()[0] == 25_683 and per_step.get_xdata()[-1] == 25_982
    assert mean.get_xdata()[0] == 25_683 + 2  # a running mean of 3 steps ends at its third step
    assert (tmp_path / "loss.png").is_file()
    plt.close(fig)


def test_training_losses_are_saved_as_numbers_that_redraw_the_curve(tmp_path, monkeypatch):
    """``losses.csv`` holds every step's loss under its step number (a continuation's from its
    checkpoint's next step); read back, it redraws the same curve; anything else is refused."""
    import matplotlib.pyplot as plt

    from glass.train.common import plot_losses, read_losses, save_losses

    losses = [2.0 / (k + 1) for k in range(300)]
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    save_losses(losses, tmp_path, "t", first_step=25_682)
    lines = (tmp_path / "losses.csv").read_text().splitlines()
    assert lines[0] == "step,loss" and lines[1] == "25683,2" and lines[-1].startswith("25982,0.006666")
    back, first = read_losses(tmp_path / "losses.csv")
    assert first == 25_682 and back == pytest.approx(losses, rel=1e-5)
    plot_losses(back, tmp_path / "again.png", "t", first_step=first)
    monkeypatch.undo()
    saved, redrawn = figures
    assert len(saved.axes[0].get_lines()) == len(redrawn.axes[0].get_lines()) == 2
    for a, b in zip(saved.axes[0].get_lines(), redrawn.axes[0].get_lines()):
        assert list(a.get_xdata()) == list(b.get_xdata())
        assert a.get_ydata() == pytest.approx(b.get_ydata(), rel=1e-5)
    for fig in figures:
        plt.close(fig)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="other.csv is not a losses.csv"):
        read_losses(tmp_path / "other.csv")


def test_generic_sweep_report_names_its_panels_in_words():
    """``glass run -m`` over task.t: the summary's panels read "t = 0.2" (was "config = task.t=0.2"),
    its title the metric in words."""
    from glass.report import _generic, _panel_title

    rows = [{"overrides": f"model=gmm task.t={t} sampler.steps={m} seed={s}", "task.t": t, "steps": m,
             "seed": s, "energy": 0.1} for t in (0.2, 0.5) for m in (2, 4) for s in (0, 1)]  # fmt: skip
    spec = _generic(rows)
    (plot,) = spec["report"]["plots"]
    assert spec["title"] == "energy distance by sampler" and plot["facet"] == "config"
    assert [_panel_title(plot, "config", v) for v in dict.fromkeys(r["config"] for r in rows)] == [
        "t = 0.2", "t = 0.5"]  # fmt: skip
    rows = [{"overrides": f"model={m} +task.p={p} sampler.steps={k}", "model_cfg": m, "task.p": p,
             "steps": k, "energy": 0.1}
            for m in ("gmm", "gmm64") for p in ("a cat", "x y=z") for k in (2, 4)]  # fmt: skip
    (plot,) = _generic(rows)["report"]["plots"]  # values holding spaces and "=": nothing parsed back
    assert [_panel_title(plot, "config", v) for v in dict.fromkeys(r["config"] for r in rows)] == [
        "model = gmm, p = a cat", "model = gmm, p = x y=z", "model = gmm64, p = a cat",
        "model = gmm64, p = x y=z"]  # fmt: skip
    glass_ddpm = r"GLASS ($\rho_\mathrm{DDPM}$)"
    assert [_panel_title(plot, "sampler", v) for v in ("sde", "glass")] == ["SDE", glass_ddpm]
