"""Data: built-in 2-D point clouds, user point files, and the normalizer."""

from .normalize import Normalizer
from .points import DATASETS, PointSource, load_points, make_dataset

__all__ = ["DATASETS", "Normalizer", "PointSource", "load_points", "make_dataset"]
