"""Editing (runs/edit.py): img2img from part-way along any sampler's grid, inpainting that keeps the known pixels
exactly, on pixel, latent and point runs; the samplers' per-step hook; negative conditions in guidance."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_cli import run
from test_images_cli import assert_user_error

from diffkit.cli import main
from diffkit.cond import ClassConditioning, pad_tokens, split_negative, with_negative
from diffkit.config import ParentConfig
from diffkit.data.images import load_images
from diffkit.denoiser import Denoiser
from diffkit.errors import ConfigError
from diffkit.runs import load_run, sample_run
from diffkit.runs.edit import check_mask, edit_run
from diffkit.sampling import SAMPLERS, sample, sampler_grid
from diffkit.sampling.grids import part_way
from diffkit.schedule import NoiseSchedule

TINY = ["--channels", "8", "--quiet"]


@pytest.fixture(scope="module")
def digits_run(edit_digits_dir):
    return load_run(edit_digits_dir)


@pytest.fixture(scope="module")
def latent_run(tmp_path_factory, digits_vae):
    out = tmp_path_factory.mktemp("edit") / "latent"
    assert main(["train", "--data", "digits", "--cond", "--latent", str(digits_vae), "--out", str(out), "--steps",
                 "20", *TINY]) == 0
    return load_run(out)


@pytest.fixture(scope="module")
def digits():
    data = load_images("digits")
    return data.test[:16], data.test_labels[:16]


def bottom_half(shape=(8, 8)) -> np.ndarray:
    m = np.zeros(shape, np.float32)
    m[shape[0] // 2:] = 1
    return m


# --- the samplers' hook and the grid's tail ------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_calls_the_hook_at_each_next_level_and_goes_on_from_its_x(name, digits_run):
    den = digits_run.denoiser
    grid = sampler_grid(den.schedule, name, 6)
    seen = []

    def hook(t_next, x):
        seen.append(t_next)
        return torch.zeros_like(x) if t_next < 0 else x

    x = sample(den, torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)), name, 6, hook=hook,
               generator=torch.Generator().manual_seed(1))
    assert seen == [float(t) for t in grid[1:]] + [-1.0]
    assert torch.count_nonzero(x) == 0  # the hook's x is what the sampler returns


def test_part_way_keeps_the_last_strength_share_of_the_grid():
    grid = torch.arange(20, 0, -1).double()
    assert len(part_way(grid, 0.0)) == 0 and torch.equal(part_way(grid, 1.0), grid)
    assert torch.equal(part_way(grid, 0.25), grid[15:]) and len(part_way(grid, 0.6)) == 12
    with pytest.raises(ConfigError, match=r"strength is a number in \[0, 1\]"):
        part_way(grid, 1.5)


# --- img2img -------------------------------------------------------------------------------------------------------

def test_strength_zero_returns_the_input_and_one_is_plain_sampling(digits_run, digits):
    x, _ = digits
    assert np.abs(edit_run(digits_run, x, strength=0.0) - x).max() <= 1 / 255
    edited = edit_run(digits_run, x[:6], strength=1.0, cond=3, guidance=2, sampler="dpmpp-2m", steps=8, seed=4)
    np.testing.assert_array_equal(edited, sample_run(digits_run, 6, "dpmpp-2m", 8, cond=3, guidance=2, seed=4))


def test_the_result_moves_away_from_the_input_as_strength_grows(digits_run, digits):
    x, _ = digits
    far = [np.abs(edit_run(digits_run, x, strength=s, sampler="ddim", steps=20, seed=1) - x).mean()
           for s in (0.1, 0.4, 0.7, 1.0)]
    assert far == sorted(far) and far[0] < 0.5 * far[-1], far


# --- inpainting ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_inpainting_keeps_the_known_pixels_with_every_sampler(name, digits_run, digits):
    x, y = digits
    out = edit_run(digits_run, x, mask=bottom_half(), cond=y.tolist(), guidance=2, sampler=name, steps=6, seed=2)
    assert np.abs(out[..., :4, :] - x[..., :4, :]).max() <= 1 / 255
    assert np.abs(out[..., 4:, :] - x[..., 4:, :]).mean() > 0.02  # the masked half was regenerated


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_resampling_jumps_keep_the_known_pixels_and_cost_a_call_each(sampler, digits_run, digits):
    x, y = digits
    calls = []
    out = edit_run(digits_run, x, mask=bottom_half(), cond=y.tolist(), guidance=2, sampler=sampler, steps=5,
                   resample=2, callback=calls.append)
    assert np.abs(out[..., :4, :] - x[..., :4, :]).max() <= 1 / 255 and len(calls) == 5
    plain = edit_run(digits_run, x, mask=bottom_half(), cond=y.tolist(), guidance=2, sampler=sampler, steps=5)
    assert np.abs(out - plain).mean() > 1e-3  # the jumps changed the path


def test_resampling_needs_a_mask_and_a_one_step_sampler(digits_run, digits):
    with pytest.raises(ConfigError, match="give a mask"):
        edit_run(digits_run, digits[0], resample=1)
    with pytest.raises(ConfigError, match="RePaint's loop of ddim or ddpm steps"):
        edit_run(digits_run, digits[0], mask=bottom_half(), resample=1, sampler="dpmpp-2m")
    with pytest.raises(ConfigError, match="takes no s_tmax; drop it or --resample"):  # not run, so not recorded
        edit_run(digits_run, digits[0][:2], mask=bottom_half(), resample=1, sampler="ddpm", steps=4, s_tmax=3.0)
    # no sampler asked for: ddim's loop, though the run's own sampler is dpmpp-2m
    x, y = digits
    assert digits_run.config.sampling.sampler == "dpmpp-2m"
    asked = edit_run(digits_run, x, mask=bottom_half(), cond=y.tolist(), sampler="ddim", steps=5, resample=1, seed=3)
    assert np.array_equal(edit_run(digits_run, x, mask=bottom_half(), cond=y.tolist(), steps=5, resample=1, seed=3),
                          asked)
    # a student keeps its own sampler's refusal (ddim at 50 steps would leave the levels it learned)
    student = replace(digits_run, config=replace(digits_run.config, sampling=replace(
        digits_run.config.sampling, sampler="consistency", steps=2), parent=ParentConfig(
        kind="consistency", path="teacher", sha256="0")))
    with pytest.raises(ConfigError, match="not consistency"):
        edit_run(student, x, mask=bottom_half(), cond=y.tolist(), resample=1)
    with pytest.raises(ConfigError, match=r"does not take option 'eta'.*--sampler ddim.* takes 'eta'"):
        edit_run(digits_run, x, cond=y.tolist(), eta=0.5)  # the run's own dpmpp-2m takes no eta; the error says who does


def test_a_latent_run_inpaints_latents_and_pastes_the_known_pixels_back(latent_run, digits):
    x, _ = digits
    mask = bottom_half()
    out = edit_run(latent_run, x, mask=mask, cond=5, guidance=2, sampler="dpmpp-2m", steps=6)
    assert np.abs(out[..., :4, :] - x[..., :4, :]).max() <= 1 / 255
    assert np.abs(out[..., 4:, :] - x[..., 4:, :]).mean() > 0.02
    assert np.array_equal(edit_run(latent_run, x, strength=0.0), x)  # nothing sampled: the input, not the VAE's copy


def test_points_fix_one_coordinate_and_generate_the_other(tiny_run):
    r = load_run(tiny_run)
    pts = np.column_stack([np.linspace(-1, 1, 64), np.zeros(64)]).astype(np.float32)
    out = edit_run(r, pts, mask=np.array([0, 1], np.float32), sampler="dpmpp-2m", steps=10)
    assert np.abs(out[:, 0] - pts[:, 0]).max() < 1e-5
    assert np.abs(out[:, 1]).mean() > 0.1  # y generated (the circle's y for each x), not the input's 0


@pytest.mark.parametrize("mask, fragment", [
    (np.full((8, 8), 0.5, np.float32), "the mask must be binary"),
    (np.zeros((7, 8), np.float32), "the mask has shape [7, 8] but the inputs are 16 of shape [1, 8, 8]"),
    (np.zeros((3, 1, 8, 8), np.float32), "the mask has shape [3, 1, 8, 8]"),
])
def test_bad_masks_are_refused_by_name(mask, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        check_mask(mask, 16, (1, 8, 8))


def test_masks_broadcast_from_a_plane_or_come_one_per_input():
    plane = bottom_half()
    assert check_mask(plane, 3, (3, 8, 8)).shape == (3, 3, 8, 8)
    per = np.stack([plane, 1 - plane])
    m = check_mask(per, 2, (1, 8, 8))
    assert np.array_equal(m[0, 0], plane) and np.array_equal(m[1, 0], 1 - plane)


# --- negative conditions -------------------------------------------------------------------------------------------

def test_a_negative_class_takes_the_null_classs_place_in_guidance():
    calls = []

    def network(x, t, cond):
        calls.append(cond.clone())
        return x * 0 + cond.float().reshape(-1, 1)  # eps = the class id

    den = Denoiser(network, NoiseSchedule.from_name("linear", 100), conditioning=ClassConditioning(10), guidance_scale=3.0)
    x = torch.zeros(2, 1)
    eps, _ = den(x, 50, with_negative(torch.tensor([1, 2]), torch.tensor([7, 7])))
    assert torch.allclose(eps.flatten(), torch.tensor([7 + 3 * (1 - 7), 7 + 3 * (2 - 7)], dtype=eps.dtype))
    assert calls[-1].tolist() == [1, 2, 7, 7]  # one batched call: cond, then the negative
    eps, _ = den(x, 50, torch.tensor([1, 2]))
    assert calls[-1].tolist() == [1, 2, 10, 10]  # without: the null class


def test_negative_prompt_tokens_are_padded_to_one_length():
    cond = {"tokens": torch.ones(2, 3, 4), "mask": torch.ones(2, 3, dtype=torch.bool)}
    neg = {"tokens": torch.full((2, 5, 4), 2.0), "mask": torch.ones(2, 5, dtype=torch.bool)}
    plain, negative = split_negative(with_negative(cond, neg))
    assert plain["tokens"].shape == (2, 5, 4) and plain["mask"][:, 3:].sum() == 0
    assert torch.equal(negative["tokens"], neg["tokens"]) and torch.equal(pad_tokens(neg, 5)["mask"], neg["mask"])


def test_negative_class_steers_away_and_is_refused_where_it_cannot_act(digits_run):
    base = sample_run(digits_run, 8, "ddim", 10, cond=1, guidance=3, seed=0)
    away = sample_run(digits_run, 8, "ddim", 10, cond=1, guidance=3, negative=7, seed=0)
    assert np.abs(base - away).mean() > 1e-3
    with pytest.raises(ConfigError, match="acts through guidance"):
        sample_run(digits_run, 8, "ddim", 10, cond=1, negative=7)


# --- the command line ----------------------------------------------------------------------------------------------

def test_cli_edit_writes_results_a_sidecar_and_a_grid(edit_digits_dir, digits_run, digits, tmp_path, capsys):
    from PIL import Image

    x, _ = digits
    np.save(tmp_path / "in.npy", x[:5])
    Image.fromarray((bottom_half() * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    out, grid = tmp_path / "e.npy", tmp_path / "e.png"
    code, _, err = run(["edit", "--run", edit_digits_dir, "--image", tmp_path / "in.npy", "--mask", tmp_path / "mask.png",
                        "--class", 3, "--guidance", 2, "--sampler", "dpmpp-2m", "--steps", 6, "--seed", 1, "--out", out,
                        "--grid", grid], capsys)
    assert code == 0, err
    edited = np.load(out)
    assert edited.shape == (5, 1, 8, 8) and np.abs(edited[..., :4, :] - x[:5, ..., :4, :]).max() <= 1 / 255
    np.testing.assert_allclose(edited, edit_run(digits_run, x[:5], mask=bottom_half(), cond=3, guidance=2,
                                                sampler="dpmpp-2m", steps=6, seed=1), atol=1e-6)
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["seed"] == 1 and side["class"] == "3" and side["mask"] == str((tmp_path / "mask.png").resolve())
    assert Image.open(grid).size[0] > Image.open(grid).size[1]  # 5 columns, 3 rows


def test_cli_edit_sidecar_names_the_sampler_it_used(edit_digits_dir, digits, tmp_path, capsys):
    """Without --sampler / --steps the sidecar records the run's own sampler and steps (not null), and giving
    those back as flags draws the same images."""
    x, _ = digits
    np.save(tmp_path / "in.npy", x[:3])
    code, _, err = run(["edit", "--run", edit_digits_dir, "--image", tmp_path / "in.npy", "--strength", 0.5,
                        "--class", 2, "--seed", 4, "--out", tmp_path / "a.npy", "--quiet"], capsys)
    assert code == 0, err
    side = json.loads((tmp_path / "a.json").read_text())
    assert side["sampler"] is not None and side["steps"] is not None
    code, _, err = run(["edit", "--run", edit_digits_dir, "--image", tmp_path / "in.npy", "--strength", 0.5,
                        "--class", 2, "--seed", 4, "--sampler", side["sampler"], "--steps", side["steps"],
                        "--out", tmp_path / "b.npy", "--quiet"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_cli_edit_resampling_without_a_sampler_runs_ddim_and_says_so(edit_digits_dir, digits, tmp_path, capsys):
    """--resample without --sampler: RePaint's loop on ddim's steps (whatever the run's own sampler), and the
    sidecar names ddim and its default 50 steps."""
    x, _ = digits
    np.save(tmp_path / "in.npy", x[:2])
    np.save(tmp_path / "mask.npy", bottom_half())
    code, _, err = run(["edit", "--run", edit_digits_dir, "--image", tmp_path / "in.npy", "--mask",
                        tmp_path / "mask.npy", "--resample", 1, "--seed", 2, "--out", tmp_path / "r.npy", "--quiet"],
                       capsys)
    assert code == 0, err
    side = json.loads((tmp_path / "r.json").read_text())
    assert (side["sampler"], side["steps"], side["resample"]) == ("ddim", 50, 1)


@pytest.mark.parametrize("make, flags, fragment", [
    (lambda p: np.save(p, np.zeros((2, 3, 8, 8), np.float32)), [], "this run makes images of shape [C, H, W] = [1, 8, 8]"),
    (lambda p: np.save(p, np.zeros((2, 1, 8, 8), np.float32)), ["--strength", "1.5"], "strength is a number in [0, 1]"),
    (lambda p: np.save(p, np.zeros((2, 1, 8, 8), np.float32)), ["--mask", "MASK"], "the mask must be binary"),
    (lambda p: np.save(p, np.zeros((2, 1, 8, 8), np.float32)), ["--negative-prompt", "red", "--class", "1",
                                                                "--guidance", "3"], "--negative-prompt applies to text runs"),
    (lambda p: np.save(p, np.full((2, 1, 8, 8), 2.0, np.float32)), [], "pixels span [2, 2]; expected [0, 1]"),
])
def test_cli_edit_bad_input_is_one_sentence_and_writes_nothing(edit_digits_dir, tmp_path, capsys, make, flags, fragment):
    make(tmp_path / "in.npy")
    np.save(tmp_path / "mask.npy", np.full((8, 8), 0.5, np.float32))
    flags = [str(tmp_path / "mask.npy") if f == "MASK" else f for f in flags]
    code, _, err = run(["edit", "--run", edit_digits_dir, "--image", tmp_path / "in.npy", "--out", tmp_path / "o.npy",
                        *flags], capsys)
    assert_user_error(code, err, fragment)
    assert not (tmp_path / "o.npy").exists() and not (tmp_path / "o.json").exists()


def test_cli_negative_class_on_a_text_run_is_refused(digits_text_run, tmp_path, capsys):
    code, _, err = run(["sample", "--run", digits_text_run, "--prompt", "the digit 4", "--guidance", 3,
                        "--negative-class", 7, "--n", 4, "--out", tmp_path / "o.npy"], capsys)
    assert_user_error(code, err, "--negative-class applies to class runs; this is a text run")
    assert not (tmp_path / "o.npy").exists()


def test_negative_prompt_on_a_text_run_changes_what_guidance_pushes_from(digits_text_run):
    r = load_run(digits_text_run)
    plain = sample_run(r, 6, "ddim", 8, prompt="the digit 4", guidance=3, seed=0)
    away = sample_run(r, 6, "ddim", 8, prompt="the digit 4", guidance=3, negative="a handwritten seven", seed=0)
    assert np.abs(plain - away).mean() > 1e-3
    with pytest.raises(ConfigError, match="this run is text, so it takes a negative prompt"):
        sample_run(r, 6, "ddim", 8, prompt="the digit 4", guidance=3, negative=7)
