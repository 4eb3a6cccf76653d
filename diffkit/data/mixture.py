"""Gaussian mixtures as data: sum_k w_k N(mu_k, S_k) in D dimensions, from a name or a JSON file.

    {"weights": [K], "means": [K][D], "covariances": [K][D][D], "labels": [K] (optional: component classes)}

A mixture is data whose noised marginals are known in closed form (diffkit.oracle); it can also be trained
on like any point set (`--data MIXTURE.json`: fresh draws, labels from the components' classes).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

MAX_COMPONENTS = 1000
MAX_DIM = 4096


SHAPES = {"weights": "[K]", "means": "[K][D]", "covariances": "[K][D][D]", "labels": "[K]"}


def _array(value, shape_name: str, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {shape_name} must be a rectangular array of numbers, "
                        f"{SHAPES[shape_name]}") from None
    if not np.isfinite(arr).all():
        raise DataError(f"{where}: {shape_name} must be finite numbers (no NaN or infinity)")
    return arr


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """sum_k weights[k] N(means[k], covariances[k]) in D dimensions; labels[k] is component k's class (optional)."""

    weights: np.ndarray      # [K]
    means: np.ndarray        # [K, D]
    covariances: np.ndarray  # [K, D, D]
    labels: np.ndarray | None = None  # int [K], classes 0..C-1 (every class used)

    @classmethod
    def from_dict(cls, spec, where: str = "the mixture") -> GaussianMixture:
        """Checked construction from {"weights": [K], "means": [K][D], "covariances": [K][D][D], "labels"?: [K]}."""
        if not isinstance(spec, dict) or not {"weights", "means", "covariances"} <= set(spec):
            raise DataError(f'{where} must be a JSON object with "weights" [K], "means" [K][D] and "covariances" '
                            f'[K][D][D] (and optionally "labels" [K])')
        extra = set(spec) - {"weights", "means", "covariances", "labels"}
        if extra:
            raise DataError(f"{where} has unknown keys {sorted(extra)}; accepted: weights, means, covariances, labels")
        w = _array(spec["weights"], "weights", where)
        mu = _array(spec["means"], "means", where)
        cov = _array(spec["covariances"], "covariances", where)
        if w.ndim != 1 or not 1 <= len(w) <= MAX_COMPONENTS:
            raise DataError(f"{where}: weights must be a list of 1..{MAX_COMPONENTS} numbers, got shape {list(w.shape)}")
        K = len(w)
        if mu.ndim != 2 or mu.shape[0] != K or not 1 <= mu.shape[1] <= MAX_DIM:
            raise DataError(f"{where}: means must be {K} lists of D numbers (1 <= D <= {MAX_DIM}) for the {K} "
                            f"weights, got shape {list(mu.shape)}")
        D = mu.shape[1]
        if cov.shape != (K, D, D):
            raise DataError(f"{where}: covariances must be {K} matrices of {D}x{D} (K components in D = {D} "
                            f"dimensions), got shape {list(cov.shape)}")
        if (w < 0).any() or abs(w.sum() - 1.0) > 1e-6:
            raise DataError(f"{where}: weights must be >= 0 and sum to 1 (within 1e-6), got sum {w.sum():.9g}")
        if not np.allclose(cov, cov.transpose(0, 2, 1), rtol=1e-9, atol=1e-12):
            raise DataError(f"{where}: every covariance must be symmetric")
        for k in range(K):
            try:
                np.linalg.cholesky(cov[k])
            except np.linalg.LinAlgError:
                raise DataError(f"{where}: covariance {k} is not positive definite (its smallest eigenvalue is "
                                f"{np.linalg.eigvalsh(cov[k]).min():.3g}); every covariance must be") from None
        labels = None
        if spec.get("labels") is not None:
            lab = _array(spec["labels"], "labels", where)
            if lab.shape != (K,) or (lab != np.round(lab)).any() or lab.min() < 0 \
                    or set(lab.astype(int)) != set(range(int(lab.max()) + 1)):
                raise DataError(f"{where}: labels must be {K} class ids 0..C-1, one per component, every class used")
            labels = lab.astype(np.int64)
        return cls(w, mu, cov, labels)

    @classmethod
    def from_json(cls, path) -> GaussianMixture:
        path = Path(path)
        try:
            spec = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(f"mixture file {path} does not exist") from None
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise DataError(f"mixture file {path} is not readable JSON ({type(e).__name__}); write an object "
                            f'with "weights", "means" and "covariances"') from None
        return cls.from_dict(spec, where=f"mixture file {path}")

    def to_dict(self) -> dict:
        out = {"weights": self.weights.tolist(), "means": self.means.tolist(), "covariances": self.covariances.tolist()}
        return out if self.labels is None else {**out, "labels": self.labels.tolist()}

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def num_classes(self) -> int:
        return 0 if self.labels is None else int(self.labels.max()) + 1

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact per-dimension mean and standard deviation of the mixture."""
        mean = self.weights @ self.means
        second = self.weights @ (np.diagonal(self.covariances, axis1=1, axis2=2) + self.means**2)
        return mean, np.sqrt(np.maximum(second - mean**2, 0.0))

    def affine(self, shift, scale) -> GaussianMixture:
        """The mixture of (x - shift) / scale (per dimension), e.g. in a run's normalized coordinates."""
        shift, scale = np.broadcast_to(shift, (self.dim,)), np.broadcast_to(scale, (self.dim,))
        return GaussianMixture(self.weights, (self.means - shift) / scale,
                               self.covariances / np.outer(scale, scale), self.labels)

    def for_class(self, c: int) -> GaussianMixture:
        """The mixture of class c's components, weights renormalized."""
        keep = self.labels == c
        w = self.weights[keep]
        return GaussianMixture(w / w.sum(), self.means[keep], self.covariances[keep])

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n points float64 [n, D] and the component each came from, int [n]."""
        k = rng.choice(len(self.weights), size=n, p=self.weights / self.weights.sum())
        z = rng.standard_normal((n, self.dim))
        chol = np.linalg.cholesky(self.covariances)  # [K, D, D]
        return self.means[k] + np.einsum("nij,nj->ni", chol[k], z), k

    def class_of(self, components: np.ndarray) -> np.ndarray | None:
        return None if self.labels is None else self.labels[components]

    def noised(self, alpha_bar: float) -> GaussianMixture:
        """q(x_t) at this alpha_bar: means a mu_k, covariances a^2 S_k + (1 - a^2) I."""
        eye = np.eye(self.dim)
        return GaussianMixture(self.weights, math.sqrt(alpha_bar) * self.means,
                               alpha_bar * self.covariances + (1 - alpha_bar) * eye, self.labels)


def gaussians8() -> GaussianMixture:
    """The `gaussians8` data set as a mixture (diffkit.data.toy2d.gaussians8): 8 equal weights, means at
    radius 2 and angles k pi / 4, isotropic std 0.1."""
    k = np.arange(8)
    means = 2.0 * np.stack([np.cos(k * np.pi / 4), np.sin(k * np.pi / 4)], 1)
    return GaussianMixture(np.full(8, 1 / 8), means, np.tile(0.01 * np.eye(2), (8, 1, 1)))


BUILTIN_MIXTURES = {"gaussians8": gaussians8}


def load_mixture(spec: str) -> GaussianMixture:
    """A built-in mixture by name (gaussians8) or a mixture JSON file."""
    if spec in BUILTIN_MIXTURES:
        return BUILTIN_MIXTURES[spec]()
    if Path(spec).suffix.lower() != ".json":
        raise DataError(f"unknown mixture {spec!r}; choose {', '.join(BUILTIN_MIXTURES)} or a mixture .json file")
    return GaussianMixture.from_json(spec)
