"""Built-in point clouds, user point files and the Normalizer."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from diffkit.data import DATASETS, Normalizer, PointSource, load_points, make_dataset
from diffkit.data.points import load_file
from diffkit.errors import DataError

N = 20_000


@pytest.fixture(scope="module")
def clouds():
    return {name: make_dataset(name, N, seed=0) for name in DATASETS}


def test_dataset_names():
    assert set(DATASETS) == {"spiral", "circle", "moons", "circles", "swissroll", "gaussians8", "checkerboard",
                             "shapes3"}


@pytest.mark.parametrize("name", DATASETS)
def test_dataset_shape_dtype_seeded(name, clouds):
    x = clouds[name]
    assert x.dtype == np.float32 and x.shape == (N, 2)
    assert np.isfinite(x).all()
    assert np.abs(x).max() < 10  # all live in a few units of the origin
    again = make_dataset(name, N, seed=0)
    assert np.array_equal(x, again)
    other = make_dataset(name, N, seed=1)
    assert not np.array_equal(x, other)
    assert np.abs(x - other).mean() > 0.1  # not just a tiny perturbation
    assert make_dataset(name, 7, seed=3).shape == (7, 2)


def test_unknown_dataset_lists_names():
    for call in (lambda: make_dataset("spirals", 10, 0), lambda: load_points("spirals")):
        with pytest.raises(DataError) as info:
            call()
        msg = str(info.value)
        assert "spirals" in msg and all(name in msg for name in DATASETS)


def test_circle_radius_exactly_one(clouds):
    r = np.linalg.norm(clouds["circle"].astype(np.float64), axis=1)
    np.testing.assert_allclose(r, 1.0, atol=1e-6)
    # angles uniform: each quadrant holds ~1/4
    ang = np.arctan2(clouds["circle"][:, 1], clouds["circle"][:, 0])
    counts = np.histogram(ang, bins=4, range=(-np.pi, np.pi))[0] / N
    np.testing.assert_allclose(counts, 0.25, atol=5 * np.sqrt(0.25 * 0.75 / N))


def test_gaussians8_modes(clouds):
    x = clouds["gaussians8"].astype(np.float64)
    k = np.arange(8)
    means = 2.0 * np.stack([np.cos(k * np.pi / 4), np.sin(k * np.pi / 4)], 1)  # [8, 2]
    d = np.linalg.norm(x[:, None, :] - means[None], axis=2)  # [N, 8]
    label = d.argmin(1)
    assert d.min(1).max() < 0.7  # every point belongs to some mode (std 0.1, modes 1.53 apart)
    weights = np.bincount(label, minlength=8) / N
    np.testing.assert_allclose(weights, 1 / 8, atol=5 * np.sqrt((1 / 8) * (7 / 8) / N))
    for j in range(8):
        pts = x[label == j]
        np.testing.assert_allclose(pts.mean(0), means[j], atol=0.01)
        # per-cluster std 0.1 (SE of a std ~ 0.1 / sqrt(2 * 2500) = 0.0014)
        np.testing.assert_allclose(pts.std(0), 0.1, atol=0.008)


def test_spiral_radius_follows_angle(clouds):
    """theta ~ U(0, 4 pi), r = theta / (2 pi): a point at angle phi sits at radius phi / (2 pi) + k."""
    x = clouds["spiral"].astype(np.float64)
    r = np.linalg.norm(x, axis=1)
    phi = np.mod(np.arctan2(x[:, 1], x[:, 0]), 2 * np.pi)
    candidates = phi[:, None] / (2 * np.pi) + np.array([-1.0, 0.0, 1.0, 2.0])[None]  # turns of the spiral
    dev = np.abs(r[:, None] - candidates).min(1)
    outer = r > 0.3  # near the centre the angle is dominated by the noise
    assert np.median(dev[outer]) < 0.05  # radial noise std 0.05 -> median |dev| ~ 0.034
    assert np.quantile(dev[outer], 0.99) < 0.2
    # r = theta / (2 pi) with theta uniform: radius ~ U(0, 2) (plus a little noise)
    assert abs(r.mean() - 1.0) < 0.03
    assert 1.9 < np.quantile(r, 0.999) < 2.2


def test_circles_two_rings(clouds):
    r = np.linalg.norm(clouds["circles"].astype(np.float64), axis=1)
    outer = r > 0.75
    assert abs(outer.mean() - 0.5) < 0.02
    assert abs(r[outer].mean() - 1.0) < 0.01 and abs(r[~outer].mean() - 0.5) < 0.01
    assert r[outer].std() < 0.05 and r[~outer].std() < 0.05


def test_checkerboard_dark_squares(clouds):
    x = clouds["checkerboard"].astype(np.float64)
    assert x.min() >= -2 and x.max() <= 2
    fx, fy = np.floor(x[:, 0]), np.floor(x[:, 1])
    assert np.all((fx + fy) % 2 == 0)  # only the 8 squares of one colour
    squares = np.unique(np.stack([fx, fy], 1), axis=0, return_counts=True)[1]
    assert len(squares) == 8
    np.testing.assert_allclose(squares / N, 1 / 8, atol=5 * np.sqrt((1 / 8) * (7 / 8) / N))


# files ---------------------------------------------------------------------------
@pytest.fixture
def pts():
    return np.random.default_rng(0).normal(size=(50, 2)) * 3 + 1


def test_load_npy_npz_csv(tmp_path, pts):
    np.save(tmp_path / "a.npy", pts)
    np.savez(tmp_path / "b.npz", x=pts, other=np.zeros(3))
    np.savez(tmp_path / "c.npz", anything=pts)
    np.savetxt(tmp_path / "d.csv", pts, delimiter=",", header="a comment", comments="# ")
    with open(tmp_path / "e.NPY", "wb") as f:  # upper-case suffix, integer values
        np.save(f, pts.astype(np.int64))
    for name in ("a.npy", "b.npz", "c.npz", "d.csv"):
        out = load_file(tmp_path / name)
        assert out.dtype == np.float32 and out.shape == (50, 2)
        np.testing.assert_allclose(out, pts, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(load_file(tmp_path / "e.NPY"), pts.astype(np.int64).astype(np.float32))
    # load_points / PointSource hand back the file's points
    np.testing.assert_allclose(load_points(str(tmp_path / "a.npy")), pts, rtol=1e-6)
    sub = PointSource(str(tmp_path / "a.npy")).fresh(20, seed=0)
    assert sub.shape == (20, 2)
    assert {tuple(p) for p in sub} <= {tuple(p) for p in pts.astype(np.float32)}


def _bad_files(tmp_path):
    """name -> (creator, word the message must contain)"""
    def write(name, text):
        (tmp_path / name).write_text(text)

    return {
        "missing.npy": (lambda: None, "does not exist"),
        "three.npy": (lambda: np.save(tmp_path / "three.npy", np.zeros((5, 3))), "[N, 2]"),
        "flat.npy": (lambda: np.save(tmp_path / "flat.npy", np.zeros(10)), "[N, 2]"),
        "nan.npy": (lambda: np.save(tmp_path / "nan.npy", np.array([[0.0, 1.0], [np.nan, 2.0]])), "NaN"),
        "inf.csv": (lambda: write("inf.csv", "1,2\n3,inf\n"), "Inf"),
        "empty.npy": (lambda: np.save(tmp_path / "empty.npy", np.zeros((0, 2))), "empty"),
        "text.npy": (lambda: np.save(tmp_path / "text.npy", np.array([["a", "b"]])), "number"),
        "pickled.npy": (lambda: np.save(tmp_path / "pickled.npy", np.array([[1, 2]], dtype=object),
                                        allow_pickle=True), "expected"),
        "words.csv": (lambda: write("words.csv", "1,2\nfoo,bar\n"), "csv"),
        "ragged.csv": (lambda: write("ragged.csv", "1,2\n3\n"), "csv"),
        "garbage.npy": (lambda: write("garbage.npy", "this is not numpy"), "expected"),
        "nothing.npz": (lambda: np.savez(tmp_path / "nothing.npz"), "no arrays"),
        "points.txt": (lambda: write("points.txt", "1,2\n"), ".npy"),
    }


@pytest.mark.parametrize("name", ["missing.npy", "three.npy", "flat.npy", "nan.npy", "inf.csv", "empty.npy",
                                  "text.npy", "pickled.npy", "words.csv", "ragged.csv",
                                  "nothing.npz", "points.txt"])
def test_bad_files_raise_data_error(tmp_path, name):
    make, word = _bad_files(tmp_path)[name]
    make()
    with pytest.raises(DataError) as info:
        load_file(tmp_path / name)
    msg = str(info.value)
    assert name in msg  # says which file
    assert word.lower() in msg.lower()  # says what was wrong / accepted
    assert "\n" not in msg and "Traceback" not in msg
    assert len(msg) < 200 + len(str(tmp_path / name))  # one sentence, not a dump


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n"])
def test_empty_csv_says_empty(tmp_path, text):
    (tmp_path / "empty.csv").write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "input contained no data" must not leak out
        with pytest.raises(DataError, match="empty"):
            load_file(tmp_path / "empty.csv")


def test_garbage_npy_is_a_data_error(tmp_path):
    (tmp_path / "garbage.npy").write_text("this is not numpy")
    with pytest.raises(DataError, match="garbage.npy"):
        load_file(tmp_path / "garbage.npy")


def test_garbage_npy_message_is_one_sentence_without_pickle_advice(tmp_path):
    (tmp_path / "garbage.npy").write_text("this is not numpy")
    with pytest.raises(DataError) as info:
        load_file(tmp_path / "garbage.npy")
    msg = str(info.value)
    assert "pickle" not in msg.lower()
    assert len(msg) < 200 + len(str(tmp_path / "garbage.npy"))


# normalizer ---------------------------------------------------------------------
def test_normalizer_roundtrip_at_scale_1000():
    x = make_dataset("spiral", 5000, seed=0).astype(np.float64) * 1000 + np.array([3000.0, -500.0])
    norm = Normalizer.fit(x)
    np.testing.assert_allclose(norm.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(norm.std, x.std(0), rtol=1e-12)
    z = norm.apply(x)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-5)
    back = norm.invert(z)
    np.testing.assert_allclose(back, x, rtol=0, atol=1e-6 * np.abs(x).max())
    # to_config / constructor round trip
    again = Normalizer(**norm.to_config())
    np.testing.assert_array_equal(again.apply(x), z)


def test_normalizer_constant_dimension():
    x = np.stack([np.linspace(-1, 1, 100), np.full(100, 1000.5)], 1)
    norm = Normalizer.fit(x)
    assert norm.std[1] == 1.0  # kept at scale 1, not divided by zero
    z = norm.apply(x)
    assert np.isfinite(z).all()
    np.testing.assert_allclose(z[:, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(norm.invert(z), x, rtol=1e-6)
