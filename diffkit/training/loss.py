"""L_simple: per-sample MSE between the network output and its prediction target (Ho et al. 2020, eq. 14)."""

from __future__ import annotations

import torch

from ..prediction import target
from ..schedule import NoiseSchedule


def per_row(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample value [B] (float64 schedule arithmetic) as float32 [B, 1, ...], broadcastable over `like`."""
    return v.to(like.device, torch.float32).reshape(-1, *([1] * (like.dim() - 1)))


def simple_loss(network, schedule: NoiseSchedule, prediction: str, x0: torch.Tensor, t: torch.Tensor,
                eps: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
    """Returns the per-sample loss [B], so a weighting can be applied by the caller."""
    x_t = schedule.q_sample(x0, t, eps)
    alpha_bar = schedule.alpha_bar_at(t).to(x0.dtype).reshape(-1, *([1] * (x0.dim() - 1)))
    out = network(x_t, t.to(x0.dtype)) if cond is None else network(x_t, t.to(x0.dtype), cond)
    return (out - target(prediction, x0, eps, alpha_bar)).square().flatten(1).mean(1)


def min_snr_weight(prediction: str, alpha_bar: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma weights (Hang et al. 2023, eq. 9) on the MSE of each prediction target.

    The x0 error weighted by min(SNR, gamma) equals the eps error weighted by min(SNR, gamma) / SNR and the
    v error weighted by min(SNR, gamma) / (SNR + 1), since eps-MSE = SNR x0-MSE and v-MSE = (SNR + 1) x0-MSE."""
    snr = alpha_bar / (1 - alpha_bar)
    clipped = snr.clamp(max=gamma)
    if prediction == "epsilon":
        return clipped / snr
    if prediction == "v":
        return clipped / (snr + 1)
    return clipped
