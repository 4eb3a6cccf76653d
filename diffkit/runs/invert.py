"""Inversion: the x_T from which a deterministic DDIM (eta 0) sampling returns a given input.

Sampling's step from level i to the next, lower one (DDIM eq. 12 with eta 0) is
    x_lo = alpha_lo x0_hat + sigma_lo eps,   x0_hat = (x_hi - sigma_hi eps) / alpha_hi,   eps = eps_hat(x_hi, t_hi),
so its inverse is x_hi = alpha_hi (x_lo - sigma_lo eps) / alpha_lo + sigma_hi eps, with eps taken at the point it
is solving for. DDIM inversion (Song et al. 2021, sec. 4.3; Dhariwal & Nichol 2021, app. F) takes eps at x_lo
instead; `iterations` fixed-point rounds then re-evaluate eps at the current x_hi (as in Pan et al. 2023, 'Effective
Real Image Editing with Accelerated Iterative Diffusion Inversion'), each one more network call per step.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from ..sampling import sampler_grid
from ..sampling.common import levels
from .edit import check_inputs, to_model_space
from .pipeline import RUN_DEFAULT, Run, prepare_sampling

INVERT_SAMPLER = "ddim"  # the deterministic sampler whose steps are inverted (eta 0)


@torch.no_grad()
def invert_run(run: Run, inputs, *, steps: int = 50, spacing: str | None = None, iterations: int = 0,
               cond=None, prompt: str | None = None, guidance: float | None = None,
               guidance_interval=RUN_DEFAULT, clip: bool | None = None, callback=None) -> np.ndarray:
    """x_T (float32 [N, *shape], the network's space: sample_run's `noise`) for each input, such that ddim at
    `steps` on the same spacing, cond and guidance samples (close to) the input back. callback(i) after each
    step."""
    if not isinstance(run, Run):
        raise ConfigError("invert_run takes a loaded run (runs.load_run)")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ConfigError(f"the fixed-point iterations are a whole number >= 0, got {iterations!r}")
    if prompt is not None and not isinstance(prompt, str):
        raise ConfigError("inversion follows one prompt for every input; give a single prompt")
    inputs = check_inputs(run, inputs)
    job = prepare_sampling(run, len(inputs), INVERT_SAMPLER, steps, clip=clip, cond=cond, guidance=guidance,
                           guidance_interval=guidance_interval, prompt=prompt)
    grid = sampler_grid(job.denoiser.schedule, INVERT_SAMPLER, job.steps, spacing or run.config.sampling.spacing)
    lv = levels(job.denoiser.schedule, [float(t) for t in grid.flip(0)])  # ascending: the last sampling step first
    x = to_model_space(run, inputs)
    lo_t, lo_alpha, lo_sigma = -1.0, 1.0, 0.0  # the data itself
    for i, hi in enumerate(lv):
        eps, _ = job.denoiser(x, lo_t if lo_t >= 0 else hi.t, job.cond)  # eps at x_lo: the first guess
        x0_hat = (x - lo_sigma * eps) / lo_alpha
        x_hi = hi.alpha * x0_hat + hi.sigma * eps
        for _ in range(iterations):
            eps, _ = job.denoiser(x_hi, hi.t, job.cond)
            x_hi = hi.alpha * (x - lo_sigma * eps) / lo_alpha + hi.sigma * eps
        x, lo_t, lo_alpha, lo_sigma = x_hi, hi.t, hi.alpha, hi.sigma
        if callback is not None:
            callback(i)
    return x.float().cpu().numpy()
