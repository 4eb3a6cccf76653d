"""Time embeddings."""

from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal features of a float time t (Vaswani et al. 2017; Ho et al. 2020).

    t: float [B] on the training axis; `scale` maps it so that T steps span ~1000 units.
    """

    def __init__(self, dim: int, max_period: float = 10000.0, scale: float = 1.0):
        super().__init__()
        if dim % 2:
            raise ValueError("embedding dim must be even")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.scale = scale

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = (t.float() * self.scale)[:, None] * self.freqs[None]  # [B, dim/2]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # [B, dim]
