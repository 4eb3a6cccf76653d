"""Inversion (runs/invert.py: the x_T that ddim samples back into the input, `diffkit sample --noise` taking the
settings from invert's sidecar) and interpolation (runs/interpolate.py: slerp between noises, blends between
classes and prompts)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_cli import run
from test_images_cli import assert_user_error

from diffkit.data.images import load_images
from diffkit.errors import ConfigError
from diffkit.runs import load_run, sample_run
from diffkit.runs.interpolate import interpolate_run, slerp, start_noise
from diffkit.runs.invert import invert_run
from diffkit.runs.pipeline import deterministic_own


@pytest.fixture(scope="module")
def digits_run(edit_digits_dir):
    # fp32 on every CPU: these tests compare samples drawn in batches of different sizes (bf16, which `auto` picks
    # on a CPU with native bf16, rounds differently per batch shape, about 1e-3 apart)
    return load_run(edit_digits_dir, precision="fp32")


@pytest.fixture(scope="module")
def images():
    data = load_images("digits")
    return data.test[:24], data.test_labels[:24]


def psnr(a, b) -> float:
    return float(10 * np.log10(1 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


# --- inversion -----------------------------------------------------------------------------------------------------

def test_ddim_samples_the_inverted_noise_back_and_refinement_helps(digits_run, images):
    x, y = images
    back = {}
    for iterations in (0, 2):
        z = invert_run(digits_run, x, steps=30, iterations=iterations, cond=y.tolist())
        assert z.shape == x.shape and np.isfinite(z).all()
        back[iterations] = psnr(sample_run(digits_run, len(x), "ddim", 30, noise=z, cond=y.tolist()), x)
    assert back[2] > back[0] + 3 and back[2] > 30, back


def test_inverting_points_returns_them(tiny_run):
    r = load_run(tiny_run)
    pts = sample_run(r, 64, "ddim", 40, seed=3)
    z = invert_run(r, pts, steps=40, iterations=2)
    assert np.abs(sample_run(r, 64, "ddim", 40, noise=z) - pts).max() < 1e-2


def test_invert_refuses_bad_settings(digits_run, images):
    x, _ = images
    with pytest.raises(ConfigError, match="whole number >= 0"):
        invert_run(digits_run, x, iterations=-1)
    with pytest.raises(ConfigError, match="one prompt for every input"):
        invert_run(digits_run, x, prompt=["a", "b"])


def test_cli_invert_then_sample_with_its_sidecar(edit_digits_dir, digits_run, images, tmp_path, capsys, fp32_sampling):
    x, _ = images
    np.save(tmp_path / "in.npy", x[:6])
    noise = tmp_path / "z.npy"
    code, _, err = run(["invert", "--run", edit_digits_dir, "--image", tmp_path / "in.npy", "--class", 4, "--steps", 20,
                        "--out", noise, "--quiet"], capsys)
    assert code == 0, err
    side = json.loads(noise.with_suffix(".json").read_text())
    assert side["inverted"] is True and side["steps"] == 20 and side["sampler"] == "ddim" and side["class"] == "4"
    out = tmp_path / "back.npy"
    code, _, err = run(["sample", "--run", edit_digits_dir, "--noise", noise, "--out", out, "--quiet", "--seed", 0],
                       capsys)
    assert code == 0, err
    assert "ddim, 20 steps" in err
    np.testing.assert_allclose(np.load(out), sample_run(digits_run, 6, "ddim", 20, noise=np.load(noise), cond=4),
                               atol=1e-6)
    assert psnr(np.load(out), x[:6]) > 25


@pytest.mark.parametrize("sampler, fragment", [("ddpm", "ddpm is stochastic"), ("euler-a", "euler-a is stochastic"),
                                               ("dpmpp-2m", "dpmpp-2m is not what inversion inverts")])
def test_cli_invert_with_another_sampler_is_refused(edit_digits_dir, images, tmp_path, capsys, sampler, fragment):
    np.save(tmp_path / "in.npy", images[0][:2])
    code, _, err = run(["invert", "--run", edit_digits_dir, "--image", tmp_path / "in.npy", "--sampler", sampler,
                        "--out", tmp_path / "z.npy"], capsys)
    assert_user_error(code, err, fragment)
    assert not (tmp_path / "z.npy").exists()


# --- interpolation -------------------------------------------------------------------------------------------------

def test_slerp_keeps_the_norm_between_orthogonal_noises_and_ends_at_them():
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    path = slerp(a, b, torch.linspace(0, 1, 5))
    assert torch.allclose(path.norm(dim=1), torch.full((5,), 3.0))
    assert torch.allclose(path[0], a) and torch.allclose(path[-1], b)
    assert torch.allclose(path[2], torch.tensor([3 / 2**0.5, 3 / 2**0.5]))


def test_interpolating_seeds_ends_at_each_seeds_sample(digits_run):
    strip = interpolate_run(digits_run, 5, seeds=(1, 2), cond=3, guidance=2, sampler="ddim", steps=10)
    for end, seed in ((strip[0], 1), (strip[-1], 2)):
        np.testing.assert_allclose(end, sample_run(digits_run, 1, "ddim", 10, cond=3, guidance=2, seed=seed)[0],
                                   atol=1e-5)
    assert np.abs(strip[2] - strip[0]).mean() > 1e-3


def test_interpolating_classes_blends_their_embeddings_at_one_noise(digits_run):
    strip = interpolate_run(digits_run, 4, seed=5, classes=(1, 7), guidance=2, sampler="ddim", steps=10)
    z = start_noise(digits_run, 5)[None].numpy()
    for end, cls in ((strip[0], 1), (strip[-1], 7)):
        np.testing.assert_allclose(end, sample_run(digits_run, 1, "ddim", 10, cond=cls, guidance=2, noise=z)[0],
                                   atol=1e-5)


def test_interpolating_prompts_ends_at_each_prompt(digits_text_run):
    r = load_run(digits_text_run)
    strip = interpolate_run(r, 3, seed=2, prompts=("the digit 4", "a handwritten seven"), guidance=2, sampler="ddim",
                            steps=6)
    z = start_noise(r, 2)[None].numpy()
    for end, prompt in ((strip[0], "the digit 4"), (strip[-1], "a handwritten seven")):
        np.testing.assert_allclose(end, sample_run(r, 1, "ddim", 6, prompt=prompt, guidance=2, noise=z)[0], atol=1e-5)


def test_cli_interpolate_and_its_bad_input(edit_digits_dir, tmp_path, capsys):
    out, grid = tmp_path / "i.npy", tmp_path / "i.png"
    code, _, err = run(["interpolate", "--run", edit_digits_dir, "--classes", "1,7", "--seed", 3, "--guidance", 2,
                        "--n", 6, "--out", out, "--grid", grid, "--quiet"], capsys)
    assert code == 0, err
    assert np.load(out).shape == (6, 1, 8, 8) and grid.exists()
    side = json.loads(out.with_suffix(".json").read_text())  # the run's own sampler kept deterministic, recorded
    own = deterministic_own(load_run(edit_digits_dir).config)
    assert (side["sampler"], side["steps"]) == own and None not in own
    code, _, err = run(["interpolate", "--run", edit_digits_dir, "--seeds", "1,2", "--classes", "1,7",
                        "--out", tmp_path / "j.npy"], capsys)
    assert_user_error(code, err, "exactly one of them")
    code, _, err = run(["interpolate", "--run", edit_digits_dir, "--seeds", "1,2,3", "--out", tmp_path / "j.npy"],
                       capsys)
    assert_user_error(code, err, "two seeds")
    assert not (tmp_path / "j.npy").exists()
