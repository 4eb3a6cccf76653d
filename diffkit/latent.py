"""Autoencoder runs and what latent diffusion needs from them: loading a trained VAE run, and how well it
reconstructs held-out images (PSNR, the judge's FD and class accuracy of the reconstructions)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .errors import CheckpointError
from .nn.vae import VAE, VAEConfig


def load_vae(run_dir, device=None):
    """(config, VAE in eval mode with frozen weights) of a run trained by `diffkit train-vae`; a CheckpointError
    for anything else."""
    from .training.checkpoint import MODEL, load_weights, model_checksums, read_config, read_tensors

    config = read_config(run_dir)
    if not isinstance(config.network, VAEConfig):
        raise CheckpointError(f"{run_dir} is not a VAE run (it trains a {type(config.network).__name__}); give a "
                              "run directory written by `diffkit train-vae`")
    if config.fitted.shape is None or not (Path(run_dir) / MODEL).exists():
        raise CheckpointError(f"{run_dir} is a VAE run that never reached a checkpoint; train it first "
                              "(diffkit train-vae ... --resume)")
    vae = VAE(config.network)
    tensors, _ = read_tensors(Path(run_dir) / MODEL, *model_checksums(run_dir))
    load_weights(vae, tensors, Path(run_dir) / MODEL)
    vae.eval().requires_grad_(False)
    return config, (vae if device is None else vae.to(device))


@torch.no_grad()
def reconstruct(vae: VAE, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """Images in [0, 1], [N, C, H, W], through the encoder's mean and the decoder, back in [0, 1]."""
    device = next(vae.parameters()).device
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch])).float().to(device) * 2 - 1
        out.append(((vae(x)[0].float().clamp(-1, 1) + 1) / 2).cpu().numpy())
    return np.concatenate(out) if out else np.empty_like(images)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1], over the whole set: 10 log10(1 / MSE)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def vae_report(run_dir, *, progress: bool = False, device=None) -> dict:
    """How well a VAE run reconstructs its data's held-out test split: PSNR (dB), and, where the data has a
    judge (labels), the classifier-feature FD of the reconstructions beside its floor and the share the judge
    still classifies right (against its own accuracy on the originals)."""
    from .data.images import load_images
    from .metrics.images import evaluate_images
    from .metrics.judge import load_or_train_judge

    config, vae = load_vae(run_dir, device)
    data = load_images(config.data.spec, seed=config.train.seed)
    rec = reconstruct(vae, data.test)
    out = {"psnr": psnr(rec, data.test), "n": len(rec), "factor": config.network.factor,
           "latent_shape": list(config.network.latent_shape(data.shape))}
    if data.num_classes:
        judge = load_or_train_judge(data, progress=progress)
        m = evaluate_images(rec, data, judge, labels=data.test_labels)
        out.update(fd=m["fd"], fd_floor=m["fd_floor"], accuracy=m["class_accuracy"], judge_accuracy=m["judge_accuracy"])
    return out


# --- latent diffusion --------------------------------------------------------------------------------

def vae_sha256(run_dir) -> str:
    """The checksum of a VAE run's weights (what a latent run records and checks)."""
    from .training.checkpoint import MODEL
    from .training.manifest import sha256

    return sha256((Path(run_dir) / MODEL).read_bytes())


@torch.no_grad()
def encode_images(vae: VAE, images: np.ndarray, key: str, batch: int = 256) -> np.ndarray:
    """Posterior means of images in [0, 1], float32 [N, c, H/f, W/f], computed once and cached (safetensors
    under DIFFKIT_CACHE, named by `key`: a hash of the VAE's weights and the data)."""
    from .cache import cached_tensors

    device = next(vae.parameters()).device

    def encode():
        return {"latents": torch.cat([vae.encode(torch.from_numpy(np.ascontiguousarray(images[i:i + batch])).float()
                                                 .to(device) * 2 - 1)[0].float().cpu()
                                      for i in range(0, len(images), batch)])}

    return cached_tensors(f"latents-{key[:32]}", len(images), encode, {"key": key})["latents"].numpy()


def latent_scale(latents: np.ndarray) -> float:
    """1 / std of the latents, so the diffusion model sees unit-variance data (Rombach et al. 2022, sec. 4.3.2
    and app. G: Stable Diffusion's 0.18215 is this number for its own autoencoder, measured on a batch)."""
    return float(1.0 / max(np.asarray(latents, np.float64).std(), 1e-8))


def encoded_data(config, data):
    """(latents [N, c, h, w] float32 of the train split, VAE checksum) for a latent run on ImageData `data`,
    checked: the VAE run must be a trained VAE of this data's image shape (and, on resume, the same VAE)."""
    import hashlib

    from .errors import DataError

    vae_config, vae = load_vae(config.data.latent)
    if list(vae_config.fitted.shape) != list(data.shape):
        raise DataError(f"the VAE in {config.data.latent} was trained on images of shape {vae_config.fitted.shape} "
                        f"but {config.data.spec} holds {list(data.shape)}; train a VAE on this data (diffkit "
                        f"train-vae --data {config.data.spec})")
    sha = vae_sha256(config.data.latent)
    if config.fitted.vae_sha256 not in (None, sha):
        raise DataError(f"the VAE in {config.data.latent} changed since this run started (its weights' checksum "
                        "differs); a latent run needs the VAE it was trained with")
    key = hashlib.sha256(f"{sha}|{data.fingerprint()}".encode()).hexdigest()
    return encode_images(vae, data.train, key), sha


class LatentDecoder:
    """Diffusion-space samples (latents x latent scale) -> pixels in [0, 1] through the VAE's decoder."""

    def __init__(self, vae: VAE, scale: float):
        self.vae, self.scale = vae, scale

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, batch: int = 256) -> np.ndarray:
        device = next(self.vae.parameters()).device
        out = [((self.vae.decode((x[i:i + batch] / self.scale).float().to(device)).float().clamp(-1, 1) + 1) / 2)
               .cpu().numpy() for i in range(0, len(x), batch)]
        return np.concatenate(out) if out else np.empty((0,))


def image_spec(spec: str) -> str:
    from .data.images import is_image_spec
    from .errors import ConfigError

    if not is_image_spec(spec):
        raise ConfigError(f"--latent diffuses in a VAE's latent space of images; {spec} is not image data")
    return spec


def latent_config(spec: str, vae_run, **image_options):
    """The default run (presets.image_config) of a data set diffused in the latent space of `vae_run`: the
    network sized for the latents, data.latent the VAE run's absolute path."""
    from .presets import image_config

    vae_config, _ = load_vae(vae_run)
    config = image_config(image_spec(spec), vae_config.network.latent_shape(vae_config.fitted.shape),
                          **image_options)
    config.data.latent = str(Path(vae_run).resolve())
    return config


def latent_training_data(config, data):
    """(latents, labels, class names, normalizer) of a latent run's train split (ImageData `data`, loaded with
    the run's split seed), filling in (or, on resume, keeping) config.fitted's VAE checksum, latent scale and
    pixel shape."""
    from .data.normalize import Normalizer

    fitted = config.fitted
    x, fitted.vae_sha256 = encoded_data(config, data)
    fitted.latent_scale = fitted.latent_scale or latent_scale(x)
    fitted.pixel_shape = list(data.shape)
    return x, data.train_labels, data.class_names, Normalizer(mean=[0.0], std=[1.0 / fitted.latent_scale])
