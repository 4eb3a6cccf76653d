"""MLP denoiser for points: residual blocks conditioned on a time (and optional class) embedding."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from .embeddings import (
    GuidanceEmbedding,
    SinusoidalEmbedding,
    embed_classes,
    split_guidance,
)


@dataclass
class MLPConfig:
    dim: int = 2               # data dimension
    hidden: int = 32           # width of the residual stream
    depth: int = 4             # number of residual blocks
    embed_dim: int = 64        # sinusoidal time-embedding size
    num_timesteps: int = 1000  # training T (sets the embedding scale)
    num_classes: int = 0       # > 0: class-conditional, label `num_classes` is the learned null class
    fourier_features: int = 32 # > 0: also feed cos/sin(2 pi x B) of this many random directions B (Tancik et al. 2020)
    fourier_scale: float = 0.5 # std of the entries of B
    norm: bool = False         # LayerNorm before each block
    guidance_embed: bool = False  # reads the guidance scale w from the cond (a guidance-distilled student)

    def check_input(self, shape, what: str = "the data") -> None:
        if self.dim != shape[0]:
            raise ConfigError(f"the MLP takes {self.dim}-D points but {what} has {shape[0]}-D points")

    def activation_floats(self, shape) -> int:
        """About how many floats one training sample keeps for the backward pass (~8 per hidden unit and block)."""
        return 8 * self.hidden * (self.depth + 2) + 4 * (self.embed_dim + self.fourier_features)


class ResidualBlock(nn.Module):
    """h + W2 silu(W1 norm(h) + e): a pre-norm MLP block with an additive embedding e."""

    def __init__(self, hidden: int, norm: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(hidden) if norm else nn.Identity()
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h, e):
        return h + self.fc2(nn.functional.silu(self.fc1(self.norm(h)) + e))


class MLP(nn.Module):
    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.cfg = cfg
        self.time_embed = SinusoidalEmbedding(cfg.embed_dim, scale=1000.0 / cfg.num_timesteps)
        self.embed = nn.Sequential(nn.Linear(cfg.embed_dim, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden))
        # one extra row: the learned null class used for classifier-free guidance
        self.class_embed = nn.Embedding(cfg.num_classes + 1, cfg.hidden) if cfg.num_classes > 0 else None
        self.guidance_embed = GuidanceEmbedding(cfg.hidden) if cfg.guidance_embed else None
        in_dim = cfg.dim
        if cfg.fourier_features:
            self.register_buffer("fourier", torch.randn(cfg.dim, cfg.fourier_features) * cfg.fourier_scale)
            in_dim += 2 * cfg.fourier_features
        self.inp = nn.Linear(in_dim, cfg.hidden)
        self.blocks = nn.ModuleList(ResidualBlock(cfg.hidden, cfg.norm) for _ in range(cfg.depth))
        self.block_embed = nn.Linear(cfg.hidden, cfg.depth * cfg.hidden)  # every block's e at once
        self.out_norm = nn.LayerNorm(cfg.hidden)
        self.out = nn.Linear(cfg.hidden, cfg.dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def embedding(self, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """Per-block embeddings [B, depth, hidden] of time t [B] (and class cond [B])."""
        cond, w = split_guidance(cond)
        emb = self.embed(self.time_embed(t).to(self.inp.weight.dtype))  # [B, hidden]
        if self.guidance_embed is not None:
            emb = emb + self.guidance_embed(w, t, emb.dtype)
        if self.class_embed is not None:
            if cond is None:
                cond = torch.full((t.shape[0],), self.cfg.num_classes, dtype=torch.long, device=t.device)
            emb = emb + embed_classes(self.class_embed, cond)
        return self.block_embed(nn.functional.silu(emb)).unflatten(1, (self.cfg.depth, self.cfg.hidden))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cfg.fourier_features:
            return x
        proj = 2 * torch.pi * x @ self.fourier  # [B, F]
        return torch.cat([x, torch.cos(proj), torch.sin(proj)], dim=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        e = self.embedding(t, cond)  # [B, depth, hidden]
        h = self.inp(self.features(x))  # [B, hidden]
        # unbind, not e[:, i]: indexing's backward zero-fills a full [B, depth, hidden] gradient per block
        for block, e_i in zip(self.blocks, e.unbind(1)):
            h = block(h, e_i)
        return self.out(nn.functional.silu(self.out_norm(h)))
