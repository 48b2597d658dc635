"""Figures: the oracle posterior figure shows which samples belong to which x_t."""

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
