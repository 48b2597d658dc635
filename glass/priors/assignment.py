"""Exact-assignment check of a coupling (Malnick et al., arXiv 2606.04092): is pairing each x1 with
its own prior sample x0 what optimal transport would do? Solve the assignment problem on a subset (scipy's
``linear_sum_assignment`` on squared Euclidean costs) and report the fraction of pairs it keeps."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["kept_fraction"]


def kept_fraction(x0: Tensor, x1: Tensor) -> float:
    """Fraction of i whose optimal-transport partner (minimum total squared distance over all
    bijections) is x1[i] itself: 1 when the identity coupling is optimal."""
    from scipy.optimize import linear_sum_assignment

    if len(x0) != len(x1):
        raise ValueError(f"need as many prior samples as data samples, got {len(x0)} and {len(x1)}")
    cost = torch.cdist(x0.reshape(len(x0), -1).double(), x1.reshape(len(x1), -1).double()).pow(2)
    rows, cols = linear_sum_assignment(cost.numpy())
    return float((torch.as_tensor(cols) == torch.as_tensor(rows)).double().mean())
