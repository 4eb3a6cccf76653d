"""L_simple: per-sample MSE between the network output and its prediction target (Ho et al. 2020, eq. 14)."""

from __future__ import annotations

import torch

from ..prediction import target
from ..schedule import NoiseSchedule


def simple_loss(network, schedule: NoiseSchedule, prediction: str, x0: torch.Tensor, t: torch.Tensor,
                eps: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
    """Returns the per-sample loss [B], so a weighting can be applied by the caller."""
    x_t = schedule.q_sample(x0, t, eps)
    alpha_bar = schedule.alpha_bar_at(t).to(x0.dtype).reshape(-1, *([1] * (x0.dim() - 1)))
    out = network(x_t, t.to(x0.dtype)) if cond is None else network(x_t, t.to(x0.dtype), cond)
    return (out - target(prediction, x0, eps, alpha_bar)).square().flatten(1).mean(1)
