"""Designed priors for flow matching (Malnick et al., "Optimal Transport Flow Matching by Design",
arXiv 2606.04092)."""

from glass.priors.lowfreq import Gaussian, LowFrequency, low_pass

__all__ = ["Gaussian", "LowFrequency", "low_pass"]
