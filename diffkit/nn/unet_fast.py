"""The U-Net's sampling fast path: the same network with its activations in channels_last, called on batches
sized to the image so that a call's activations stay in the CPU's caches.

Measured on a 2-core AVX2 EPYC (Zen 3), fp32, image-calls per second of a class-conditional U-Net
(`benchmarks/unet_sampling.py`): 28x28 (mnist5k's preset) 268 at 256 per call in NCHW, 322 at 64, 452 at 64 in
channels_last (1.69x); 8x8 (digits) 3,716 at 256 in NCHW, 4,174 at 256 and 4,245 at 512 in channels_last
(1.12-1.14x). Smaller images want larger calls: `sampling_chunk` aims at ~24,576 pixels per call, twice that
where the calls run in bf16 (half the bytes per activation). Measured on a 2-core Zen 5 EPYC (AVX-512, native bf16),
whole sampling under bf16 autocast (`benchmarks/unet_sampling.py RUN --chunks`): the default mnist5k run 1.13-1.15x at
64 images per call against 32, shapes 1.12x (docs/speed.md); 8x8 digits stay at the cap of 512 (1,024 mixed).
The residual blocks skip passes over their feature maps (in-place SiLU, the adaptive norm's scale and shift
applied with the norm, the residual added in place): 1.1-1.3x on the 28x28 call at 64 images; under bf16 autocast
each norm takes unet.GroupNorm.modulated, which avoids torch's slow channels_last kernel
(benchmarks/norm_path.py). The arithmetic is the plain network's (fp32 convolutions in another memory order, a
fused multiply-add: equal up to rounding);
`diffkit.runs.load_run(..., fast=False)` samples the plain path.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .unet import ResBlock

PIXELS_PER_CALL = 24_576  # images x H x W per float32 network call (x2 inside guidance's batched call)


def sampling_chunk(shape, precision: str = "fp32") -> int:
    """Images per sampling call for a sample shape [C, H, W] and the calls' precision ("fp32" or "bf16"): a power
    of two in [16, 512], aiming at twice as many pixels in bf16."""
    budget = PIXELS_PER_CALL * (2 if precision == "bf16" else 1)
    return int(min(512, max(16, 2 ** round(math.log2(budget / (shape[-1] * shape[-2]))))))


def lean_blocks(network: nn.Module, on: bool = True) -> nn.Module:
    """Switch the network's residual blocks to (or off) their lean inference path (unet.ResBlock.lean); returns it."""
    for m in network.modules():
        if isinstance(m, ResBlock):
            m.lean = on
    return network


class ChannelsLast(nn.Module):
    """network(x, t, cond) with x (and the weights, converted in place: same values) in channels_last, and its
    residual blocks on their lean inference path (unet.ResBlock._lean_forward: the same arithmetic in fewer passes
    over the feature maps; it runs only without autograd, in eval mode)."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = lean_blocks(network.to(memory_format=torch.channels_last))

    @property
    def cfg(self):
        return self.network.cfg

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        return self.network(x.contiguous(memory_format=torch.channels_last), t, cond).contiguous()
