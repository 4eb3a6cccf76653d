"""Point data by name or by file (.npy, .npz, .csv holding an [N, 2] array, or a Gaussian mixture .json to
draw from), with optional class labels.

Labels come from a labeled built-in (shapes3), an .npz holding `y` [N] beside `x` [N, 2], or a CSV whose
third column is the label. They must be integers 0..C-1 with every class present.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, notice
from .labeled import LABELED_MAKERS
from .mixture import GaussianMixture
from .toy2d import MAKERS

DATASETS: tuple[str, ...] = tuple(MAKERS) + tuple(LABELED_MAKERS)
FILE_SUFFIXES = (".npy", ".npz", ".csv")
MIXTURE_SUFFIX = ".json"  # a Gaussian mixture (data/mixture.py) to draw points from
MAX_CLASSES = 10_000  # class ids beyond this are refused (every class 0..C-1 must be present)


def make_labeled(name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """n points of a built-in data set, float32 [n, 2], and its int64 [n] labels (None if unlabeled),
    reproducible from seed."""
    rng = np.random.default_rng(seed)
    if name in LABELED_MAKERS:
        x, y = LABELED_MAKERS[name](n, rng)
        return x.astype(np.float32), y
    if name not in MAKERS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}, or a .npy/.npz/.csv file, or a mixture .json")
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
                if not z.files:
                    raise DataError(f"{path} holds no arrays; expected an [N, 2] array (named 'x' or the only one)")
                if "x" not in z.files and len(z.files) > 1:
                    raise DataError(f"{path} holds arrays {', '.join(z.files)} and none is named 'x'; save the points "
                                    "as x (and the labels as y), e.g. np.savez(path, x=points, y=labels)")
                key = "x" if "x" in z.files else z.files[0]
                return z[key], (z["y"] if key == "x" and "y" in z.files else None)
        return _read_csv(path)
    except DataError:
        raise
    except (ValueError, OSError, EOFError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "pickle" in str(e).lower():
            first = "it is not a plain numeric array file or it holds Python objects"
        raise DataError(f"cannot read {path} as {suffix[1:]} ({first}); expected a numeric [N, 2] array") from None


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows of x, y or x, y, label; '#' comments; a first row of column names is skipped (with a notice)."""
    import csv


    with open(path, newline="") as f:
        rows = [r for r in csv.reader(line for line in f if not line.lstrip().startswith("#")) if any(c.strip() for c in r)]
    header = rows[0] if rows and not _numeric(rows[0][:2]) else None
    if header is not None:
        rows = rows[1:]
    xy, labels = _parse_rows(path, rows, 2 if header is not None else 1)
    if header is not None:
        notice(f"{path}: the first row ({', '.join(c.strip() for c in header)}) is read as column names and skipped")
    return xy, labels


def _parse_rows(path: Path, rows: list, first: int) -> tuple[np.ndarray, np.ndarray | None]:
    """x, y (and label) from CSV rows; `first` is the number of the first row, for messages."""
    if not rows:
        return np.zeros((0, 2)), None
    widths = {len(r) for r in rows}
    if len(widths) != 1 or widths.pop() not in (2, 3):
        bad = next(i for i, r in enumerate(rows) if len(r) != len(rows[0]) or len(r) not in (2, 3))
        raise DataError(f"{path} row {bad + first} has {len(rows[bad])} columns; every row needs x, y or x, y, label")
    for i, r in enumerate(rows):
        if not _numeric(r[:2]):
            raise DataError(f"{path} row {i + first} holds {', '.join(r[:2])}; x and y must be numbers")
    xy = np.array([[float(c) for c in r[:2]] for r in rows])
    if len(rows[0]) == 2:
        return xy, None
    labels = [r[2].strip() for r in rows]
    if not _numeric(labels):
        word = next(v for v in labels if not _numeric([v]))
        raise DataError(f"the labels in {path} must be class ids 0..C-1 (whole numbers), got {word!r}; map names "
                        "to ids first")
    return xy, np.array([float(v) for v in labels])


def _numeric(cells) -> bool:
    try:
        [float(c) for c in cells]
    except ValueError:
        return False
    return True


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
    if np.abs(x).max() > np.finfo(np.float32).max:
        raise DataError(f"{path} holds coordinates beyond float32's range (|x| > 3.4e38); rescale the data")
    return x.astype(np.float32), (None if y is None else check_labels(y, len(x), str(path)))


def check_labels(y, n: int, where: str) -> np.ndarray:
    """int64 [n] labels 0..C-1 with every class present, or a DataError saying what is wrong."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise DataError(f"the labels in {where} have shape {list(y.shape)}; expected one label per point, [{n}]")
    if y.dtype.kind not in "biuf" or not np.isfinite(y).all() or (y != np.round(y)).any() or (y < 0).any():
        raise DataError(f"the labels in {where} must be whole numbers 0, 1, 2, ... (one class id per point)")
    if y.max() >= MAX_CLASSES:
        raise DataError(f"the labels in {where} go up to {y.max():.0f}; class ids must be 0..C-1 with C <= {MAX_CLASSES}")
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

    @property
    def is_mixture(self) -> bool:
        return Path(self.spec).suffix.lower() == MIXTURE_SUFFIX

    def train_labeled(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Training points and their labels (None if the data has none)."""
        if self.is_mixture:
            return draw_mixture(self.spec, n, seed)
        return make_labeled(self.spec, n, seed) if self.is_builtin else load_labeled_file(self.spec)

    def fresh_labeled(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Points (and labels) independent of training (built-in or mixture: a new draw; file: a random subset)."""
        if self.is_builtin:
            return make_labeled(self.spec, n, seed + 1_000_003)
        if self.is_mixture:
            return draw_mixture(self.spec, n, seed + 1_000_003)
        x, y = load_labeled_file(self.spec)
        idx = np.random.default_rng(seed).permutation(len(x))[: min(n, len(x))]
        return x[idx], (None if y is None else y[idx])

    def train(self, n: int, seed: int) -> np.ndarray:
        return self.train_labeled(n, seed)[0]

    def fresh(self, n: int, seed: int) -> np.ndarray:
        return self.fresh_labeled(n, seed)[0]


def draw_mixture(path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """n points float32 [n, D] of a mixture JSON file and their components' classes (None without labels)."""
    mix = GaussianMixture.from_json(path)
    x, k = mix.sample(n, np.random.default_rng(seed))
    if np.abs(x).max() > np.finfo(np.float32).max:
        raise DataError(f"mixture file {path} draws coordinates beyond float32's range; rescale it")
    return x.astype(np.float32), mix.class_of(k)


def load_points(spec: str, n: int = 50_000, seed: int = 0) -> np.ndarray:
    """Built-in name -> n fresh points; path -> the file's points."""
    return PointSource(check_spec(spec)).train(n, seed)


def check_spec(spec: str) -> str:
    if spec in DATASETS or Path(spec).suffix.lower() in (*FILE_SUFFIXES, MIXTURE_SUFFIX):
        return spec
    raise DataError(f"unknown dataset {spec!r}; choose one of: {', '.join(DATASETS)}, or a .npy/.npz/.csv file, or a mixture .json")
