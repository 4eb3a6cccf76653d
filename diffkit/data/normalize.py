"""Normalizer: fit per-dimension mean and std on data; map samples back."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Normalizer:
    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, x: np.ndarray) -> Normalizer:
        """Standardise each dimension; a constant dimension keeps scale 1."""
        x = np.asarray(x, dtype=np.float64)
        std = x.std(0)
        std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(x).max(0)), std, 1.0)
        return cls(mean=x.mean(0).tolist(), std=std.tolist())

    def apply(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) / self.std).astype(np.float32)

    def invert(self, z: np.ndarray) -> np.ndarray:
        return (np.asarray(z, np.float64) * self.std + self.mean).astype(np.float32)

    def to_config(self) -> dict:
        return asdict(self)
