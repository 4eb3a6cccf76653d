"""Distances between point clouds, each reported beside its data-vs-data floor."""

from __future__ import annotations

import functools
import math

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


def _pair_sum(sorted_values: np.ndarray) -> np.ndarray:
    """sum_{i<j} |v_i - v_j| along the last axis of ascending values: sum_k v_k (2k - n + 1), k from 0."""
    n = sorted_values.shape[-1]
    return sorted_values @ (2 * np.arange(n, dtype=np.float64) - (n - 1))


def projected_energy_distance(x, y, n_projections: int = 256, seed: int = 0, batch: int = 16) -> float:
    """The energy distance of `energy_distance`, in O(N log N) per direction instead of O(N^2): for large clouds.

    |v| = c_D E_u |<u, v>| over unit directions u (for D = 2, c_2 = pi / 2), so D^2 = c_D E_u D^2_1(u), where
    D^2_1(u) is the 1-D energy distance of the projections (Szekely & Rizzo 2013, section 3). Each 1-D term is
    exact by sorting; the mean over u uses evenly spaced angles for D = 2 (a smooth periodic integrand: 256
    angles agree with the O(N^2) value to ~1e-7) and `n_projections` random directions otherwise.
    """
    x, y = _t(x).numpy(), _t(y).numpy()
    if x.shape[1] != y.shape[1]:
        raise DiffkitError(f"both point clouds need the same dimension, got {x.shape[1]} and {y.shape[1]}")
    n, m, d = len(x), len(y), x.shape[1]
    if d == 1:
        dirs = np.ones((1, 1))
    elif d == 2:
        angle = np.arange(n_projections) * (math.pi / n_projections)
        dirs = np.stack([np.cos(angle), np.sin(angle)], 1)
    else:
        dirs = np.random.default_rng(seed).normal(size=(n_projections, d))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    # c_D = 1 / E_u |u_1| = sqrt(pi) Gamma((D + 1) / 2) / Gamma(D / 2)
    c = math.sqrt(math.pi) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))
    total = 0.0
    for i in range(0, len(dirs), batch):
        px, py = dirs[i:i + batch] @ x.T, dirs[i:i + batch] @ y.T  # [P, N], [P, M]
        sxx, syy = _pair_sum(np.sort(px)), _pair_sum(np.sort(py))
        sxy = _pair_sum(np.sort(np.concatenate([px, py], 1))) - sxx - syy  # the cross pairs
        total += float(np.sum(2 * sxy / (n * m) - 2 * sxx / (n * (n - 1)) - 2 * syy / (m * (m - 1))))
    return c * total / len(dirs)


def _kernel_sum(d2: torch.Tensor, scales, h: float) -> float:
    """Sum over the matrix of the RBF kernels at squared distances d2, through one scratch matrix."""
    scratch, total = torch.empty_like(d2), 0.0
    for s in scales:
        total += float(torch.mul(d2, -1.0 / (2 * (s * h) ** 2), out=scratch).exp_().sum())
    return total


@functools.lru_cache(maxsize=4)
def _reference_terms(y_bytes: bytes, m: int, scales: tuple, bandwidth: float | None) -> tuple[float, float]:
    """(bandwidth h, the mean kernel over the reference's distinct pairs) for a reference cloud, kept for the next
    call: the sample and every floor draw are scored against the same reference."""
    y = torch.from_numpy(np.frombuffer(y_bytes, dtype=np.float64).reshape(m, -1).copy())
    dyy = torch.cdist(y, y)
    # the (lower) median of the K = m (m - 1) / 2 distinct pairs, as torch.median of the upper triangle gives it:
    # sorted, dyy holds the diagonal's m zeros, then each pair twice, so the pairs' (K - 1) // 2-th (from 0) is
    # dyy's (m + 2 ((K - 1) // 2) + 1)-th smallest (from 1); no index tensors of the K pairs
    pairs = m * (m - 1) // 2
    h = bandwidth or float(torch.kthvalue(dyy.flatten(), m + 2 * ((pairs - 1) // 2) + 1).values)
    return h, (_kernel_sum(dyy.square_(), scales, h) - m * len(scales)) / (m * (m - 1))


def mmd_rbf(x, y, scales=(0.1, 0.2, 0.5, 1.0, 2.0), bandwidth: float | None = None) -> float:
    """Unbiased MMD^2 with a sum of RBF kernels (Gretton et al. 2012, eq. 3).

    Bandwidths are `scales` x the median pairwise distance of y (the reference), so it is unit-free. Each squared
    distance matrix is made once and summed through one scratch matrix (at 4,000 points a matrix is 128 MB: a fresh
    one for every kernel and power cost the README's demo 40 s of page faults), and the reference's own terms are
    kept for the next call against it (the floor draws).
    """
    x, y = _t(x), _t(y)
    n = len(x)
    h, kyy = _reference_terms(y.numpy().tobytes(), len(y), tuple(scales), bandwidth)
    kxx = (_kernel_sum(torch.cdist(x, x).square_(), scales, h) - n * len(scales)) / (n * (n - 1))
    return float(kxx + kyy - 2 * _kernel_sum(torch.cdist(x, y).square_(), scales, h) / (n * len(y)))


def sliced_wasserstein(x, y, n_projections: int = 128, seed: int = 0) -> float:
    """Mean over random directions of the 1-D Wasserstein-1 distance of the projections (Bonneel et al. 2015)."""
    from scipy.stats import wasserstein_distance

    x, y = _t(x).numpy(), _t(y).numpy()
    dirs = np.random.default_rng(seed).normal(size=(n_projections, x.shape[1]))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    px, py = x @ dirs.T, y @ dirs.T
    if len(x) == len(y):  # equal sizes: W1 is the mean gap between the sorted projections, every direction at once
        return float(np.mean(np.abs(np.sort(px, axis=0) - np.sort(py, axis=0))))
    return float(np.mean([wasserstein_distance(px[:, i], py[:, i]) for i in range(n_projections)]))


def radius_stats(x) -> dict[str, float]:
    r = np.linalg.norm(np.asarray(x, np.float64), axis=1)
    return {"radius_mean": float(r.mean()), "radius_std": float(r.std())}


METRICS = {"energy": energy_distance, "mmd": mmd_rbf, "swd": sliced_wasserstein}
# beyond this many points per cloud the O(N^2) metrics switch: energy to its O(N log N) projected form (equal to
# ~1e-7 in 2-D), MMD to a random subset of this size (its N x N kernel matrices: 3 x 200 MB at 5,000 points)
EXACT_MAX = 5000
FLOOR_DRAWS = 5


def _metrics_for(n: int) -> dict:
    if n <= EXACT_MAX:
        return METRICS

    def mmd_subset(x, y):
        rx, ry = np.random.default_rng(0).permutation(len(x))[:EXACT_MAX], np.random.default_rng(1).permutation(len(y))[:EXACT_MAX]
        return mmd_rbf(np.asarray(x)[rx], np.asarray(y)[ry])

    return {"energy": projected_energy_distance, "mmd": mmd_subset, "swd": sliced_wasserstein}


def metric_memory(n: int, m: int) -> int:
    """Bytes the point metrics hold at once for n samples against m reference points (float64)."""
    if max(n, m) <= EXACT_MAX:
        return 8 * 4 * max(n, m) ** 2  # cdist matrices and their kernels
    return 8 * (16 * 3 * (n + m) + 2 * EXACT_MAX**2 * 4)  # 16 projections of both clouds, sorted; MMD's subset


def evaluate_points(samples, reference, floor_references, circle: bool = False) -> dict[str, float]:
    """Each metric of samples vs reference, and `<name>_floor` / `<name>_floor_std`: the mean and spread of the
    same metric over independent draws of real data (floor_references, each disjoint from the reference) vs the
    reference, i.e. what a perfect model would score and how much that varies."""
    if isinstance(floor_references, np.ndarray):
        floor_references = [floor_references]
    out = {}
    metrics = _metrics_for(max(len(samples), len(reference)))
    for name, fn in metrics.items():
        out[name] = fn(samples, reference)
        floors = [fn(f, reference) for f in floor_references]
        out[f"{name}_floor"] = float(np.mean(floors))
        out[f"{name}_floor_std"] = float(np.std(floors, ddof=1)) if len(floors) > 1 else 0.0
    if circle:
        out.update(radius_stats(samples))
    out["n_samples"] = len(samples)
    out["n_reference"] = len(reference)
    out["floor_draws"] = len(floor_references)
    return out
