"""A convolutional KL autoencoder (Kingma & Welling 2014), the compressor of latent diffusion (Rombach et al.
2022, sec. 3.1): an encoder maps an image to the mean and log-variance of a Gaussian over latents f times
smaller per side, a decoder maps a latent back to pixels. Trained on reconstruction MSE + beta KL(q(z|x) ||
N(0, I)) with a small beta, so the latent space stays smooth but nearly deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError

FACTORS = (2, 4, 8)


@dataclass
class VAEConfig:
    in_channels: int = 1            # image channels
    factor: int = 4                 # f: latents are (H / f) x (W / f)
    latent_channels: int = 4        # channels of a latent
    channels: int = 32              # width of the first level; doubles per downsampling, up to 4x
    num_res_blocks: int = 1         # residual blocks per level
    kl_weight: float = 1e-4         # beta: weight of the KL term (per pixel) against the per-pixel MSE
    groups: int = 8                 # GroupNorm groups
    num_classes: int = 0            # the registry's contract (an autoencoder is never class-conditional)
    num_timesteps: int = 1000       # the registry's contract (unused)

    @property
    def levels(self) -> int:
        return int(math.log2(self.factor))

    def widths(self) -> list[int]:
        return [self.channels * min(2**level, 4) for level in range(self.levels + 1)]

    def latent_shape(self, shape) -> tuple[int, int, int]:
        _, H, W = shape
        return self.latent_channels, H // self.factor, W // self.factor

    def check(self) -> VAEConfig:
        if self.factor not in FACTORS:
            raise ConfigError(f"the VAE's downsampling factor must be one of {', '.join(map(str, FACTORS))}, "
                              f"got {self.factor}")
        if min(self.in_channels, self.latent_channels, self.channels, self.num_res_blocks, self.groups) <= 0:
            raise ConfigError("VAE channels, latent channels, residual blocks and groups must be positive")
        if self.num_classes:
            raise ConfigError("an autoencoder is not class-conditional; train it without --cond")
        if not self.kl_weight >= 0:
            raise ConfigError(f"the KL weight must be >= 0, got {self.kl_weight}")
        return self

    def check_input(self, shape, what: str = "the data") -> None:
        C, H, W = shape
        if C != self.in_channels:
            raise ConfigError(f"the VAE takes {self.in_channels} channels but {what} has {C}")
        if H % self.factor or W % self.factor:
            fits = [f for f in FACTORS if H % f == 0 and W % f == 0]
            raise ConfigError(f"a VAE factor of {self.factor} does not divide {what}'s {H}x{W}; use "
                              f"{' or '.join(map(str, fits)) if fits else 'images whose sides are even'} (--factor)")

    def activation_floats(self, shape) -> int:
        """About how many floats one training sample keeps for the backward pass (encoder and decoder)."""
        _, H, W = shape
        return sum(24 * (self.num_res_blocks + 1) * w * (H // 2**lv) * (W // 2**lv)
                   for lv, w in enumerate(self.widths()))


class Block(nn.Module):
    """out = skip(x) + conv(silu(norm(conv(silu(norm(x))))))."""

    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(math.gcd(groups, c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(math.gcd(groups, c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class VAE(nn.Module):
    """forward(x [B, C, H, W] in [-1, 1], noise [B, c, H/f, W/f] | None) -> (x_hat, mean, logvar); noise None
    decodes the posterior mean. encode / decode for latent diffusion."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        widths, g, n = cfg.widths(), cfg.groups, cfg.num_res_blocks
        enc = [nn.Conv2d(cfg.in_channels, widths[0], 3, padding=1)]
        for level in range(cfg.levels):
            enc += [Block(widths[level], widths[level], g) for _ in range(n)]
            enc.append(nn.Conv2d(widths[level], widths[level + 1], 3, stride=2, padding=1))
        enc += [Block(widths[-1], widths[-1], g), nn.GroupNorm(math.gcd(g, widths[-1]), widths[-1]), nn.SiLU(),
                nn.Conv2d(widths[-1], 2 * cfg.latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec = [nn.Conv2d(cfg.latent_channels, widths[-1], 3, padding=1), Block(widths[-1], widths[-1], g)]
        for level in reversed(range(cfg.levels)):
            dec += [Block(widths[level + 1], widths[level + 1], g) for _ in range(n)]
            dec += [nn.Upsample(scale_factor=2.0, mode="nearest"),
                    nn.Conv2d(widths[level + 1], widths[level], 3, padding=1)]
        dec += [Block(widths[0], widths[0], g), nn.GroupNorm(math.gcd(g, widths[0]), widths[0]), nn.SiLU(),
                nn.Conv2d(widths[0], cfg.in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior q(z | x) = N(mean, exp(logvar)), each [B, c, H/f, W/f]."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)  # as in latent diffusion's DiagonalGaussianDistribution

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None):
        mean, logvar = self.encode(x)
        z = mean if noise is None else mean + torch.exp(0.5 * logvar) * noise  # reparameterisation (eq. 10)
        return self.decode(z), mean, logvar


def vae_loss(x: torch.Tensor, x_hat: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor,
             kl_weight: float) -> torch.Tensor:
    """Per-sample MSE per pixel + kl_weight x KL(N(mean, exp(logvar)) || N(0, I)) per pixel, float32 [B]."""
    x, x_hat, mean, logvar = x.float(), x_hat.float(), mean.float(), logvar.float()
    pixels = x[0].numel()
    rec = (x_hat - x).square().flatten(1).mean(1)
    kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).flatten(1).sum(1) / pixels  # Kingma & Welling, app. B
    return rec + kl_weight * kl
