"""U-Net denoiser for images (Ronneberger et al. 2015, as adapted by Ho et al. 2020, appendix B, and
Dhariwal & Nichol 2021, sec. 3): residual blocks at several resolutions, skip connections from the
down path to the up path, self-attention at chosen resolutions, and the time (and class) embedding
entering every residual block as a per-channel scale and shift of its normalized features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError, notice
from .attention import SpatialCrossAttention, pooled, text_parts
from .embeddings import (
    GuidanceEmbedding,
    SinusoidalEmbedding,
    embed_classes,
    split_guidance,
)


@dataclass
class UNetConfig:
    in_channels: int = 1            # 1 (grayscale) or 3 (RGB)
    channels: int = 32              # width of the first level
    channel_mult: tuple = (1, 2)    # width of level l = channels * channel_mult[l]; resolution halves per level
    num_res_blocks: int = 1         # residual blocks per level on the way down (one more on the way up)
    attention_levels: tuple = ()    # levels with self-attention after each residual block (mid block: always)
    head_channels: int = 32         # channels per attention head
    attention_keys: int = 0         # > 0: self-attention's keys and values average-pooled by 2, 4, ... to at most
                                    # this many positions (SelfAttention); 0: every position
    dropout: float = 0.0
    groups: int = 8                 # GroupNorm groups (Wu & He 2018)
    embed_mult: int = 4             # time-embedding width = channels * embed_mult
    num_classes: int = 0            # > 0: class-conditional, label `num_classes` is the learned null class
    context_dim: int = 0            # > 0: text-conditional on token embeddings of this width (nn/attention.py)
    cross_attention_levels: tuple | None = None  # context_dim > 0: levels with cross-attention to the tokens
                                    # after each residual block (None: every level), and always the mid block
    num_timesteps: int = 1000       # training T (sets the embedding scale)
    guidance_embed: bool = False    # reads the guidance scale w from the cond (a guidance-distilled student)

    @property
    def levels(self) -> int:
        return len(self.channel_mult)

    def activation_floats(self, shape) -> int:
        """About how many floats one training sample keeps for the backward pass: ~32 tensors the size of each
        level's feature map (GroupNorm, SiLU, convs, skips, down and up), plus each attention's score matrix.
        Measured against the 28x28 preset: 3.3 MB estimated per sample, ~4 MB seen (peak RSS at batch 128)."""
        _, H, W = shape
        total = 0
        for level, mult in enumerate(self.channel_mult):
            h, w = -(-H // 2**level), -(-W // 2**level)
            total += 32 * (self.num_res_blocks + 1) * self.channels * mult * h * w // 2
            if level in self.attention_levels or level == self.levels - 1:
                heads = max(1, self.channels * mult // self.head_channels)
                r = key_pool(h, w, self.attention_keys)
                total += 3 * heads * h * w * (-(-h // r) * -(-w // r))  # queries x (pooled) keys
        return total

    def check_input(self, shape, what: str = "the data") -> None:
        """A ConfigError unless the channels match; a notice when the levels need zero padding."""
        if self.in_channels != shape[0]:
            raise ConfigError(f"the U-Net takes {self.in_channels} channels but {what} has {shape[0]}")
        m = 2 ** (self.levels - 1)
        if shape[1] % m or shape[2] % m:
            padded = [-(-side // m) * m for side in shape[1:]]
            notice(f"{shape[1]}x{shape[2]} images are zero-padded to {padded[0]}x{padded[1]} inside the U-Net "
                   f"(its {self.levels} levels need sides divisible by {m}) and cropped back")

    def check(self) -> UNetConfig:
        """Raise a ConfigError naming the first value out of range."""
        if self.in_channels <= 0:
            raise ConfigError(f"the U-Net takes a positive number of channels (1 grayscale, 3 RGB, a VAE's latent "
                              f"channels), got {self.in_channels}")
        if self.channels <= 0 or not self.channel_mult or min(self.channel_mult) <= 0 or self.num_res_blocks <= 0 \
                or self.head_channels <= 0 or self.embed_mult <= 0 or self.groups <= 0:
            raise ConfigError("U-Net channels, channel multipliers, residual blocks, head channels, embedding "
                              "multiplier and groups must be positive integers")
        if self.channels % 2:
            raise ConfigError(f"the U-Net's first width must be even (it sizes the sinusoidal time features), "
                              f"got {self.channels}")
        for name in ("attention_levels", "cross_attention_levels"):
            if any(not 0 <= a < self.levels for a in getattr(self, name) or ()):
                raise ConfigError(f"{name.replace('_', ' ')} must be in 0..{self.levels - 1}, got "
                                  f"{list(getattr(self, name))}")
        if isinstance(self.attention_keys, bool) or not isinstance(self.attention_keys, int) \
                or self.attention_keys < 0:
            raise ConfigError(f"attention_keys is the most positions self-attention's keys are pooled to, an integer "
                              f">= 0 (0: every position), got {self.attention_keys!r}")
        if self.context_dim < 0:
            raise ConfigError(f"context_dim is the token width of a text encoder (0: no text), got {self.context_dim}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        return self


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm (Wu & He 2018), with a path of its own for the sampling fast path's bf16 channels_last maps.

    torch's CPU kernel for a channels_last map ran up to 14-25x slower than for NCHW at some shapes (2-core Zen 5 EPYC,
    AVX-512, native bf16: True; 64 x 32 x 28 x 28 in float32: 3.4-6 ms against 0.24 NCHW; 32 x 32 maps were not
    slow). Without autograd, a bf16 channels_last map (the fast path under bf16 autocast) is normalized by
    `modulated`, which never calls that kernel. With autograd it is normalized through float32; NCHW and float32
    maps (training, the fp32 fast path) take nn.GroupNorm's own path. Same parameters, same state_dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.bfloat16 and x.dim() == 4 and not x.is_contiguous():
            if not torch.is_grad_enabled():
                return self.modulated(x)
            return F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps).to(x.dtype)
        return super().forward(x)

    # the largest |group mean| / group std for which a bf16 map's mean is folded into the offset b: b's rounding then
    # costs at most 2^-9 x this of the normalized values, half a bf16 step at unit scale (GroupNorm.modulated)
    FOLD_MEAN = 2.0

    def modulated(self, x: torch.Tensor, scale=None, shift=None) -> torch.Tensor:
        """norm(x) * (1 + scale) + shift, with scale and shift [B, C, 1, 1] (adaptive group norm, Dhariwal &
        Nichol 2021) or None (plain), in x's dtype and memory layout.

        A bf16 map on the CPU: per-channel means of x and x^2 in float32 (reductions that keep the layout; all
        channels count H x W values, so a group's moments are its channels' averaged), the variance
        E[x^2] - E[x]^2, then one pass y = x a + b with per-(image, channel) a and b. Where some group's mean is
        far from zero next to its spread (> FOLD_MEAN), b's bf16 rounding would scale with the mean, so the mean
        m (rounded to bf16) is taken off first, y = (x - m) a + b: x - m is exact for x near m (Sterbenz), at the
        cost of one more pass; one such group switches the whole batch, so outputs can depend on the batch at bf16's
        rounding. Other dtypes and devices: torch's kernel (its own dtype rules under autocast), then one addcmul."""
        if x.dtype != torch.bfloat16 or x.device.type != "cpu":
            h = super().forward(x)
            return h if scale is None else torch.addcmul(shift, h, 1 + scale)
        B, C = x.shape[:2]
        G = self.num_groups
        xf = x.float()  # a copy: squared in place below
        mean_c = xf.mean((2, 3))  # [B, C]
        square_c = xf.square_().mean((2, 3))
        mean = mean_c.view(B, G, -1).mean(2, keepdim=True)  # [B, G, 1]
        rstd = torch.rsqrt((square_c.view(B, G, -1).mean(2, keepdim=True) - mean.square()).clamp_min(0) + self.eps)
        a = (rstd * self.weight.view(G, -1)).view(B, C)
        m = mean.to(x.dtype) if bool((mean.abs() * rstd).amax() > self.FOLD_MEAN) else None  # CPU: no device sync
        # (x - mean) a + bias = (x - m) a + b, m = 0 where the mean is folded into b
        b = self.bias + (((0.0 if m is None else m.float()) - mean) * a.view(B, G, -1)).view(B, C)
        if scale is not None:
            factor = 1 + scale.reshape(B, C).float()
            a, b = a * factor, b * factor + shift.reshape(B, C).float()
        if m is not None:
            x = x - m.expand(B, G, C // G).reshape(B, C, 1, 1)
        return torch.addcmul(b.to(x.dtype).view(B, C, 1, 1), x, a.to(x.dtype).view(B, C, 1, 1))


def _norm(cfg: UNetConfig, ch: int) -> nn.GroupNorm:
    return GroupNorm(math.gcd(cfg.groups, ch), ch)


def _zero(module: nn.Module) -> nn.Module:
    """Zero-initialised output layer: each residual branch starts as the identity (Goyal et al. 2017)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def heads(cfg: UNetConfig, ch: int) -> int:
    """Attention heads of ch channels: about ch / head_channels, a divisor of ch (heads of equal width)."""
    return math.gcd(ch, max(1, ch // cfg.head_channels))


class ResBlock(nn.Module):
    """h = conv(silu(norm(x))); h = norm(h) (1 + scale) + shift; out = x' + conv(dropout(silu(h)))
    with (scale, shift) a linear map of the embedding (Dhariwal & Nichol 2021, 'adaptive group norm')."""

    def __init__(self, cfg: UNetConfig, c_in: int, c_out: int, embed_dim: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(cfg, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.embed = nn.Linear(embed_dim, 2 * c_out)
        self.norm2, self.drop = _norm(cfg, c_out), nn.Dropout(cfg.dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    lean = False  # True (the sampling fast path, unet_fast.py): _lean_forward without autograd, in eval mode

    def forward(self, x, emb):  # x [B, c_in, H, W], emb [B, E] (already through SiLU)
        if self.lean and not (self.training or torch.is_grad_enabled()):
            return self._lean_forward(x, emb)
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.embed(emb)[:, :, None, None].chunk(2, dim=1)  # [B, c_out, 1, 1] each
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(self.drop(F.silu(h)))

    def _lean_forward(self, x, emb):
        """forward's arithmetic with fewer passes over the feature maps: the adaptive norm's scale and shift applied
        with the norm (GroupNorm.modulated), SiLU in place on tensors only it reads, the residual added in place
        (no dropout: eval mode)."""
        h = self.conv1(F.silu(self.norm1.modulated(x), inplace=True))
        scale, shift = self.embed(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2.modulated(h, scale, shift), inplace=True))
        return h.add_(self.skip(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H x W positions (Vaswani et al. 2017), pre-norm, residual.

    cfg.attention_keys > 0: where the map has more positions than that, every query attends to keys and values
    average-pooled over r x r windows (r = 2, 4, ...: the smallest that leaves at most that many), the linear
    spatial-reduction attention of PVT v2 (Wang et al. 2022, sec. 3.1). Its scores cost r^2 times less; each
    query still sees the whole map. Same parameters as the full attention. A partial window at the map's edge
    weighs as its pixels (window_bias)."""

    def __init__(self, cfg: UNetConfig, ch: int):
        super().__init__()
        self.heads, self.keys = heads(cfg, ch), cfg.attention_keys
        self.norm, self.qkv = _norm(cfg, ch), nn.Conv2d(ch, 3 * ch, 1)
        self.out = _zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x, emb=None):
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x))
        r = key_pool(H, W, self.keys)
        bias = None
        if r == 1:
            q, k, v = qkv.reshape(B, 3, self.heads, C // self.heads, H * W).transpose(-1, -2).unbind(1)
        else:
            q = qkv[:, :C].reshape(B, self.heads, C // self.heads, H * W).transpose(-1, -2)
            kv = F.avg_pool2d(qkv[:, C:], r, ceil_mode=True)  # a 1x1 conv's output pooled = the pooled input's
            k, v = kv.reshape(B, 2, self.heads, C // self.heads, -1).transpose(-1, -2).unbind(1)
            bias = window_bias(H, W, r, q)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # [B, heads, HW, C / heads]
        return x + self.out(h.transpose(-1, -2).reshape(B, C, H, W))


def key_pool(H: int, W: int, keys: int) -> int:
    """The pooling window r (1, 2, 4, ...) that leaves at most `keys` positions of an H x W map (0: 1, no pooling)."""
    r = 1
    while keys and -(-H // r) * -(-W // r) > keys:
        r *= 2
    return r


def window_bias(H: int, W: int, r: int, like: torch.Tensor) -> torch.Tensor | None:
    """log(pixels in each r x r window) as an additive score bias [1, windows], where a map's side is not a multiple of
    r (None where it is): a partial window at the edge then weighs as its pixels would with every position
    attended (n equal keys score as one key plus log n), so pooled attention is full attention over the window
    means."""
    if not (H % r or W % r):
        return None
    rows, cols = ([r] * (n // r) + [n % r] * bool(n % r) for n in (H, W))  # the windows' heights and widths
    counts = [a * b for a in rows for b in cols]  # row-major, as avg_pool2d's windows flatten
    return torch.tensor(counts, dtype=torch.float32, device=like.device).log()[None].to(like.dtype)  # [1, windows]


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x, emb=None):
        return self.conv(x)


def double(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling of [B, C, H, W] (each pixel becomes a 2 x 2 block): F.interpolate's values, by a
    broadcast and a reshape. Under torch.compile (torch 2.13's inductor) with bf16 autocast, the gradient through
    F.interpolate inside the U-Net came back as zeros: 64 of the digits U-Net's 111 parameters (every one below
    its first upsampling) learned nothing, at 1.33x the eager step's speed (tests/test_compile.py checks the
    compiled gradients)."""
    B, C, H, W = x.shape
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return x[:, :, :, None, :, None].expand(B, C, H, 2, W, 2).reshape(B, C, 2 * H, 2 * W)
    nhwc = x.permute(0, 2, 3, 1)  # channels_last (the sampling fast path) stays channels_last
    return nhwc[:, :, None, :, None].expand(B, H, 2, W, 2, C).reshape(B, 2 * H, 2 * W, C).permute(0, 3, 1, 2)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x, emb=None):
        return self.conv(double(x))


class UNet(nn.Module):
    """network(x_t [B, C, H, W], t float [B], cond) -> prediction [B, C, H, W]; cond: class ids long [B]
    (num_classes > 0), a text cond {"tokens", "mask"} (context_dim > 0), or None.

    Any H, W: inputs that 2^(levels - 1) does not divide are zero-padded at the bottom / right and the
    output cropped back."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        ch0, E = cfg.channels, cfg.channels * cfg.embed_mult
        self.time_embed = SinusoidalEmbedding(ch0, scale=1000.0 / cfg.num_timesteps)
        self.embed = nn.Sequential(nn.Linear(ch0, E), nn.SiLU(), nn.Linear(E, E))
        # one extra row: the learned null class used for classifier-free guidance
        self.class_embed = nn.Embedding(cfg.num_classes + 1, E) if cfg.num_classes > 0 else None
        self.guidance_embed = GuidanceEmbedding(E) if cfg.guidance_embed else None
        # text: the pooled prompt joins the time embedding (GLIDE, sec. 2.3); the tokens reach cross-attention
        self.text_embed = nn.Linear(cfg.context_dim, E) if cfg.context_dim > 0 else None
        self.conv_in = nn.Conv2d(cfg.in_channels, ch0, 3, padding=1)
        self.down, skips, ch = nn.ModuleList(), [ch0], ch0
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                self.down.append(self._stage(cfg, level, ch, ch0 * mult, E))
                ch = ch0 * mult
                skips.append(ch)
            if level < cfg.levels - 1:
                self.down.append(nn.ModuleList([Downsample(ch)]))
                skips.append(ch)
        self.mid = nn.ModuleList([ResBlock(cfg, ch, ch, E), SelfAttention(cfg, ch), ResBlock(cfg, ch, ch, E)])
        if cfg.context_dim > 0:
            self.mid.insert(2, self._cross(cfg, ch))
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                stage = self._stage(cfg, level, ch + skips.pop(), ch0 * mult, E)
                ch = ch0 * mult
                if level > 0 and i == cfg.num_res_blocks:
                    stage.append(Upsample(ch))
                self.up.append(stage)
        self.out = nn.Sequential(_norm(cfg, ch), nn.SiLU(), _zero(nn.Conv2d(ch, cfg.in_channels, 3, padding=1)))

    @staticmethod
    def _stage(cfg, level, c_in, c_out, E) -> nn.ModuleList:
        stage = nn.ModuleList([ResBlock(cfg, c_in, c_out, E)])
        if level in cfg.attention_levels:
            stage.append(SelfAttention(cfg, c_out))
        if cfg.context_dim > 0 and level in (range(cfg.levels) if cfg.cross_attention_levels is None
                                             else cfg.cross_attention_levels):
            stage.append(UNet._cross(cfg, c_out))
        return stage

    @staticmethod
    def _cross(cfg, ch) -> SpatialCrossAttention:
        return SpatialCrossAttention(ch, cfg.context_dim, heads(cfg, ch))

    def embedding(self, t: torch.Tensor, cond) -> torch.Tensor:
        """SiLU of the time (+ class or pooled prompt) embedding [B, E]: what every residual block reads."""
        cond, w = split_guidance(cond)
        emb = self.embed(self.time_embed(t).to(self.conv_in.weight.dtype))  # features in float32, then the weights' dtype
        if self.guidance_embed is not None:
            emb = emb + self.guidance_embed(w, t, emb.dtype)
        if self.class_embed is not None:
            if cond is None:
                cond = torch.full((t.shape[0],), self.cfg.num_classes, dtype=torch.long, device=t.device)
            emb = emb + embed_classes(self.class_embed, cond)
        tokens, mask = text_parts(cond)
        if self.text_embed is not None and tokens is not None:
            emb = emb + self.text_embed(pooled(tokens, mask).to(emb.dtype))
        return F.silu(emb)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        H, W = x.shape[-2:]
        m = 2 ** (self.cfg.levels - 1)
        pad_h, pad_w = -H % m, -W % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        emb = self.embedding(t, cond).to(x.dtype)
        tokens, mask = text_parts(cond)

        def apply(layer, h):  # cross-attention reads the tokens (none given: it is skipped), the rest the embedding
            if isinstance(layer, SpatialCrossAttention):
                return h if tokens is None else layer(h, tokens, mask)
            return layer(h, emb)

        h = self.conv_in(x)
        skips = [h]
        for stage in self.down:
            for layer in stage:
                h = apply(layer, h)
            skips.append(h)
        for layer in self.mid:
            h = apply(layer, h)
        for stage in self.up:
            h = torch.cat([h, skips.pop()], dim=1)
            for layer in stage:
                h = apply(layer, h)
        return self.out(h)[..., :H, :W]
