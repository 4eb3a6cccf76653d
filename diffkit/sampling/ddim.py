"""DDIM (Song et al. 2021, 'Denoising Diffusion Implicit Models')."""

from __future__ import annotations

import math

import torch

from ..devices import randn_like
from ..errors import ConfigError
from .common import check_eta
from .grids import with_final
from .record import step_end


def ddim_step(x0_hat, eps_hat, ab: float, ab_prev: float, eta: float, generator=None):
    """x_{t'} = sqrt(ab') x0_hat + sqrt(1 - ab' - std^2) eps_hat + std z (DDIM eq. 12), with the step's noise
    std = eta sqrt((1 - ab') / (1 - ab)) sqrt(1 - ab / ab') (eq. 16; the paper's sigma_t, not a noise level)."""
    std = eta * math.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)) if eta > 0 else 0.0
    x = ab_prev**0.5 * x0_hat + max(1 - ab_prev - std**2, 0.0) ** 0.5 * eps_hat
    if eta > 0:  # noise is drawn whenever eta > 0 (also where std is 0), as diffusers does
        x = x + std * randn_like(x, generator)
    return x


@torch.no_grad()
def sample_ddim(denoiser, x, timesteps, *, generator=None, callback=None, hook=None, cond=None, eta: float = 0.0):
    """eta = 0 is deterministic (the PF-ODE by Euler in sigma/alpha); eta = 1 is DDPM's posterior variance."""
    check_eta(eta)
    if eta > 1:  # std > the posterior's: max(., 0) above would hide that x_t' is noisier than q(x_t') allows
        raise ConfigError(f"ddim's eta is in [0, 1] (0: deterministic, 1: DDPM's posterior noise); above 1 a step adds "
                          f"more noise than the next level holds, got {eta}")
    schedule = denoiser.schedule
    for i, (t, t_prev) in enumerate(with_final(timesteps)):
        eps_hat, x0_hat = denoiser(x, t, cond)
        ab, ab_prev = (float(v) for v in schedule.alpha_bar_at([t, t_prev]))
        x = ddim_step(x0_hat, eps_hat, ab, ab_prev, eta, generator)
        x, stop = step_end(hook, callback, i, t, t_prev, x, x0_hat, eps_hat)
        if stop:
            break
    return x
