"""Multistep consistency sampling (Song et al. 2023, Algorithm 1): at each level the model's x0_hat is where the
trajectory ends; it is noised afresh to the next level and asked again. One step is one network call from pure
noise; more steps trade calls for detail. Made for consistency students (whose x0_hat is their consistency function
f), it runs on any Denoiser (for an ordinary one it is a crude ancestral sampler)."""

from __future__ import annotations

import torch

from ..devices import randn_like
from .common import grid_levels
from .record import step_end


@torch.no_grad()
def sample_consistency(denoiser, x, timesteps, *, generator=None, callback=None, hook=None, cond=None):
    """x_(t') = alpha' x0_hat + sigma' z with fresh z ~ N(0, I) at every level but the last (x_0 = x0_hat)."""
    lv = grid_levels(denoiser.schedule, timesteps)
    for i in range(len(lv) - 1):
        eps_hat, x0_hat = denoiser(x, lv[i].t, cond)
        nxt = lv[i + 1]
        x = x0_hat if nxt.sigma == 0.0 else nxt.alpha * x0_hat + nxt.sigma * randn_like(x0_hat, generator)
        x, stop = step_end(hook, callback, i, lv[i].t, nxt.t, x, x0_hat, eps_hat)
        if stop:
            break
    return x
