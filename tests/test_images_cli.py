"""End to end on images through the CLI and runs API: train, sample (grid, GIF), eval, resume, determinism,
and every bad input (one sentence, exit 2, nothing overwritten)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from test_cli import run

from diffkit.cli import main
from diffkit.runs import default_config, load_run, train_run

TINY_FLAGS = ["--channels", "8", "--quiet"]


def assert_user_error(code, err, *fragments):
    assert code == 2, err
    lines = [line for line in err.splitlines() if not line.startswith(("notice: ", "precision: ", "threads: "))]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for f in fragments:
        assert f in err, (f, err)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("img") / "digits"
    assert main(["train", "--data", "digits", "--cond", "--out", str(out), "--steps", "30", *TINY_FLAGS]) == 0
    return out


def test_image_run_config(digits_run):
    cfg = json.loads((digits_run / "config.json").read_text())
    assert cfg["network"]["kind"] == "unet" and cfg["network"]["num_classes"] == 10
    assert cfg["fitted"]["kind"] == "images" and cfg["fitted"]["shape"] == [1, 8, 8]
    assert cfg["fitted"]["class_names"] == [str(c) for c in range(10)] and cfg["fitted"]["x0_bound"] == 1.0
    # its own sampler, what `diffkit sample` uses when none is asked for: the benchmarks' reference (presets.py)
    assert (cfg["sampling"]["sampler"], cfg["sampling"]["steps"]) == ("dpmpp-2m", 20)


def test_sample_writes_images_grid_and_gif(digits_run, tmp_path, capsys):
    out, grid, gif = tmp_path / "s.npy", tmp_path / "g.png", tmp_path / "r.gif"
    code, stdout, err = run(["sample", "--run", digits_run, "--n", 12, "--out", out, "--sampler", "dpmpp-2m",
                             "--steps", 5, "--class", 7, "--guidance", 3, "--grid", grid, "--gif", gif], capsys)
    assert code == 0, err
    x = np.load(out)
    assert x.dtype == np.float32 and x.shape == (12, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    assert Image.open(grid).size[0] >= 4 * 8 and Image.open(gif).n_frames >= 5
    sidecar = json.loads(out.with_suffix(".json").read_text())
    seed = sidecar["seed"]  # a fresh seed, recorded in the sidecar, with the interval the sampling guided in
    assert sidecar["guidance_interval"] == [4.0, 80.0] == list(load_run(digits_run).denoiser.guidance_interval)
    again = tmp_path / "again.npy"
    assert run(["sample", "--run", digits_run, "--n", 12, "--out", again, "--sampler", "dpmpp-2m", "--steps", 5,
                "--class", 7, "--guidance", 3, "--seed", seed], capsys)[0] == 0
    assert again.read_bytes() == out.read_bytes()  # same seed, same images, bitwise
    code, stdout, err = run(["eval", "--samples", out, "--data", "digits", "--class", 7, "--json"], capsys)
    assert code == 0, err
    m = json.loads(stdout)
    assert m["fd"] > m["fd_floor"] > 0 and 0 <= m["class_accuracy"] <= 1 and m["judge_accuracy"] > 0.95


def test_image_resume_is_bitwise_identical(tmp_path):
    class Stop(Exception):
        pass

    def config(steps):
        cfg = default_config("digits", cond=True)
        cfg.network.channels, cfg.train.steps, cfg.train.checkpoint_every = 8, steps, 10
        cfg.train.batch_size = 32
        return cfg

    train_run(config(20), tmp_path / "a", progress=False)

    def stop_at_11(rec):
        if rec.step == 11:
            raise Stop

    with pytest.raises(Stop):
        train_run(config(20), tmp_path / "b", progress=False, callback=stop_at_11)
    train_run(None, tmp_path / "b", resume=True, progress=False)
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_callback_stops_training_after_a_checkpoint(tmp_path):
    cfg = default_config("digits")
    cfg.network.channels, cfg.train.steps, cfg.train.batch_size = 8, 50, 16
    losses = []
    summary = train_run(cfg, tmp_path / "r", progress=False,
                        callback=lambda rec: losses.append(float(rec.loss)) or rec.step == 7)
    assert summary["final_step"] == 7 and len(losses) == 7 and all(np.isfinite(losses))
    meta = json.loads((tmp_path / "r" / "model.safetensors").read_bytes()[8:].split(b"}}", 1)[0] + b"}}")
    assert '"step": "7"' in meta["__metadata__"]["diffkit"]


# --- bad input ------------------------------------------------------------------------------------------

def _png(path, size=(8, 8), mode="L", value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 0)).save(path)


def _folder(tmp_path, sizes):
    d = tmp_path / "imgs"
    for i, size in enumerate(sizes):
        _png(d / f"{i}.png", size)
    return d


@pytest.mark.parametrize("case, fragment", [
    ("corrupt", "cannot read image"), ("mixed", "size"), ("empty", "empty"), ("no_images", ".png"),
    ("y_mismatch", "labels"), ("tiny", "at least 4x4"),
])
def test_bad_image_data_is_one_sentence(tmp_path, capsys, case, fragment):
    if case == "corrupt":
        data = _folder(tmp_path, [(8, 8)] * 12)
        (data / "3.png").write_bytes(b"\x89PNG not really")
    elif case == "mixed":
        data = _folder(tmp_path, [(8, 8)] * 11 + [(9, 8)])
    elif case == "empty":
        data = tmp_path / "empty"
        data.mkdir()
    elif case == "no_images":
        data = tmp_path / "docs"
        data.mkdir()
        (data / "notes.txt").write_text("hello")
    elif case == "y_mismatch":
        data = tmp_path / "x.npz"
        np.savez(data, x=np.zeros((20, 8, 8), np.uint8), y=np.zeros(19, np.int64))
    else:
        data = tmp_path / "x.npz"
        np.savez(data, x=np.zeros((20, 1, 1), np.uint8))
    out = tmp_path / "run"
    code, _, err = run(["train", "--data", data, "--out", out, "--steps", 2, *TINY_FLAGS], capsys)
    assert_user_error(code, err, fragment)
    assert not out.exists()


def test_odd_image_size_is_padded_with_a_notice(tmp_path, capsys):
    data = tmp_path / "odd.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.integers(0, 255, (24, 13, 13), dtype=np.uint8))
    out = tmp_path / "run"
    code, _, err = run(["train", "--data", data, "--out", out, "--steps", 3, "--batch-size", 8, *TINY_FLAGS], capsys)
    assert code == 0, err
    assert "notice:" in err and "13x13" in err and "padded" in err
    s = tmp_path / "s.npy"
    assert run(["sample", "--run", out, "--n", 3, "--steps", 3, "--out", s], capsys)[0] == 0
    assert np.load(s).shape == (3, 1, 13, 13)


def test_bad_sampling_requests_on_an_image_run(digits_run, tmp_path, capsys):
    out = tmp_path / "s.npy"
    out.write_bytes(b"keep me")
    code, _, err = run(["sample", "--run", digits_run, "--n", 4, "--out", tmp_path / "n.npy", "--class", 10], capsys)
    assert_user_error(code, err, "out of range", "0..9")
    code, _, err = run(["sample", "--run", digits_run, "--n", 10**12, "--out", tmp_path / "n.npy"], capsys)
    assert_user_error(code, err, "GiB")
    code, _, err = run(["sample", "--run", digits_run, "--n", 4, "--out", out], capsys)
    assert_user_error(code, err, "already exists")
    assert out.read_bytes() == b"keep me"
    code, _, err = run(["sample", "--run", digits_run, "--n", 4, "--out", tmp_path / "p.npy", "--plot", tmp_path / "p.png"], capsys)
    assert_user_error(code, err, "--grid")
    code, _, err = run(["train", "--data", "spiral", "--out", tmp_path / "r", "--channels", 8], capsys)
    assert_user_error(code, err, "U-Net", "points")


@pytest.mark.parametrize("flags, fragment", [(["--dropout", "1.5"], "dropout"), (["--attention", "5"], "attention"), (["--channels", "33"], "even"),
                                              (["--channel-mult", "1,x"], "comma-separated")])
def test_bad_unet_flags_are_one_sentence(tmp_path, capsys, flags, fragment):
    code, _, err = run(["train", "--data", "digits", "--out", tmp_path / "r", "--steps", 2, *flags], capsys)
    assert_user_error(code, err, fragment)
    assert not (tmp_path / "r").exists()


def test_version_1_point_runs_still_sample(tiny_run, tmp_path, capsys):
    """A run directory written before the tagged network config and the fitted section (format 1) loads."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(tiny_run, old)
    cfg = json.loads((old / "config.json").read_text())
    fitted = cfg.pop("fitted")
    cfg.pop("sampling")
    cfg["network"].pop("kind")
    cfg["data"].update({k: fitted[k] for k in ("normalizer", "x0_bound", "class_names")})
    cfg["format_version"] = 1
    (old / "config.json").write_text(json.dumps(cfg))
    (old / "manifest.json").unlink()  # format-1 runs had no checksums
    out = tmp_path / "s.npy"
    code, _, err = run(["sample", "--run", old, "--n", 10, "--steps", 3, "--out", out], capsys)
    assert code == 0, err
    assert np.load(out).shape == (10, 2)


def test_a_bad_guidance_interval_in_config_json_is_one_sentence(digits_run, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(digits_run, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["sampling"]["guidance_interval"] = [0.2]
    (bad / "config.json").write_text(json.dumps(cfg))
    code, _, err = run(["sample", "--run", bad, "--n", 2, "--out", tmp_path / "s.npy"], capsys)
    assert_user_error(code, err, "guidance_interval")
