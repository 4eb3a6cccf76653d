"""Image metrics: the classifier-feature Frechet distance, the judge and its cache, evaluate_images, colour."""

import dataclasses

import numpy as np
import pytest
import torch

from diffkit.data.images import load_images
from diffkit.data.shapes import COLOUR_NAMES, make_shapes
from diffkit.errors import DataError
from diffkit.metrics import judge as judge_module
from diffkit.metrics.images import evaluate_images, frechet_distance
from diffkit.metrics.judge import ImageJudge, cache_path, load_or_train_judge
from diffkit.metrics.shapes import colour_purity, dominant_colour

EPOCHS = 12  # enough for > 95% on digits in about 2 s; the default trains longer


@pytest.fixture(scope="module")
def digits():
    return load_images("digits")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def judge(digits, cache_dir):
    return load_or_train_judge(digits, cache_dir=cache_dir, progress=False, epochs=EPOCHS)


def _gaussian(mu, cov, n=400, seed=0):
    """n points whose sample mean and (ddof=1) covariance are exactly mu and cov."""
    z = np.random.default_rng(seed).standard_normal((n, len(mu)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # sample covariance exactly I
    return mu + z @ np.linalg.cholesky(cov).T


def _fd_reference(a, b):
    """The same distance via Tr (S_a S_b)^{1/2} = sum sqrt(eig(S_a^{1/2} S_b S_a^{1/2})) (symmetric, eigh)."""
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ s_b @ root_a), 0, None)).sum()
    d = a.mean(0) - b.mean(0)
    return d @ d + np.trace(s_a) + np.trace(s_b) - 2 * trace_root


def test_fd_of_identical_sets_is_zero():
    f = np.random.default_rng(0).standard_normal((300, 16))
    assert frechet_distance(f, f) == pytest.approx(0, abs=1e-8)


def test_fd_mean_shift_with_the_same_covariance_is_the_squared_shift():
    rng = np.random.default_rng(1)
    m = rng.standard_normal((6, 6))
    cov, d = m @ m.T + 0.5 * np.eye(6), rng.standard_normal(6)
    a, b = _gaussian(np.zeros(6), cov, seed=2), _gaussian(d, cov, seed=3)
    assert frechet_distance(a, b) == pytest.approx(d @ d, rel=1e-6)


def test_fd_of_diagonal_gaussians_has_its_closed_form():
    va, vb, d = np.array([1.0, 4.0, 0.25, 9.0]), np.array([4.0, 1.0, 1.0, 9.0]), np.array([1.0, 0.0, -2.0, 0.5])
    a, b = _gaussian(np.zeros(4), np.diag(va), seed=4), _gaussian(d, np.diag(vb), seed=5)
    expected = d @ d + ((np.sqrt(va) - np.sqrt(vb)) ** 2).sum()  # = 1 + 1 + 0.25 + 4 + 0.25 + 0
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_fd_is_symmetric_non_negative_and_matches_the_eigh_form():
    rng = np.random.default_rng(6)
    a = rng.standard_normal((500, 12)) @ rng.standard_normal((12, 12))
    b = rng.standard_normal((400, 12)) * rng.uniform(0.2, 3, 12) + 0.3
    a[:, 0] = 0.0  # a dead feature (a ReLU unit that never fires): singular covariance
    fd = frechet_distance(a, b)
    assert fd >= 0 and fd == pytest.approx(frechet_distance(b, a), rel=1e-6)
    assert fd == pytest.approx(_fd_reference(a, b), rel=1e-5)


def test_fd_rejects_mismatched_features():
    with pytest.raises(DataError, match="same F"):
        frechet_distance(np.zeros((10, 3)), np.zeros((10, 4)))


def test_judge_classifies_the_digits_test_split(judge, digits):
    assert judge.test_accuracy > 0.95
    assert judge.accuracy(digits.test, digits.test_labels) == judge.test_accuracy


@pytest.mark.parametrize("shape", [(3, 4, 4), (1, 5, 7), (3, 32, 32)])
def test_judge_takes_any_channels_and_sides_from_four(shape):
    j = ImageJudge(shape[0], 3)
    x = torch.rand(2, *shape)
    assert j(x).shape == (2, 3) and j.embed(x).shape == (2, 128) and j.predict(x.numpy()).dtype == np.int64


def test_the_cache_is_written_and_reloaded_bitwise(judge, digits, cache_dir, monkeypatch):
    path = cache_path(digits, cache_dir)
    assert path.is_file() and path.name.startswith("judge-digits-")
    monkeypatch.setattr(judge_module, "train_judge", lambda *a, **k: pytest.fail("retrained a valid cache"))
    again = load_or_train_judge(digits, cache_dir=cache_dir, progress=False, epochs=EPOCHS)
    assert again.test_accuracy == judge.test_accuracy
    assert np.array_equal(again.embed(digits.test), judge.embed(digits.test))
    assert np.array_equal(again.predict(digits.test), judge.predict(digits.test))


def test_the_cache_dir_defaults_to_the_environment(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFKIT_CACHE", str(tmp_path))
    assert cache_path(digits).parent == tmp_path


def _count_training(monkeypatch) -> list:
    calls, real = [], judge_module.train_judge
    monkeypatch.setattr(judge_module, "train_judge", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def _small(digits, n=400):
    """Another labelled data set: a subset of digits, so another fingerprint."""
    return dataclasses.replace(digits, train=digits.train[:n], train_labels=digits.train_labels[:n])


def test_a_cache_file_of_another_fingerprint_is_retrained(judge, digits, cache_dir, tmp_path, monkeypatch):
    small = _small(digits)
    path = cache_path(small, tmp_path)
    path.write_bytes(cache_path(digits, cache_dir).read_bytes())  # the digits judge under small's name
    calls = _count_training(monkeypatch)
    retrained = load_or_train_judge(small, cache_dir=tmp_path, progress=False, epochs=2)
    assert calls == [1] and retrained.config["num_classes"] == 10
    load_or_train_judge(small, cache_dir=tmp_path, progress=False, epochs=2)  # now it matches
    assert calls == [1]
    load_or_train_judge(small, cache_dir=tmp_path, progress=False, epochs=3)  # other settings: retrained
    assert calls == [1, 1]


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_cache_file_is_retrained_not_trusted(digits, tmp_path, monkeypatch, capsys, damage):
    small = _small(digits)
    load_or_train_judge(small, cache_dir=tmp_path, progress=False, epochs=2)
    path = cache_path(small, tmp_path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2] if damage == "truncate" else b"\x08" + bytes(200))
    calls = _count_training(monkeypatch)
    j = load_or_train_judge(small, cache_dir=tmp_path, progress=False, epochs=2)
    assert calls == [1] and "ignoring the cached judge" in capsys.readouterr().err
    assert path.read_bytes() != b"\x08" + bytes(200) and j.test_accuracy is not None
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]  # the atomic write left no temp file


def test_unlabelled_data_has_no_judge(digits, tmp_path):
    unlabelled = dataclasses.replace(digits, train_labels=None, test_labels=None, class_names=None)
    with pytest.raises(DataError, match="labelled"):
        load_or_train_judge(unlabelled, cache_dir=tmp_path, progress=False)


def test_real_images_score_near_the_floor(judge, digits):
    real = digits.train[np.random.default_rng(7).choice(len(digits.train), 300, replace=False)]
    r = evaluate_images(real, digits, judge)
    assert r["n"] == 300 and 0 < r["fd_floor"] and r["fd"] < 2 * r["fd_floor"]
    assert r["precision"] > 0.8 * r["precision_floor"] and r["recall"] > 0.8 * r["recall_floor"]
    same = evaluate_images(digits.test, digits, judge, labels=digits.test_labels)
    assert same["fd"] < 1e-6 and same["precision"] == same["recall"] == 1.0
    assert same["class_accuracy"] == same["judge_accuracy"] == judge.test_accuracy


def test_noise_scores_far_above_the_floor(judge, digits):
    noise = np.random.default_rng(8).uniform(size=(300, *digits.shape)).astype(np.float32)
    r = evaluate_images(noise, digits, judge, labels=np.arange(300) % 10)
    assert r["fd"] > 10 * r["fd_floor"] and r["precision"] < 0.2 and r["class_accuracy"] < 0.3


def test_evaluate_images_checks_its_inputs(judge, digits):
    with pytest.raises(DataError, match=r"shape \[N, 1, 8, 8\].*got \[20, 1, 28, 28\]"):
        evaluate_images(np.zeros((20, 1, 28, 28)), digits, judge)
    bad = digits.test[:20].copy()
    bad[3, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="finite"):
        evaluate_images(bad, digits, judge)
    with pytest.raises(DataError, match="one per sample"):
        evaluate_images(digits.test[:20], digits, judge, labels=np.zeros(19, np.int64))
    with pytest.raises(DataError, match="more than k=5"):
        evaluate_images(digits.test[:5], digits, judge)


def test_real_shapes_are_pure_and_their_colour_is_recovered():
    images, _, attributes = make_shapes(300, seed=3)
    assert colour_purity(images) == 1.0
    assert np.array_equal(dominant_colour(images), attributes["colour"])
    jitter = np.random.default_rng(0).uniform(-0.1, 0.1, images.shape)  # within tol of the palette
    assert colour_purity(np.clip(images + jitter, 0, 1)) == 1.0


def test_noisy_mixed_and_empty_images_are_not_pure():
    images, _, _ = make_shapes(200, seed=4)
    rng = np.random.default_rng(1)
    assert colour_purity(rng.uniform(size=images.shape)) < 0.05
    assert colour_purity(np.clip(images + rng.normal(0, 0.3, images.shape), 0, 1)) < 0.05
    two = np.zeros((1, 3, 8, 8), np.float32)
    two[0, 0, :, :4] = 1  # left half red, right half green: half the foreground per colour
    two[0, 1, :, 4:] = 1
    orange = np.zeros((1, 3, 8, 8), np.float32)
    orange[0, 0], orange[0, 1] = 1.0, 0.5  # between red and yellow: matches no palette colour
    empty = np.zeros((1, 3, 8, 8), np.float32)
    for image in (two, orange, empty):
        assert colour_purity(image) == 0.0
    assert dominant_colour(np.concatenate([two, orange, empty])).tolist() == [COLOUR_NAMES.index("red"), -1, -1]
    with pytest.raises(DataError, match="RGB"):
        colour_purity(np.zeros((2, 1, 8, 8)))
