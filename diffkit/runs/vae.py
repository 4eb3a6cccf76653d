"""VAE runs as latent diffusion uses them: loading a trained autoencoder run, its weights' checksum, encoding
images to cached latents, the latent scale, decoding samples back to pixels, and reconstructions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from ..errors import CheckpointError
from ..nn.diffusers_vae import DiffusersVAE
from ..nn.vae import VAE, VAEConfig
from ..store.cache import cached_tensors
from ..store.rundir import MODEL, model_sha256, read_config, read_model

PIPELINE = "diffusers:"  # a latent source that is a Stable-Diffusion-style pipeline folder's vae/


def load_vae(run_dir, device=None):
    """(config, VAE in eval mode with frozen weights) of a run trained by `diffkit train-vae`, or (None, its
    AutoencoderKL) for "diffusers:FOLDER" (an imported pipeline's; the run checks the folder); a CheckpointError
    for anything else."""
    if str(run_dir).startswith(PIPELINE):
        return None, _pipeline_vae(Path(str(run_dir).removeprefix(PIPELINE)), device)
    config = read_config(run_dir)
    if not isinstance(config.network, VAEConfig):
        raise CheckpointError(f"{run_dir} is not a VAE run (it trains a {type(config.network).__name__}); give a "
                              "run directory written by `diffkit train-vae`")
    if config.fitted.shape is None or not (Path(run_dir) / MODEL).exists():
        raise CheckpointError(f"{run_dir} is a VAE run that never reached a checkpoint; train it first "
                              "(diffkit train-vae ... --resume)")
    vae = VAE(config.network)
    read_model(run_dir, vae)
    vae.eval().requires_grad_(False)
    return config, (vae if device is None else vae.to(device))


def _pipeline_vae(folder: Path, device=None) -> DiffusersVAE:
    config_path, weights = folder / "vae" / "config.json", folder / "vae" / "diffusion_pytorch_model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{folder}/vae has no diffusion_pytorch_model.safetensors; restore the pipeline folder")
    vae = DiffusersVAE(json.loads(config_path.read_text()))
    vae.vae.load_state_dict(load_file(weights), strict=True)
    vae.eval().requires_grad_(False)
    return vae if device is None else vae.to(device)


def check_vae(ref, recorded: str | None, run_dir) -> None:
    """Refuse a latent run whose VAE run's weights changed since it was trained on their latents. An imported
    pipeline's VAE ("diffusers:FOLDER") is checked with the rest of its folder when the run loads (store/folder.py)."""
    if str(ref).startswith(PIPELINE):
        return
    if vae_sha256(ref) != recorded:
        raise CheckpointError(f"the VAE in {ref} changed since {run_dir} was trained on its latents (its weights' "
                              "checksum differs); restore that VAE run")


def vae_sha256(run_dir) -> str:
    """The checksum of a VAE run's weights (what a latent run records and checks)."""
    sha = model_sha256(run_dir)
    if sha is None:
        raise CheckpointError(f"the VAE run {run_dir} has no {MODEL}; restore it or train it again "
                              "(`diffkit train-vae`)")
    return sha


@torch.no_grad()
def reconstruct(vae: VAE, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """Images in [0, 1], [N, C, H, W], through the encoder's mean and the decoder, back in [0, 1]."""
    device = next(vae.parameters()).device
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch])).float().to(device) * 2 - 1
        out.append(((vae(x)[0].float().clamp(-1, 1) + 1) / 2).cpu().numpy())
    return np.concatenate(out) if out else np.empty_like(images)


@torch.no_grad()
def encode_images(vae: VAE, images: np.ndarray, key: str, batch: int = 256) -> np.ndarray:
    """Posterior means of images in [0, 1], float32 [N, c, H/f, W/f], computed once and cached (safetensors
    under DIFFKIT_CACHE, named by `key`: a hash of the VAE's weights and the data)."""
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


class LatentDecoder:
    """Diffusion-space samples (latents x latent scale) -> pixels in [0, 1] through the VAE's decoder (and back:
    encode, the posterior mean, for editing)."""

    def __init__(self, vae: VAE, scale: float):
        self.vae, self.scale = vae, scale

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, batch: int = 256) -> np.ndarray:
        device = next(self.vae.parameters()).device
        out = [((self.vae.decode((x[i:i + batch] / self.scale).float().to(device)).float().clamp(-1, 1) + 1) / 2)
               .cpu().numpy() for i in range(0, len(x), batch)]
        return np.concatenate(out) if out else np.empty((0,))

    @torch.no_grad()
    def encode(self, images: np.ndarray, batch: int = 256) -> torch.Tensor:
        """Pixels in [0, 1], [N, C, H, W] -> diffusion-space latents (the posterior mean x the latent scale),
        float32 on the CPU."""
        device = next(self.vae.parameters()).device
        out = [self.vae.encode(torch.from_numpy(np.ascontiguousarray(images[i:i + batch])).float().to(device) * 2 - 1)[0]
               .float().cpu() * self.scale for i in range(0, len(images), batch)]
        return torch.cat(out)
