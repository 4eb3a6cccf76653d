"""Cross-attention to a text prompt's token embeddings (Rombach et al. 2022, sec. 3.3, eq. 3: queries from the
image features, keys and values from the tokens), and the pooled prompt that joins the time embedding (Nichol et
al. 2021, GLIDE, sec. 2.3; Saharia et al. 2022, Imagen, sec. 2.2). A text cond is {"tokens": float [B, L, D],
"mask": bool [B, L]} (cond.py); padding tokens are masked out of both.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def text_parts(cond) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
    """(tokens [B, L, D], mask bool [B, L]) of a text cond, or (None, None) for anything else."""
    if isinstance(cond, dict) and "tokens" in cond:
        return cond["tokens"], cond["mask"]
    return None, None


def pooled(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of the unmasked token embeddings [B, D] (a sentence embedding, as the encoder's own pooling)."""
    m = mask.to(tokens.dtype)[..., None]  # [B, L, 1]
    return (tokens * m).sum(1) / m.sum(1).clamp(min=1.0)


class CrossAttention(nn.Module):
    """x + out(softmax(q k^T / sqrt(d)) v): q from the (normalized) queries [B, N, C], k and v from the tokens
    [B, L, D]; masked tokens get no weight. The output layer starts at zero, so the block starts as the identity."""

    def __init__(self, dim: int, context_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # x [B, N, C]
        B, N, C = x.shape
        h = self.heads
        q = self.q(self.norm(x)).reshape(B, N, h, C // h).transpose(1, 2)  # [B, h, N, C / h]
        k, v = self.kv(tokens.to(x.dtype)).reshape(B, -1, 2, h, C // h).permute(2, 0, 3, 1, 4)  # [B, h, L, C / h]
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        return x + self.out(attn.transpose(1, 2).reshape(B, N, C))


class SpatialCrossAttention(nn.Module):
    """CrossAttention over the H x W positions of a feature map [B, C, H, W] (the U-Net's)."""

    def __init__(self, ch: int, context_dim: int, heads: int):
        super().__init__()
        self.attn = CrossAttention(ch, context_dim, heads)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        seq = x.flatten(2).transpose(1, 2)  # [B, HW, C]
        return self.attn(seq, tokens, mask).transpose(1, 2).reshape(B, C, H, W)
