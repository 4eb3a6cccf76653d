"""`diffkit train --latent auto`: the data's default VAE trained on first use into OUT-vae beside the run,
recorded by the run, reused by a later run there, resumed where it was interrupted; and its refusals. Text to
image on shapes is latent by default (presets.TEXT_LATENT), --pixel one flag away."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace

import pytest
from test_cli import run
from test_images_cli import assert_user_error

from diffkit.errors import CheckpointError
from diffkit.runs import recipes
from diffkit.runs.vae import vae_sha256
from diffkit.store.rundir import checkpoint_steps, read_config

SMALL = ["--steps", "3", "--batch-size", "16", "--channels", "8", "--quiet"]


@pytest.fixture
def small_vae(monkeypatch):
    """The default VAE recipe cut to 6 steps of 16 images (its network, data and flags as they are)."""
    default = recipes.vae_config

    def short(spec, shape, **kw):
        config = default(spec, shape, **kw)
        return replace(config, train=replace(config.train, steps=6, batch_size=16, checkpoint_every=3))

    monkeypatch.setattr(recipes, "vae_config", short)


def test_auto_trains_the_vae_beside_the_run_once_and_the_run_records_it(small_vae, tmp_path, capsys):
    out = tmp_path / "run"
    code, printed, err = run(["train", "--data", "digits", "--cond", "--latent", "auto", "--out", out, *SMALL], capsys)
    assert code == 0, err
    vae = tmp_path / "run-vae"
    assert f"training the autoencoder of digits on first use in {vae}" in printed
    vae_config = read_config(vae)
    assert vae_config.train.steps == 6 and checkpoint_steps(vae)[-1] == 6
    assert vae_config.network.factor == 4  # the default autoencoder's, as `diffkit train-vae --data digits` makes
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["latent"] == str(vae)
    assert config["fitted"]["vae_sha256"] == vae_sha256(vae)
    checksum = vae_sha256(vae)

    # a new run in the same place reuses it (no second training), and --resume of a run finds it again
    code, printed, err = run(["train", "--data", "digits", "--cond", "--latent", "auto", "--out", out, "--overwrite",
                              *SMALL], capsys)
    assert code == 0, err
    assert "first use" not in printed and vae_sha256(vae) == checksum
    code, _, err = run(["train", "--out", out, "--resume", "--latent", "auto", "--steps", "3"], capsys)
    assert_user_error(code, err, "already finished its 3 steps")

    # a VAE run that lost its weights: one sentence, not a traceback, when the run loads
    (vae / "model.safetensors").rename(vae / "moved.safetensors")
    code, _, err = run(["sample", "--run", out, "--n", "2", "--out", tmp_path / "s.npy"], capsys)
    assert_user_error(code, err, f"{vae} is a VAE run that never reached a checkpoint")
    assert not (tmp_path / "s.npy").exists()
    with pytest.raises(CheckpointError, match="has no model.safetensors"):  # the checksum's own check
        vae_sha256(vae)


def test_an_interrupted_vae_is_resumed_not_restarted(small_vae, tmp_path, capsys):
    vae = tmp_path / "run-vae"
    config = recipes.vae_train_config({"data": "digits"})
    from diffkit.runs import train_run

    train_run(config, vae, progress=False)
    shutil.rmtree(vae / "train_state" / "step-00000006")  # as if killed after the checkpoint at step 3
    code, printed, err = run(["train", "--data", "digits", "--latent", "auto", "--out", tmp_path / "run", *SMALL],
                             capsys)
    assert code == 0, err
    assert "VAE trained 3 steps" in printed and checkpoint_steps(vae)[-1] == 6


def test_auto_refusals_are_one_sentence_and_train_nothing(tmp_path, capsys, monkeypatch):
    def train(out, *flags):
        return run(["train", "--latent", "auto", "--out", out, *SMALL, *flags], capsys)

    code, _, err = train(tmp_path / "p", "--data", "moons")
    assert_user_error(code, err, "latent space of images; moons is not image data")
    code, _, err = train(tmp_path / "p", "--data", "digits", "--net", "dit", "--channels", "8")
    assert_user_error(code, err, "shape the U-Net")
    assert not (tmp_path / "p-vae").exists()  # refused before any VAE trained

    other = tmp_path / "x-vae"
    other.mkdir()
    (other / "config.json").write_text(json.dumps(recipes.train_config({"data": "digits"}).to_dict()))
    code, _, err = train(tmp_path / "x", "--data", "digits")
    assert_user_error(code, err, "holds a run that is not a VAE")

    (tmp_path / "m-vae").mkdir()  # in the way: a VAE of another data set
    (tmp_path / "m-vae" / "config.json").write_text(json.dumps(recipes.vae_train_config({"data": "mnist5k"}).to_dict()))
    code, _, err = train(tmp_path / "m", "--data", "digits")
    assert_user_error(code, err, "holds a VAE of", "not of digits")

    monkeypatch.setitem(os.environ, "WORLD_SIZE", "2")  # a torchrun rank does not train one
    code, _, err = train(tmp_path / "t", "--data", "digits")
    assert_user_error(code, err, "the ranks of one job cannot share", "diffkit train-vae --data digits")
    assert not (tmp_path / "t-vae").exists()


def test_text_to_image_on_shapes_is_latent_by_default_and_pixel_one_flag_away(small_vae, tmp_path, capsys):
    out = tmp_path / "t2i"
    tiny = ["--steps", "2", "--batch-size", "8", "--quiet"]
    code, printed, err = run(["train", "--data", "shapes", "--text", "--out", out, *tiny], capsys)
    assert code == 0, err
    config = read_config(out)
    assert config.data.latent == str(tmp_path / "t2i-vae") and "first use" in printed
    assert config.network.channels == 64 and config.network.in_channels == 4  # the measured latent recipe's U-Net
    assert config.fitted.shape == [4, 8, 8]

    code, _, err = run(["train", "--out", out, "--resume", "--pixel"], capsys)  # a pixel flag on a latent run
    assert_user_error(code, err, "--pixel given (the run has data.latent")
    code, _, err = run(["train", "--data", "shapes", "--text", "--pixel", "--latent", "auto", "--out", tmp_path / "b",
                        *tiny], capsys)
    assert_user_error(code, err, "--pixel trains on pixels and --latent on a VAE's latents")
    assert not (tmp_path / "b-vae").exists()

    code, printed, err = run(["train", "--data", "shapes", "--text", "--pixel", "--out", tmp_path / "p",
                              "--channels", "8", *tiny], capsys)
    assert code == 0, err
    pixel = read_config(tmp_path / "p")
    assert pixel.data.latent is None and pixel.fitted.shape == [3, 32, 32] and not (tmp_path / "p-vae").exists()
    code, _, err = run(["train", "--data", "shapes", "--cond", "--out", tmp_path / "c", "--channels", "8", *tiny],
                       capsys)  # classes on shapes stay on pixels
    assert code == 0, err
    assert read_config(tmp_path / "c").data.latent is None
