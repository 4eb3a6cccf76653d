"""The KL autoencoder: shapes, the loss, a run through `diffkit train-vae` (report, resume, refusals)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_cli import run
from test_images_cli import assert_user_error

from diffkit.metrics.images import psnr
from diffkit.nn.registry import build_network, network_from_dict, network_to_dict
from diffkit.nn.vae import VAE, VAEConfig, vae_loss
from diffkit.runs.vae import load_vae, reconstruct

TINY = {"channels": 8, "groups": 4}


@pytest.mark.parametrize("C, H, W, f", [(1, 8, 8, 2), (3, 16, 12, 4), (1, 16, 16, 8)])
def test_vae_shapes(C, H, W, f):
    vae = VAE(VAEConfig(in_channels=C, factor=f, latent_channels=3, **TINY))
    x = torch.rand(2, C, H, W) * 2 - 1
    mean, logvar = vae.encode(x)
    assert mean.shape == logvar.shape == (2, 3, H // f, W // f)
    x_hat, m2, _ = vae(x)
    assert x_hat.shape == x.shape and torch.equal(m2, mean)
    assert vae.decode(mean).shape == x.shape


def test_vae_loss_is_mse_plus_weighted_kl():
    x, x_hat = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.5)
    mean, logvar = torch.zeros(2, 2, 2, 2), torch.zeros(2, 2, 2, 2)
    torch.testing.assert_close(vae_loss(x, x_hat, mean, logvar, 1.0), torch.full((2,), 0.25))  # KL(N(0,1)||N(0,1)) = 0
    mean = torch.ones(2, 2, 2, 2)  # KL = 0.5 * sum(mean^2) = 0.5 * 8 = 4 per sample, per pixel 4 / 16
    torch.testing.assert_close(vae_loss(x, x_hat, mean, logvar, 2.0), torch.full((2,), 0.25 + 2.0 * 4 / 16))


def test_psnr():
    a = np.zeros((2, 1, 4, 4))
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 0.1) == pytest.approx(20.0)


def test_vae_config_round_trips_through_the_registry():
    cfg = VAEConfig(in_channels=3, factor=8, latent_channels=2, **TINY)
    d = json.loads(json.dumps(network_to_dict(cfg)))
    assert d["kind"] == "vae" and network_from_dict(d) == cfg and isinstance(build_network(cfg), VAE)


@pytest.fixture
def vae_run(digits_vae):
    return digits_vae


def test_train_vae_reports_reconstructions_that_beat_a_blank_guess(vae_run, capsys):
    config, vae = load_vae(vae_run)
    assert config.network.factor == 2 and config.fitted.shape == [1, 8, 8]
    from diffkit.data.images import load_images

    test = load_images("digits").test
    rec = reconstruct(vae, test)
    assert rec.shape == test.shape and rec.min() >= 0 and rec.max() <= 1
    blank = psnr(np.full_like(test, test.mean()), test)  # the best constant image
    assert psnr(rec, test) > blank + 6  # a trained autoencoder, not a constant


def test_train_vae_prints_psnr_fd_and_accuracy(tmp_path, capsys):
    code, out, err = run(["train-vae", "--data", "digits", "--out", tmp_path / "v", "--factor", "2", "--steps", "20",
                          "--batch-size", "16", "--json", "--quiet"], capsys)
    assert code == 0, err
    report = json.loads(out.splitlines()[-1])
    assert set(report) >= {"psnr", "fd", "fd_floor", "accuracy", "judge_accuracy", "latent_shape"}
    assert report["latent_shape"] == [4, 4, 4] and report["psnr"] > 5


def test_vae_resume_is_bitwise_identical(tmp_path):
    from diffkit.runs import train_run
    from diffkit.runs.presets import vae_config

    class Stop(Exception):
        pass

    def config():
        cfg = vae_config("digits", (1, 8, 8), factor=2)
        cfg.network.channels, cfg.train.steps, cfg.train.batch_size, cfg.train.checkpoint_every = 8, 20, 16, 10
        return cfg

    train_run(config(), tmp_path / "a", progress=False)

    def stop_at_11(rec):
        if rec.step == 11:
            raise Stop

    with pytest.raises(Stop):
        train_run(config(), tmp_path / "b", progress=False, callback=stop_at_11)
    train_run(None, tmp_path / "b", resume=True, progress=False)
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("argv, fragment", [
    (["train-vae", "--data", "mnist5k", "--factor", "8"], "a VAE factor of 8 does not divide mnist5k's 28x28; use 2 or 4"),
    (["train-vae", "--data", "digits", "--factor", "3"], "factor must be one of 2, 4, 8, got 3"),
    (["train-vae", "--data", "spiral"], "is not image data"),
    (["train-vae"], "train-vae needs --data"),
    (["train-vae", "--data", "digits", "--kl-weight", "-1"], "--kl-weight must be"),
])
def test_bad_vae_requests_are_one_sentence(tmp_path, capsys, argv, fragment):
    code, _, err = run([*argv, "--out", tmp_path / "v", "--steps", "2"], capsys)
    assert_user_error(code, err, fragment)
    assert not (tmp_path / "v").exists()


def test_a_vae_run_is_not_sampled_as_a_diffusion_model(vae_run, tmp_path, capsys):
    code, _, err = run(["sample", "--run", vae_run, "--out", tmp_path / "s.npy"], capsys)
    assert_user_error(code, err, "is a VAE run", "--latent")
