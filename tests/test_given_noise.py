"""x_T given by the caller (sample_run(noise=...), `diffkit sample --noise FILE.npy`): the same start gives the same
samples as the seed that drew it, wherever it comes from; a bad array is one sentence, nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_cli import run
from test_images_cli import assert_user_error

from diffkit.errors import ConfigError
from diffkit.runs import load_run, sample_run


def drawn(seed: int, shape) -> np.ndarray:
    """x_T as sample_run draws it from `seed` (a CPU generator, x_T first)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).numpy()


def test_given_noise_is_the_start_the_seed_would_draw(tiny_run):
    r = load_run(tiny_run)
    noise = drawn(5, (64, 2))
    from_seed = sample_run(r, 64, "ddim", 10, seed=5)
    np.testing.assert_array_equal(sample_run(r, 64, "ddim", 10, seed=123, noise=noise), from_seed)
    np.testing.assert_array_equal(sample_run(r, 64, "ddim", 10, seed=123, noise=torch.from_numpy(noise)), from_seed)
    other = sample_run(r, 64, "ddim", 10, seed=5, noise=drawn(6, (64, 2)))
    assert np.abs(other - from_seed).max() > 0.1  # the noise, not the seed, decides


@pytest.mark.parametrize("noise, fragment", [
    (np.zeros((64, 3), np.float32), "the noise has shape [64, 3] but this sampling starts from 64 samples of shape [2]"),
    (np.zeros((64, 2)), "the noise must be float32, got float64"),
    (np.full((64, 2), np.nan, np.float32), "non-finite"),
    ([[0.0, 0.0]] * 64, "the noise must be a float32 array, got list"),
])
def test_bad_noise_is_refused_by_name(tiny_run, noise, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        sample_run(tiny_run, 64, "ddim", 10, noise=noise)


def test_cli_noise_sets_n_and_reproduces_the_api(tiny_run, tmp_path, capsys):
    path = tmp_path / "noise.npy"
    np.save(path, drawn(7, (32, 2)))
    out = tmp_path / "s.npy"
    code, _, err = run(["sample", "--run", tiny_run, "--noise", path, "--sampler", "ddim", "--steps", 10, "--out", out,
                        "--quiet"], capsys)
    assert code == 0, err
    x = np.load(out)
    np.testing.assert_array_equal(x, sample_run(tiny_run, 32, "ddim", 10, seed=7))
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["n"] == 32 and side["noise"] == str(path.resolve())


@pytest.mark.parametrize("make, flags, fragment", [
    (lambda p: np.save(p, np.zeros((32, 2), np.float32)), ["--n", "16"], "--noise has 32 rows but --n 16 needs 16 rows"),
    (lambda p: np.save(p, np.zeros((32, 2))), [], "the noise must be float32, got float64"),
    (lambda p: np.save(p, np.zeros((32, 5), np.float32)), [], "shape [32, 5]"),
    (lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True), [], "is not a readable .npy"),
    (lambda p: p.write_text("not an array"), [], "is not a readable .npy"),
    (lambda p: None, [], "is not a readable .npy"),
])
def test_cli_bad_noise_is_one_sentence_and_writes_nothing(tiny_run, tmp_path, capsys, make, flags, fragment):
    path = tmp_path / "noise.npy"
    make(path)
    out = tmp_path / "s.npy"
    code, _, err = run(["sample", "--run", tiny_run, "--noise", path, "--out", out, "--quiet", *flags], capsys)
    assert_user_error(code, err, fragment)
    assert not out.exists() and not out.with_suffix(".json").exists()
    code, _, err = run(["sample", "--oracle", "gaussians8", "--noise", path, "--out", out], capsys)
    assert_user_error(code, err, "--noise applies to --run")
