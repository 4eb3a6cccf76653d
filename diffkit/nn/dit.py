"""DiT: a transformer denoiser on image patches (Peebles & Xie 2023, 'Scalable Diffusion Models with
Transformers'). The image (or a VAE's latent) is cut into p x p patches, each a token; fixed 2-D sine-cosine
position embeddings mark where a token sits; transformer blocks read the time (+ class) embedding c through
adaLN-Zero: LayerNorm without its own affine, then a shift and scale regressed from c, and a gate on each
residual branch initialised to zero, so every block starts as the identity (sec. 3.2). A final adaLN and a
zero-initialised linear layer turn tokens back into patches of the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError, choice_error
from .attention import CrossAttention, pooled, text_parts
from .embeddings import (
    GuidanceEmbedding,
    SinusoidalEmbedding,
    embed_classes,
    split_guidance,
)

# size presets (--dit-size), small enough for a CPU; the paper's S/B/L/XL are 384/768/1024/1152 wide
DIT_SIZES = {"tiny": (64, 4, 4), "small": (128, 6, 4), "base": (192, 8, 6)}  # width, depth, heads


@dataclass
class DiTConfig:
    in_channels: int = 1            # image channels, or a VAE's latent channels
    patch_size: int = 2             # p: tokens are p x p patches; must divide the input's height and width
    width: int = 128                # token dimension D
    depth: int = 6                  # transformer blocks
    heads: int = 4                  # attention heads (D divisible by heads)
    mlp_ratio: float = 4.0          # hidden width of each block's MLP = mlp_ratio * D
    num_classes: int = 0            # > 0: class-conditional, label `num_classes` is the learned null class
    context_dim: int = 0            # > 0: text-conditional: each block cross-attends to token embeddings of this
                                    # width between its self-attention and MLP (as PixArt-alpha, Chen et al. 2023)
    num_timesteps: int = 1000       # training T (sets the time-embedding scale)
    guidance_embed: bool = False    # reads the guidance scale w from the cond (a guidance-distilled student)

    def check(self) -> DiTConfig:
        if min(self.in_channels, self.patch_size, self.width, self.depth, self.heads) <= 0 or self.mlp_ratio <= 0 \
                or self.context_dim < 0:
            raise ConfigError("DiT channels, patch size, width, depth, heads and mlp ratio must be positive")
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ConfigError(f"the DiT width {self.width} must split into {self.heads} heads of an even size")
        if self.width % 4:
            raise ConfigError(f"the DiT width must be a multiple of 4 (2-D position embedding), got {self.width}")
        return self

    def check_input(self, shape, what: str = "the data") -> None:
        """A ConfigError unless the patch size divides the input's height and width (shape [C, H, W])."""
        C, H, W = shape
        if C != self.in_channels:
            raise ConfigError(f"the DiT takes {self.in_channels} channels but {what} has {C}")
        if H % self.patch_size or W % self.patch_size:
            divisors = [p for p in range(1, min(H, W) + 1) if H % p == 0 and W % p == 0]
            raise ConfigError(f"DiT patch size {self.patch_size} does not divide {what}'s {H}x{W}; use one of "
                              f"{', '.join(map(str, divisors))} (--patch-size)")

    def activation_floats(self, shape) -> int:
        """About how many floats one training sample keeps for the backward pass: ~20 token tensors and the
        attention scores per block."""
        _, H, W = shape
        n = (H // self.patch_size) * (W // self.patch_size)
        return self.depth * (20 * n * self.width + 2 * self.heads * n * n)


def sincos_2d(width: int, h: int, w: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings [h * w, width]: half the channels encode the row, half the
    column (as in MAE and DiT)."""
    def one_axis(dim: int, pos: torch.Tensor) -> torch.Tensor:
        freqs = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
        args = pos.to(torch.float64)[:, None] * freqs[None]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=1)

    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.cat([one_axis(width // 2, rows.reshape(-1)), one_axis(width // 2, cols.reshape(-1))], 1).float()


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """x + gate * attn(adaLN(x)), [x + cross-attn(x, tokens)], then x + gate * mlp(adaLN(x)); shift / scale / gate
    regressed from c."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        D = cfg.width
        self.heads = cfg.heads
        self.norm1 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(D, 3 * D)
        self.proj = nn.Linear(D, D)
        self.norm2 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        hidden = int(D * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(D, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, D))
        self.cross = CrossAttention(D, cfg.context_dim, cfg.heads) if cfg.context_dim > 0 else None
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))
        nn.init.zeros_(self.ada[1].weight)  # adaLN-Zero: every block starts as the identity
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, tokens=None, mask=None) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=1)
        B, N, D = x.shape
        q, k, v = self.qkv(modulate(self.norm1(x), shift1, scale1)).reshape(B, N, 3, self.heads, D // self.heads) \
            .permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, D)
        x = x + gate1[:, None] * self.proj(attn)
        if self.cross is not None and tokens is not None:
            x = self.cross(x, tokens, mask)
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class DiT(nn.Module):
    """network(x_t [B, C, H, W], t float [B], cond) -> prediction [B, C, H, W]; cond: class ids long [B]
    (num_classes > 0), a text cond {"tokens", "mask"} (context_dim > 0), or None."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        D, p, C = cfg.width, cfg.patch_size, cfg.in_channels
        self.patchify = nn.Conv2d(C, D, kernel_size=p, stride=p)  # one linear map per p x p patch
        self.time_embed = SinusoidalEmbedding(D, scale=1000.0 / cfg.num_timesteps)
        self.embed = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
        # one extra row: the learned null class used for classifier-free guidance
        self.class_embed = nn.Embedding(cfg.num_classes + 1, D) if cfg.num_classes > 0 else None
        self.guidance_embed = GuidanceEmbedding(D) if cfg.guidance_embed else None
        self.text_embed = nn.Linear(cfg.context_dim, D) if cfg.context_dim > 0 else None  # the pooled prompt
        self.blocks = nn.ModuleList([DiTBlock(cfg) for _ in range(cfg.depth)])
        self.norm_out = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))
        self.out = nn.Linear(D, p * p * C)
        for layer in (self.ada_out[1], self.out):  # the prediction starts at zero
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self._pos: dict = {}

    def position(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        key = (h, w, like.device, like.dtype)
        if key not in self._pos:
            self._pos[key] = sincos_2d(self.cfg.width, h, w).to(like.device, like.dtype)
        return self._pos[key]

    def conditioning(self, t: torch.Tensor, cond) -> torch.Tensor:
        cond, w = split_guidance(cond)
        c = self.embed(self.time_embed(t).to(self.patchify.weight.dtype))
        if self.guidance_embed is not None:
            c = c + self.guidance_embed(w, t, c.dtype)
        if self.class_embed is not None:
            if cond is None:
                cond = torch.full((t.shape[0],), self.cfg.num_classes, dtype=torch.long, device=t.device)
            c = c + embed_classes(self.class_embed, cond)
        tokens, mask = text_parts(cond)
        if self.text_embed is not None and tokens is not None:
            c = c + self.text_embed(pooled(tokens, mask).to(c.dtype))
        return c

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        B, C, H, W = x.shape
        p = self.cfg.patch_size
        if H % p or W % p:
            self.cfg.check_input((C, H, W), "the input")
        tokens = self.patchify(x)  # [B, D, H/p, W/p]
        h, w = tokens.shape[-2:]
        tokens = tokens.flatten(2).transpose(1, 2)  # [B, N, D]
        tokens = tokens + self.position(h, w, tokens)
        c = self.conditioning(t, cond).to(tokens.dtype)
        words, mask = text_parts(cond)
        for block in self.blocks:
            tokens = block(tokens, c, words, mask)
        shift, scale = self.ada_out(c).chunk(2, dim=1)
        patches = self.out(modulate(self.norm_out(tokens), shift, scale))  # [B, N, p * p * C]
        # unpatchify: token (i, j) holds the p x p patch at rows i p.., columns j p..
        return patches.reshape(B, h, w, p, p, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, H, W)


def dit_preset(shape, num_classes: int = 0, size: str = "small", patch_size: int | None = None,
               context_dim: int = 0) -> DiTConfig:
    """A DiT for inputs of shape [C, H, W]: patch 2 up to 16 px sides (64 tokens at 16x16), 4 above."""
    if size not in DIT_SIZES:
        raise choice_error("DiT size", size, DIT_SIZES)
    C, H, W = shape
    width, depth, heads = DIT_SIZES[size]
    if patch_size is None:
        patch_size = 2 if max(H, W) <= 16 else 4
        while patch_size > 1 and (H % patch_size or W % patch_size):
            patch_size //= 2
    return DiTConfig(in_channels=C, patch_size=patch_size, width=width, depth=depth, heads=heads,
                     num_classes=num_classes, context_dim=context_dim)

