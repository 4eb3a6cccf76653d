"""Image sample quality, measured in the feature space of a data set's judge (metrics/judge.py).

- Classifier-feature Frechet distance (FD): the Frechet distance between Gaussians fit to the judge's
  penultimate features of samples and of the test split (Heusel et al. 2017, sec. 3; with a small
  classifier instead of Inception, like the "Frechet LeNet distance"). Not Inception FID: compare it only
  with numbers from the same judge, and read it against `fd_floor`, the FD of as many real train images.
- Precision / recall (Kynkaanniemi et al. 2019) and coverage (Naeem et al. 2020) from k-NN balls in the
  same feature space (metrics/classes.py), with their train-split floors.
- Class accuracy: the share of samples the judge assigns to the class each was asked for, read against
  `judge_accuracy`, the judge's own test accuracy (its ceiling).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..errors import DataError
from .classes import precision_recall_coverage


def _sqrtm_product(s_a: np.ndarray, s_b: np.ndarray, eps: float) -> np.ndarray:
    """(S_a S_b)^{1/2}, real; retried with eps * I added to both when singular or clearly complex."""
    from scipy.linalg import LinAlgWarning, sqrtm

    offset = eps * max(1.0, float(np.mean(np.diag(s_a)) + np.mean(np.diag(s_b))) / 2) * np.eye(len(s_a))
    for shift in (0.0, 1.0):
        with warnings.catch_warnings():  # "singular" (a dead feature) is common and checked just below
            warnings.simplefilter("ignore", LinAlgWarning)
            root = sqrtm((s_a + shift * offset) @ (s_b + shift * offset))
        if np.isfinite(root).all() and np.abs(np.imag(np.diag(root))).max() <= 1e-3 * max(1.0, np.abs(root).max()):
            break
    return np.real(root)


def frechet_distance(feats_a, feats_b, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians fit to two feature sets [N, F] (Heusel et al. 2017, sec. 3):
    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}), in float64, >= 0."""
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise DataError(f"the Frechet distance needs two feature sets [N, F] with the same F and N >= 2; "
                        f"got {a.shape} and {b.shape}")
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    with threadpool_limits(1, user_api="blas"):  # F x F is small: threaded BLAS on a busy machine is 100x slower
        s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
        root = _sqrtm_product(s_a, s_b, eps)
    d_mu = a.mean(0) - b.mean(0)
    fd = d_mu @ d_mu + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(root)
    return float(max(fd, 0.0))


def check_images(samples, data, what: str = "image samples") -> np.ndarray:
    """samples as float32 [N, C, H, W] clipped to [0, 1]; DataError unless the shape is data's and all finite."""
    x = np.asarray(samples.detach().cpu() if hasattr(samples, "detach") else samples, dtype=np.float32)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(data.shape):
        raise DataError(f"{what} must have shape [N, {', '.join(map(str, data.shape))}] to match "
                        f"{data.spec!r}; got {list(x.shape)}")
    bad = int((~np.isfinite(x)).reshape(len(x), -1).any(1).sum())
    if bad:
        raise DataError(f"{what} must be finite; {bad} of {len(x)} hold NaN or infinity")
    return np.clip(x, 0.0, 1.0)


def evaluate_images(samples, data, judge, *, labels=None, seed: int = 0, k: int = 5) -> dict:
    """Score image samples against an ImageData's test split in its judge's feature space.

    Args:
        samples: float [N, C, H, W] in [0, 1] (values outside are clipped), the shape of `data`.
        data: the ImageData the samples imitate; its test split is the reference, its train split the floor.
        judge: that data set's ImageJudge (`load_or_train_judge(data)`).
        labels: optional int [N], the class each sample was asked for; adds class accuracy.
        seed: picks the random train subset of the floor (as many images as samples).
        k: neighbours of the precision / recall balls.

    Returns: {"n", "fd", "precision", "recall", "coverage"} (samples vs test split), the same with a
    "_floor" suffix (a random train subset of N images vs the test split: what real images score), and,
    with labels, "class_accuracy" and "judge_accuracy" (the judge's test accuracy, the ceiling).
    """
    x = check_images(samples, data)
    n = len(x)
    if n <= k:
        raise DataError(f"evaluate_images needs more than k={k} samples for its nearest-neighbour balls; got {n}")
    rng = np.random.default_rng(seed)
    train = data.train if n >= len(data.train) else data.train[np.sort(rng.choice(len(data.train), n, replace=False))]
    f_samples, f_train, f_test = judge.embed(x), judge.embed(train), judge.embed(data.test)  # [N, F]
    out = {"n": n, "fd": frechet_distance(f_samples, f_test), "fd_floor": frechet_distance(f_train, f_test)}
    out.update(precision_recall_coverage(f_samples, f_test, k))
    out.update({f"{name}_floor": v for name, v in precision_recall_coverage(f_train, f_test, k).items()})
    if labels is not None:
        y = np.asarray(labels)
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= data.num_classes:
            raise DataError(f"labels must be {n} integers in 0..{data.num_classes - 1}, one per sample; "
                            f"got {y.dtype} {list(y.shape)}")
        out["class_accuracy"] = float((judge.predict(x) == y).mean())
        out["judge_accuracy"] = judge.test_accuracy
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1], over the whole set: 10 log10(1 / MSE)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)
