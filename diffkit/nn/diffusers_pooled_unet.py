"""diffusers' UNet2DModel whose self-attention pools its keys and values to at most `attention_keys` positions, as
diffkit's U-Net does with --attention-keys (diffkit/nn/unet.py: SelfAttention, key_pool, window_bias).

`diffkit export --format diffusers` copies this file, unchanged, into an exported pipeline's unet/ folder as a
custom component (model_index.json names it), so that `DiffusionPipeline.from_pretrained(DIR,
trust_remote_code=True)` loads the run with nothing but torch and diffusers: it imports no diffkit code. Coming
back (`diffkit import`), such a folder's U-Net is built from this module as diffkit installed it (by
nn/diffusers_unet.py): the copy in the folder is never run.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_processor import Attention


def key_pool(height: int, width: int, keys: int) -> int:
    """The pooling window r (1, 2, 4, ...) that leaves at most `keys` positions (0: 1, no pooling)."""
    r = 1
    while keys and -(-height // r) * -(-width // r) > keys:
        r *= 2
    return r


class PooledAttnProcessor:
    """Self-attention whose keys and values are average-pooled over r x r windows (PVT v2's linear spatial-reduction
    attention, Wang et al. 2022); a partial window at the edge weighs as its pixels (log of its size added to its
    scores)."""

    def __init__(self, keys: int):
        self.keys = keys

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        residual = hidden_states
        batch, channels, height, width = hidden_states.shape
        hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        r = key_pool(height, width, self.keys)
        bias = None
        if r > 1:  # each position's projection pooled = the projection of the pooled features
            def pool(a):
                a = a.transpose(1, 2).reshape(batch, -1, height, width)
                return F.avg_pool2d(a, r, ceil_mode=True).flatten(2).transpose(1, 2)

            key, value = pool(key), pool(value)
            if height % r or width % r:  # log of each window's pixel count, row-major as the pooled keys
                rows, cols = ([r] * (n // r) + [n % r] * bool(n % r) for n in (height, width))
                counts = [a * b for a in rows for b in cols]
                bias = torch.tensor(counts, dtype=torch.float32, device=query.device).log()[None].to(query.dtype)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (a.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for a in (query, key, value))
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        out = out.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def _init(self, attention_keys: int = 64, **kwargs):
    UNet2DModel.__init__(self, **kwargs)
    processor = PooledAttnProcessor(attention_keys)
    for module in self.modules():
        if isinstance(module, Attention):
            module.set_processor(processor)


# UNet2DModel's own parameters and attention_keys, spelled out: diffusers reads a config's keys from the signature
_base = inspect.signature(UNet2DModel.__init__)
_init.__signature__ = _base.replace(parameters=[*_base.parameters.values(), inspect.Parameter(
    "attention_keys", inspect.Parameter.KEYWORD_ONLY, default=64, annotation=int)])


class PooledUNet2DModel(UNet2DModel):
    """UNet2DModel with every self-attention pooled to at most `attention_keys` keys (PooledAttnProcessor)."""

    __init__ = register_to_config(_init)
