"""Metrics: distances to the exact oracle (and, for images, FID)."""

from glass.metrics.oracle import OracleDistance, energy_distance, sliced_wasserstein

__all__ = ["OracleDistance", "energy_distance", "sliced_wasserstein"]
