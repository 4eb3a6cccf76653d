"""Sample-quality metrics."""

from .points import (
    energy_distance,
    evaluate_points,
    mmd_rbf,
    projected_energy_distance,
    radius_stats,
    sliced_wasserstein,
)

__all__ = ["energy_distance", "evaluate_points", "mmd_rbf", "projected_energy_distance", "radius_stats", "sliced_wasserstein"]
