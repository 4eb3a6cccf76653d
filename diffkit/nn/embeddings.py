"""Time embeddings."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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


GUIDANCE_KEY = "w"  # a cond's entry for the guidance scale (cond.with_guidance)


def embed_classes(table: nn.Embedding, cond: torch.Tensor) -> torch.Tensor:
    """Class ids [B] -> their embeddings; class weights float [B, classes + 1] -> the weighted sum of the rows (a
    blend between classes: interpolation, cond.ClassConditioning)."""
    if cond.is_floating_point():
        return cond.to(table.weight.dtype) @ table.weight
    if torch.is_grad_enabled() and table.weight.requires_grad:
        # training: the rows picked by a one-hot mask, multiplied and summed in the weights' dtype (elementwise, so
        # autocast leaves it in float32: the same values as the lookup). Its gradient is a sum over the batch in a
        # fixed order; compiled (torch 2.13's inductor) the lookup's gradient scattered the rows in a varying order,
        # and the same seed trained different weights run to run. No autocast region here: one inside a compiled
        # network keeps AOTAutograd's cache from storing it, and every compiled run traced it again (~5 s).
        mask = F.one_hot(cond, table.num_embeddings).to(table.weight.dtype)  # [B, rows]
        return (mask[:, :, None] * table.weight[None]).sum(1)
    return table(cond)


def split_guidance(cond):
    """(the cond without w, w float [B] or None): the class ids or text dict a network reads, and w apart."""
    if not isinstance(cond, dict) or GUIDANCE_KEY not in cond:
        return cond, None
    rest = {k: v for k, v in cond.items() if k != GUIDANCE_KEY}
    return rest.get("labels", rest), cond[GUIDANCE_KEY]


class GuidanceEmbedding(nn.Module):
    """The guidance scale w as an embedding added to the time embedding (Meng et al. 2023, 'On Distillation of
    Guided Diffusion Models', sec. 4.1): sinusoidal features of w, an MLP whose last layer starts at zero, so a
    student built from its teacher starts as the teacher. w absent (None): w = 1, the plain conditional model."""

    def __init__(self, dim: int, features: int = 64):
        super().__init__()
        self.features = SinusoidalEmbedding(features, scale=100.0)  # w in 0..10 spans ~1000 units, as time does
        self.mlp = nn.Sequential(nn.Linear(features, dim), nn.SiLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, w: torch.Tensor | None, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if w is None:
            w = torch.ones_like(t, dtype=torch.float32)
        return self.mlp(self.features(w).to(dtype))
