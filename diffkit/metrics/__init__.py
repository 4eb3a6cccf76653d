"""Sample-quality metrics."""

from .points import energy_distance, evaluate_points, mmd_rbf, radius_stats, sliced_wasserstein

__all__ = ["energy_distance", "evaluate_points", "mmd_rbf", "radius_stats", "sliced_wasserstein"]
