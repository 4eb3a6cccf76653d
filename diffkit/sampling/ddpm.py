"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), on any subsequence of timesteps."""

from __future__ import annotations

from typing import Literal

import torch

from ..devices import randn_like
from ..errors import choice_error
from .grids import with_final
from .record import step_end

Variance = Literal["beta", "posterior"]


def ddpm_mean(x, x0_hat, ab: float, ab_prev: float):
    """Posterior mean of q(x_t' | x_t, x0_hat) (Ho et al. 2020, eq. 7). On a skipped grid t -> t' the
    step's beta is 1 - alpha_bar_t / alpha_bar_t' (Nichol & Dhariwal 2021, sec. 4)."""
    beta = 1.0 - ab / ab_prev
    return (ab_prev**0.5 * beta / (1 - ab)) * x0_hat + ((1 - ab_prev) * (1 - beta) ** 0.5 / (1 - ab)) * x


def ddpm_variance(ab: float, ab_prev: float, variance: str) -> float:
    """sigma_t^2 = beta_t ("beta") or the posterior beta-tilde_t = beta_t (1 - ab') / (1 - ab) ("posterior")."""
    beta = 1.0 - ab / ab_prev
    return beta if variance == "beta" else beta * (1 - ab_prev) / (1 - ab)


def ddpm_step(x, x0_hat, ab: float, ab_prev: float, variance: str, generator=None):
    """One ancestral step x_t -> x_t'; no noise when t' is x_0 itself."""
    mean = ddpm_mean(x, x0_hat, ab, ab_prev)
    if ab_prev >= 1.0:
        return mean
    noise = randn_like(x, generator)
    return mean + ddpm_variance(ab, ab_prev, variance) ** 0.5 * noise


@torch.no_grad()
def sample_ddpm(denoiser, x, timesteps, *, generator=None, callback=None, hook=None, cond=None, variance: Variance = "beta"):
    """Ancestral sampling: x_{t'} ~ N(mu(x_t, x0_hat), var) at each grid step."""
    if variance not in ("beta", "posterior"):
        raise choice_error("DDPM variance", variance, ("beta", "posterior"))
    schedule = denoiser.schedule
    for i, (t, t_prev) in enumerate(with_final(timesteps)):
        eps_hat, x0_hat = denoiser(x, t, cond)
        ab, ab_prev = (float(v) for v in schedule.alpha_bar_at([t, t_prev]))
        x = ddpm_step(x, x0_hat, ab, ab_prev, variance, generator)
        x, stop = step_end(hook, callback, i, t, t_prev, x, x0_hat, eps_hat)
        if stop:
            break
    return x
