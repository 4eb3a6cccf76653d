"""Predictor-corrector sampling (Song et al. 2021, 'Score-Based Generative Modeling through SDEs', Algorithm 2
with the VP-SDE). Predictor: one ancestral DDPM step. Corrector: annealed Langevin steps at the new level,
    x <- x + e * score + sqrt(2 e) z,   e = 2 alpha_i (r ||z|| / ||score||)^2   (Algorithm 5),
where r is the target signal-to-noise ratio `snr`, alpha_i = alpha_bar_t / alpha_bar_t' the step's alpha,
and the norms are batch means of per-sample norms (as in the paper's code: in low dimension the per-sample
ratio ||z||^2 / ||score||^2 has an infinite mean and a few samples would take huge steps).
"""

from __future__ import annotations

import math

import torch

from ..denoiser import score
from ..devices import randn_like
from ..errors import ConfigError
from .common import grid_levels
from .ddpm import ddpm_step
from .record import step_end


def _mean_norm(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).norm(dim=1).mean()


@torch.no_grad()
def sample_langevin(denoiser, x, timesteps, *, generator=None, callback=None, hook=None, cond=None, snr: float = 0.1,
                    corrector_steps: int = 1):
    """Network calls: K predictor steps + corrector_steps per step above t = 0."""
    if isinstance(corrector_steps, bool) or not isinstance(corrector_steps, int) or not 0 < snr <= 1 \
            or not math.isfinite(snr) or corrector_steps < 0:
        # r > 1 asks for Langevin moves longer than the noise scale of the level: the corrector diverges
        raise ConfigError(f"langevin needs snr in (0, 1] (0.01-0.2 is usual) and corrector_steps >= 0, got snr={snr}, "
                          f"corrector_steps={corrector_steps}")
    lv = grid_levels(denoiser.schedule, timesteps)
    for i in range(len(lv) - 1):
        now, nxt = lv[i], lv[i + 1]
        eps_hat, x0_hat = denoiser(x, now.t, cond)
        x = ddpm_step(x, x0_hat, now.alpha**2, nxt.alpha**2, "posterior", generator)
        if nxt.sigma > 0:
            step_alpha = (now.alpha / nxt.alpha) ** 2  # alpha_i = 1 - beta_i of this (possibly skipped) step
            for _ in range(corrector_steps):
                s = score(denoiser, x, nxt.t, cond)
                z = randn_like(x, generator)
                e = 2 * step_alpha * (snr * _mean_norm(z) / _mean_norm(s).clamp_min(1e-12)) ** 2
                x = x + e * s + (2 * e).sqrt() * z
        x, stop = step_end(hook, callback, i, now.t, nxt.t, x, x0_hat, eps_hat)
        if stop:
            break
    return x
