"""Agreement of value estimates with ground truth: Pearson and Spearman correlation (torchmetrics),
plus the root-mean-square error and mean bias (estimates of log-mean-exp are biased low)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Correlation"]


class Correlation:
    """Metric ``correlation``: ``metric(estimate, truth)`` over the evaluated points."""

    text_to_image = False  # scores samples alone (metric=rewards gets the model and prompts)

    def __call__(self, estimate: Tensor, truth: Tensor) -> dict[str, float]:
        from torchmetrics.functional import pearson_corrcoef, spearman_corrcoef

        if estimate.shape != truth.shape or estimate.ndim != 1 or len(estimate) < 3:
            raise ValueError(
                f"correlation needs two vectors of the same length >= 3, got {tuple(estimate.shape)} "
                f"and {tuple(truth.shape)}"
            )
        e, t = estimate.double().cpu(), truth.double().cpu()
        if not (torch.isfinite(e).all() and torch.isfinite(t).all()):
            raise ValueError("value estimates or ground truth contain NaN or Inf")
        if bool((e == e[0]).all() | (t == t[0]).all()):  # a constant vector correlates with nothing:
            pearson = spearman = float("nan")  # undefined for both (torchmetrics' Spearman said 0)
        else:
            pearson, spearman = float(pearson_corrcoef(e, t)), float(spearman_corrcoef(e, t))
        return {
            "pearson": pearson,
            "spearman": spearman,
            "rmse": float((e - t).pow(2).mean().sqrt()),
            "bias": float((e - t).mean()),
            "n_points": len(e),
        }

    def __repr__(self) -> str:
        return "Correlation()"
