"""Metrics: distances to the exact oracle, FID for images, correlation for value estimates."""

from glass.metrics.correlation import Correlation
from glass.metrics.default import DefaultMetric, resolve_metric
from glass.metrics.fid import FID
from glass.metrics.oracle import OracleDistance, energy_distance, sliced_wasserstein

__all__ = [
    "OracleDistance",
    "FID",
    "Correlation",
    "DefaultMetric",
    "resolve_metric",
    "energy_distance",
    "sliced_wasserstein",
]
