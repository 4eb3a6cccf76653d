"""Latent diffusion: a diffusion run on a VAE's latents (cached encoding, measured latent scale), sampled
through every sampler and decoded to pixels; resume, determinism and the refusals of --latent."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_cli import run
from test_images_cli import assert_user_error

from diffkit.cli import main
from diffkit.runs import default_config, sample_run, train_run
from diffkit.runs.vae import latent_scale
from diffkit.sampling import SAMPLERS


@pytest.fixture(scope="module")
def vae_run(digits_vae):
    return digits_vae


def latent_config(vae_run, steps=20, net=None):
    cfg = default_config("digits", cond=True, latent=vae_run, net=net, dit_size="tiny")
    if net is None:
        cfg.network.channels = 8
    cfg.train.steps, cfg.train.batch_size, cfg.train.checkpoint_every = steps, 32, 10
    return cfg


@pytest.fixture(scope="module")
def latent_run(vae_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("lat") / "run"
    train_run(latent_config(vae_run, 30), out, progress=False)
    return out


def test_a_latent_run_records_its_vae_and_the_measured_scale(latent_run, vae_run):
    cfg = json.loads((latent_run / "config.json").read_text())
    fitted, data = cfg["fitted"], cfg["data"]
    assert fitted["kind"] == "latents" and fitted["shape"] == [4, 4, 4] and fitted["pixel_shape"] == [1, 8, 8]
    assert data["latent"] == str(vae_run.resolve()) and cfg["network"]["in_channels"] == 4
    # the scale is 1 / std of the train split's encoded latents: the model sees unit variance
    from diffkit.data.images import load_images
    from diffkit.runs.vae import encode_images, load_vae

    _, vae = load_vae(vae_run)
    z = encode_images(vae, load_images("digits").train, "test-key-not-cached-elsewhere")
    assert fitted["latent_scale"] == pytest.approx(latent_scale(z), rel=1e-5)
    assert float(np.std(z * fitted["latent_scale"])) == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_decodes_latents_to_pixels(latent_run, name):
    steps = 4 if name != "ddpm" else 6
    x = sample_run(latent_run, 6, name, steps, seed=3, cond=2, guidance=2.0)
    assert x.shape == (6, 1, 8, 8) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert np.array_equal(x, sample_run(latent_run, 6, name, steps, seed=3, cond=2, guidance=2.0))  # bitwise


def test_sample_cli_writes_pixel_images_grid_and_a_gif_of_decoded_x0_hat(latent_run, tmp_path, capsys):
    code, _, err = run(["sample", "--run", latent_run, "--out", tmp_path / "s.npy", "--n", "12", "--class", "4",
                        "--guidance", "3", "--sampler", "dpmpp-2m", "--steps", "5", "--grid", tmp_path / "g.png",
                        "--gif", tmp_path / "g.gif", "--seed", "0", "--quiet"], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "s.npy").shape == (12, 1, 8, 8)
    from PIL import Image

    with Image.open(tmp_path / "g.gif") as gif:
        assert gif.n_frames >= 5


def test_latent_resume_is_bitwise_identical(vae_run, tmp_path):
    class Stop(Exception):
        pass

    train_run(latent_config(vae_run), tmp_path / "a", progress=False)

    def stop_at_11(rec):
        if rec.step == 11:
            raise Stop

    with pytest.raises(Stop):
        train_run(latent_config(vae_run), tmp_path / "b", progress=False, callback=stop_at_11)
    train_run(None, tmp_path / "b", resume=True, progress=False)
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_dit_trains_on_latents(vae_run, tmp_path):
    train_run(latent_config(vae_run, 10, net="dit"), tmp_path / "d", progress=False)
    x = sample_run(tmp_path / "d", 4, "dpmpp-2m", 4, seed=0, cond=1, guidance=3.0)
    assert x.shape == (4, 1, 8, 8)


def test_bad_latent_requests_are_one_sentence(vae_run, latent_run, tmp_path, capsys):
    def train(*flags):
        return run(["train", "--out", tmp_path / "r", "--steps", "2", "--quiet", *flags], capsys)

    code, _, err = train("--data", "digits", "--latent", latent_run)
    assert_user_error(code, err, "is not a VAE run", "diffkit train-vae")
    code, _, err = train("--data", "mnist5k", "--latent", vae_run)
    assert_user_error(code, err, "trained on images of shape [1, 8, 8] but mnist5k holds [1, 28, 28]")
    code, _, err = train("--data", "moons", "--latent", vae_run)
    assert_user_error(code, err, "moons is not image data")
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    shutil.copy(vae_run / "config.json", untrained / "config.json")
    code, _, err = train("--data", "digits", "--latent", untrained)
    assert_user_error(code, err, "never reached a checkpoint")
    code, _, err = train("--data", "digits", "--latent", tmp_path / "nothing")
    assert_user_error(code, err, "does not exist")
    assert not (tmp_path / "r").exists()


def test_a_changed_vae_is_refused_when_sampling(vae_run, tmp_path, capsys):
    vae = tmp_path / "vae"
    shutil.copytree(vae_run, vae)
    out = tmp_path / "run"
    train_run(latent_config(vae, 10), out, progress=False)
    assert main(["train-vae", "--out", str(vae), "--overwrite", "--data", "digits", "--factor", "2", "--steps", "5",
                 "--batch-size", "16", "--quiet"]) == 0  # another VAE in the same place
    code, _, err = run(["sample", "--run", out, "--out", tmp_path / "s.npy", "--n", "4"], capsys)
    assert_user_error(code, err, "changed since", "restore that VAE run")
