"""Sampling precision: a network whose matmuls and convolutions run in bf16 under torch.autocast and whose
prediction comes back as float32, so the samplers' own arithmetic (the schedule, the solver's updates) stays
float32, as in training (DESIGN.md: the time contract).

`sampling_precision` decides what "auto" means. bf16 is the default only where it was measured to keep
quality and pay: a U-Net on a CPU with native bf16 (AVX512-BF16 or AMX-BF16). On mnist5k's default run it
sampled 2.4x the images per second at the same FD (`benchmarks/sampling_precision.py`, docs/speed.md). The
MLP's folded fast path, the DiT, GPUs and CPUs that emulate bf16 (hundreds of times slower) keep float32.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..machine import bf16_native

SAMPLING_PRECISIONS = ("auto", "fp32", "bf16")
BF16_KINDS = ("unet",)  # the network kinds whose bf16 sampling was measured to keep quality


class Autocast(nn.Module):
    """network(x, t, cond) under torch.autocast(dtype), its output cast back to float32."""

    def __init__(self, network: nn.Module, dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.network, self.dtype = network, dtype

    @property
    def cfg(self):
        return self.network.cfg

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=self.dtype):
            out = self.network(x, t, cond)
        return out.to(x.dtype)


def sampling_precision(asked: str, kind: str, device: torch.device) -> tuple[str, str]:
    """(fp32 or bf16, why) for sampling a network of `kind` on `device`; asked: auto, fp32 or bf16."""
    if asked not in SAMPLING_PRECISIONS:
        raise ConfigError(f"unknown sampling precision {asked!r}; use one of {', '.join(SAMPLING_PRECISIONS)}")
    if asked != "auto":
        return asked, "as asked"
    if kind not in BF16_KINDS:
        return "fp32", f"bf16 sampling is measured for {', '.join(BF16_KINDS)} networks only"
    if device.type != "cpu":
        return "fp32", "bf16 sampling is measured on CPUs only"
    if not bf16_native(device):
        return "fp32", "this CPU has no native bf16"
    return "bf16", "this CPU runs bf16 natively"
