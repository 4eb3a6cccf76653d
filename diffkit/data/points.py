"""Point data by name or by file (.npy, .npz, .csv holding an [N, 2] array), with optional class labels.

Labels come from a labeled built-in (shapes3), an .npz holding `y` [N] beside `x` [N, 2], or a CSV whose
third column is the label. They must be integers 0..C-1 with every class present.
"""

from __future__ import annotations

from dataclasses import dataclass
import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError
from .labeled import LABELED_MAKERS
from .toy2d import MAKERS

DATASETS: tuple[str, ...] = tuple(MAKERS) + tuple(LABELED_MAKERS)
FILE_SUFFIXES = (".npy", ".npz", ".csv")


def make_labeled(name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """n points of a built-in data set, float32 [n, 2], and its int64 [n] labels (None if unlabeled),
    reproducible from seed."""
    rng = np.random.default_rng(seed)
    if name in LABELED_MAKERS:
        x, y = LABELED_MAKERS[name](n, rng)
        return x.astype(np.float32), y
    if name not in MAKERS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}, or a .npy/.npz/.csv file")
    return MAKERS[name](n, rng).astype(np.float32), None


def make_dataset(name: str, n: int, seed: int) -> np.ndarray:
    """n points of a built-in data set, float32 [n, 2], reproducible from seed."""
    return make_labeled(name, n, seed)[0]


def _read_file(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False), None
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                key = "x" if "x" in z.files else (z.files[0] if z.files else None)
                if key is None:
                    raise DataError(f"{path} holds no arrays; expected an [N, 2] array (named 'x' or the only one)")
                return z[key], (z["y"] if key == "x" and "y" in z.files else None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty file is reported below as such
            table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2, comments="#")
        if table.ndim == 2 and table.shape[1] == 3:  # x, y, label
            return table[:, :2], table[:, 2]
        return table, None
    except DataError:
        raise
    except (ValueError, OSError, EOFError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "pickle" in str(e).lower():
            first = "it is not a plain numeric array file or it holds Python objects"
        raise DataError(f"cannot read {path} as {suffix[1:]} ({first}); expected a numeric [N, 2] array") from None


def load_file(path) -> np.ndarray:
    """Validated float32 [N, 2] points from a user file (labels, if any, are dropped)."""
    return load_labeled_file(path)[0]


def load_labeled_file(path) -> tuple[np.ndarray, np.ndarray | None]:
    """Validated float32 [N, 2] points and int64 [N] labels (None if the file has none)."""
    path = Path(path)
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise DataError(f"{path} is neither a dataset name ({', '.join(DATASETS)}) nor a .npy/.npz/.csv file")
    if not path.is_file():
        raise DataError(f"data file {path} does not exist; give a dataset name ({', '.join(DATASETS)}) or an existing file")
    x, y = _read_file(path)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path} holds {x.dtype} values; expected numbers in an [N, 2] array")
    if x.size == 0:
        raise DataError(f"{path} is empty; expected at least one [x, y] row")
    if x.ndim != 2 or x.shape[1] != 2:
        raise DataError(f"{path} holds an array of shape {list(x.shape)}; expected [N, 2]")
    if not np.isfinite(x).all():
        raise DataError(f"{path} contains NaN or Inf values; all coordinates must be finite")
    return x.astype(np.float32), (None if y is None else check_labels(y, len(x), str(path)))


def check_labels(y, n: int, where: str) -> np.ndarray:
    """int64 [n] labels 0..C-1 with every class present, or a DataError saying what is wrong."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise DataError(f"the labels in {where} have shape {list(y.shape)}; expected one label per point, [{n}]")
    if y.dtype.kind not in "biuf" or not np.isfinite(y).all() or (y != np.round(y)).any() or (y < 0).any():
        raise DataError(f"the labels in {where} must be whole numbers 0, 1, 2, ... (one class id per point)")
    y = y.astype(np.int64)
    missing = sorted(set(range(int(y.max()) + 1)) - set(np.unique(y).tolist()))
    if missing:
        raise DataError(f"the labels in {where} skip class {missing[0]}; class ids must be 0..C-1 with every class present")
    return y


@dataclass
class PointSource:
    """Where training and reference points come from: a built-in name or a file path."""

    spec: str

    @property
    def is_builtin(self) -> bool:
        return self.spec in DATASETS

    def train_labeled(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Training points and their labels (None if the data has none)."""
        return make_labeled(self.spec, n, seed) if self.is_builtin else load_labeled_file(self.spec)

    def fresh_labeled(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Points (and labels) independent of training (built-in: a new draw; file: a random subset)."""
        if self.is_builtin:
            return make_labeled(self.spec, n, seed + 1_000_003)
        x, y = load_labeled_file(self.spec)
        idx = np.random.default_rng(seed).permutation(len(x))[: min(n, len(x))]
        return x[idx], (None if y is None else y[idx])

    def train(self, n: int, seed: int) -> np.ndarray:
        return self.train_labeled(n, seed)[0]

    def fresh(self, n: int, seed: int) -> np.ndarray:
        return self.fresh_labeled(n, seed)[0]


def load_points(spec: str, n: int = 50_000, seed: int = 0) -> np.ndarray:
    """Built-in name -> n fresh points; path -> the file's points."""
    return PointSource(_check_spec(spec)).train(n, seed)


def _check_spec(spec: str) -> str:
    if spec in DATASETS or Path(spec).suffix.lower() in FILE_SUFFIXES:
        return spec
    raise DataError(f"unknown dataset {spec!r}; choose one of: {', '.join(DATASETS)}, or a .npy/.npz/.csv file")
