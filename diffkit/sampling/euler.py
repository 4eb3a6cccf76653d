"""Probability-flow ODE and ancestral samplers in the VE view (Karras et al. 2022, 'Elucidating the
Design Space of Diffusion-Based Generative Models').

With s = sigma_t / alpha_t and y = x_t / alpha_t = x0 + s eps, the PF-ODE is dy/ds = (y - x0_hat) / s = eps_hat
(Karras et al. 2022, eq. 3 with sigma(t) = t). An Euler step in s is y' = x0_hat + s' eps_hat, which in
VP terms is x' = alpha' x0_hat + sigma' eps_hat: DDIM with eta = 0 is Euler in s.
"""

from __future__ import annotations

import math

import torch

from ..devices import randn_like
from .common import Level, check_eta, grid_levels
from .record import step_end


def to_vp(y: torch.Tensor, level: Level) -> torch.Tensor:
    return level.alpha * y


def euler_step(x0_hat, eps_hat, nxt: Level) -> torch.Tensor:
    """Euler step of the PF-ODE to level nxt, in VP coordinates (Karras et al. 2022, Algorithm 1, line 5)."""
    return nxt.alpha * x0_hat + nxt.sigma * eps_hat


@torch.no_grad()
def sample_euler(denoiser, x, timesteps, *, generator=None, callback=None, hook=None, cond=None):
    """Euler on the probability-flow ODE: one network call per step."""
    lv = grid_levels(denoiser.schedule, timesteps)
    for i in range(len(lv) - 1):
        eps_hat, x0_hat = denoiser(x, lv[i].t, cond)
        x = euler_step(x0_hat, eps_hat, lv[i + 1])
        x, stop = step_end(hook, callback, i, lv[i].t, lv[i + 1].t, x, x0_hat, eps_hat)
        if stop:
            break
    return x


@torch.no_grad()
def sample_heun(denoiser, x, timesteps, *, generator=None, callback=None, hook=None, cond=None):
    """Heun's 2nd-order method on the PF-ODE (Karras et al. 2022, Algorithm 1): the slope is averaged with
    the slope at the Euler prediction; the last step (to s = 0) and a step from s = inf are Euler.
    Network calls: 2K - 1 for K grid times."""
    lv = grid_levels(denoiser.schedule, timesteps)
    for i in range(len(lv) - 1):
        now, nxt = lv[i], lv[i + 1]
        eps_hat, x0_hat = denoiser(x, now.t, cond)
        x_euler = euler_step(x0_hat, eps_hat, nxt)
        if nxt.sigma == 0.0 or now.alpha == 0.0:
            x = x_euler
        else:
            eps_2, _ = denoiser(x_euler, nxt.t, cond)
            # y' = y + (s' - s) (d + d') / 2 with d = eps_hat, y = x / alpha (eq. in Algorithm 1, line 8)
            y = x / now.alpha + (nxt.sigma_ve - now.sigma_ve) * 0.5 * (eps_hat + eps_2)
            x = to_vp(y, nxt)
        x, stop = step_end(hook, callback, i, now.t, nxt.t, x, x0_hat, eps_hat)
        if stop:
            break
    return x


@torch.no_grad()
def sample_euler_a(denoiser, x, timesteps, *, generator=None, callback=None, hook=None, cond=None, eta: float = 1.0):
    """Euler ancestral: an Euler step down to s_down, then fresh noise of std s_up, with
    s_up = min(s', eta sqrt(s'^2 (s^2 - s'^2) / s^2)), s_down = sqrt(s'^2 - s_up^2) (the DDPM posterior
    split of the step, as in k-diffusion's get_ancestral_step; Song et al. 2021 eq. 47 for eta = 1)."""
    check_eta(eta)
    lv = grid_levels(denoiser.schedule, timesteps)
    for i in range(len(lv) - 1):
        now, nxt = lv[i], lv[i + 1]
        eps_hat, x0_hat = denoiser(x, now.t, cond)
        s, s_next = now.sigma_ve, nxt.sigma_ve
        if s_next == 0.0:
            x = x0_hat
        else:
            s_up = s_next if math.isinf(s) else min(s_next, eta * math.sqrt(s_next**2 * (s**2 - s_next**2) / s**2))
            s_down = math.sqrt(s_next**2 - s_up**2)
            y = x0_hat + s_down * eps_hat  # Euler from s to s_down, written without y = x / alpha
            y = y + s_up * randn_like(x, generator)
            x = to_vp(y, nxt)
        x, stop = step_end(hook, callback, i, now.t, nxt.t, x, x0_hat, eps_hat)
        if stop:
            break
    return x
