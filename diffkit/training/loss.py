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


# a pixel is foreground where any channel of x0 lies above this, in the network's [-1, 1] space (the built-in
# image sets draw on black, -1)
FOREGROUND_ABOVE = -0.9


def foreground_weighted(err: torch.Tensor, x0: torch.Tensor, tau: torch.Tensor, weight: float,
                        band: tuple[float, float]) -> torch.Tensor:
    """Per-sample mean of the squared error `err` [B, C, H, W] under a per-pixel weight of 1 + `weight` on x0's
    foreground pixels at path times tau [B] inside `band` (lo <= tau <= hi), 1 elsewhere; each image's loss is
    divided by its mean weight, so the weight moves emphasis between pixels, not the loss's scale between times.
    diffkit's own measured recipe (docs/speed.md, "Time to quality"): on shapes, a weight of 4 at tau in [0.4, 0.8]
    (where a small shape's colour settles) cut the samples that fade to an empty image about fivefold; applied at
    every time it leans the network towards large shapes."""
    fg = (x0.float() > FOREGROUND_ABOVE).any(1, keepdim=True).float()
    in_band = ((tau >= band[0]) & (tau <= band[1])).to(torch.float32)
    w = 1.0 + weight * fg * per_row(in_band, fg)
    return (err * w).flatten(1).mean(1) / w.flatten(1).mean(1)
