"""diffusers' AutoencoderKL (Stable Diffusion's VAE; Rombach et al. 2022, sec. 3) behind the interface of diffkit's
own VAE (nn/vae.py) where latent diffusion uses it: encode(x in [-1, 1]) -> (posterior mean, log-variance) and
decode(z) -> pixels in [-1, 1]. The latents it takes and gives are unscaled: the run's latent scale (the folder's
scaling_factor) multiplies them on the way into the diffusion, as for a trained VAE run."""

from __future__ import annotations

import torch
from torch import nn

from .diffusers_unet import diffusers_class


class DiffusersVAE(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.vae = diffusers_class("AutoencoderKL").from_config(config)
        self.factor = 2 ** (len(config.get("block_out_channels", (64,))) - 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        posterior = self.vae.encode(x).latent_dist
        return posterior.mean, posterior.logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z).sample
