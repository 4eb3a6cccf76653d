"""Distances between point clouds, each reported beside its data-vs-data floor."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DiffkitError


def _t(x) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    if x.ndim != 2 or len(x) < 2:
        raise DiffkitError(f"a point-cloud metric needs an [N, D] array with N >= 2, got shape {list(x.shape)}")
    return x


def energy_distance(x, y) -> float:
    """D^2 = 2 E|X - Y| - E|X - X'| - E|Y - Y'| (Szekely & Rizzo 2013, eq. 1); 0 iff same law.

    Uses the unbiased within-sample means (diagonal excluded).
    """
    x, y = _t(x), _t(y)
    n, m = len(x), len(y)
    xy = torch.cdist(x, y).mean()
    xx = torch.cdist(x, x).sum() / (n * (n - 1))
    yy = torch.cdist(y, y).sum() / (m * (m - 1))
    return float(2 * xy - xx - yy)


def mmd_rbf(x, y, scales=(0.1, 0.2, 0.5, 1.0, 2.0), bandwidth: float | None = None) -> float:
    """Unbiased MMD^2 with a sum of RBF kernels (Gretton et al. 2012, eq. 3).

    Bandwidths are `scales` x the median pairwise distance of y (the reference), so it is unit-free.
    """
    x, y = _t(x), _t(y)
    n, m = len(x), len(y)
    dyy = torch.cdist(y, y)
    h = bandwidth or float(dyy[torch.triu_indices(m, m, 1).unbind()].median())
    dxx, dxy = torch.cdist(x, x), torch.cdist(x, y)

    def k(d):
        return sum(torch.exp(-(d**2) / (2 * (s * h) ** 2)) for s in scales)

    kxx = (k(dxx).sum() - n * len(scales)) / (n * (n - 1))
    kyy = (k(dyy).sum() - m * len(scales)) / (m * (m - 1))
    return float(kxx + kyy - 2 * k(dxy).mean())


def sliced_wasserstein(x, y, n_projections: int = 128, seed: int = 0) -> float:
    """Mean over random directions of the 1-D Wasserstein-1 distance of the projections (Bonneel et al. 2015)."""
    from scipy.stats import wasserstein_distance

    x, y = _t(x).numpy(), _t(y).numpy()
    dirs = np.random.default_rng(seed).normal(size=(n_projections, x.shape[1]))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    px, py = x @ dirs.T, y @ dirs.T
    return float(np.mean([wasserstein_distance(px[:, i], py[:, i]) for i in range(n_projections)]))


def radius_stats(x) -> dict[str, float]:
    r = np.linalg.norm(np.asarray(x, np.float64), axis=1)
    return {"radius_mean": float(r.mean()), "radius_std": float(r.std())}


METRICS = {"energy": energy_distance, "mmd": mmd_rbf, "swd": sliced_wasserstein}


def evaluate_points(samples, reference, floor_reference, circle: bool = False) -> dict[str, float]:
    """Each metric of samples vs reference, and `<name>_floor`: the same metric of floor_reference
    (an independent draw of the data) vs reference, i.e. what a perfect model would score."""
    out = {}
    for name, fn in METRICS.items():
        out[name] = fn(samples, reference)
        out[f"{name}_floor"] = fn(floor_reference, reference)
    if circle:
        out.update(radius_stats(samples))
    out["n_samples"] = int(len(samples))
    out["n_reference"] = int(len(reference))
    return out
