"""Point data by name or by file (.npy, .npz, .csv holding an [N, 2] array)."""

from __future__ import annotations

from dataclasses import dataclass
import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError
from .toy2d import MAKERS

DATASETS: tuple[str, ...] = tuple(MAKERS)
FILE_SUFFIXES = (".npy", ".npz", ".csv")


def make_dataset(name: str, n: int, seed: int) -> np.ndarray:
    """n points of a built-in data set, float32 [n, 2], reproducible from seed."""
    if name not in MAKERS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}, or a .npy/.npz/.csv file")
    return MAKERS[name](n, np.random.default_rng(seed)).astype(np.float32)


def _read_file(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                key = "x" if "x" in z.files else (z.files[0] if z.files else None)
                if key is None:
                    raise DataError(f"{path} holds no arrays; expected an [N, 2] array (named 'x' or the only one)")
                return z[key]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty file is reported below as such
            return np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2, comments="#")
    except DataError:
        raise
    except (ValueError, OSError, EOFError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "pickle" in str(e).lower():
            first = "it is not a plain numeric array file or it holds Python objects"
        raise DataError(f"cannot read {path} as {suffix[1:]} ({first}); expected a numeric [N, 2] array") from None


def load_file(path) -> np.ndarray:
    """Validated float32 [N, 2] points from a user file."""
    path = Path(path)
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise DataError(f"{path} is neither a dataset name ({', '.join(DATASETS)}) nor a .npy/.npz/.csv file")
    if not path.is_file():
        raise DataError(f"data file {path} does not exist; give a dataset name ({', '.join(DATASETS)}) or an existing file")
    x = _read_file(path)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path} holds {x.dtype} values; expected numbers in an [N, 2] array")
    if x.size == 0:
        raise DataError(f"{path} is empty; expected at least one [x, y] row")
    if x.ndim != 2 or x.shape[1] != 2:
        raise DataError(f"{path} holds an array of shape {list(x.shape)}; expected [N, 2]")
    if not np.isfinite(x).all():
        raise DataError(f"{path} contains NaN or Inf values; all coordinates must be finite")
    return x.astype(np.float32)


@dataclass
class PointSource:
    """Where training and reference points come from: a built-in name or a file path."""

    spec: str

    @property
    def is_builtin(self) -> bool:
        return self.spec in MAKERS

    def train(self, n: int, seed: int) -> np.ndarray:
        return make_dataset(self.spec, n, seed) if self.is_builtin else load_file(self.spec)

    def fresh(self, n: int, seed: int) -> np.ndarray:
        """Points independent of training (built-in: a new draw; file: a random subset)."""
        if self.is_builtin:
            return make_dataset(self.spec, n, seed + 1_000_003)
        x = load_file(self.spec)
        idx = np.random.default_rng(seed).permutation(len(x))[: min(n, len(x))]
        return x[idx]


def load_points(spec: str, n: int = 50_000, seed: int = 0) -> np.ndarray:
    """Built-in name -> n fresh points; path -> the file's points."""
    return PointSource(_check_spec(spec)).train(n, seed)


def _check_spec(spec: str) -> str:
    if spec in MAKERS or Path(spec).suffix.lower() in FILE_SUFFIXES:
        return spec
    raise DataError(f"unknown dataset {spec!r}; choose one of: {', '.join(DATASETS)}, or a .npy/.npz/.csv file")
