"""Samplers: plain functions `sample_<name>(denoiser, x, timesteps, *, generator, callback, **options)`."""

from __future__ import annotations

import inspect

from ..errors import ConfigError, choice_error
from .ddim import sample_ddim
from .ddpm import sample_ddpm
from .dpm_solver import sample_dpmpp_2m, sample_dpmpp_2m_sde, sample_dpmpp_3m
from .euler import sample_euler, sample_euler_a, sample_heun
from .grids import CONTINUOUS_SPACINGS, SIGMA_MAX, SPACINGS, check_steps, make_grid, ode_sigma_range, timesteps
from .langevin import sample_langevin

SAMPLERS = {"ddpm": sample_ddpm, "ddim": sample_ddim, "dpmpp-2m": sample_dpmpp_2m, "dpmpp-3m": sample_dpmpp_3m,
            "dpmpp-2m-sde": sample_dpmpp_2m_sde, "euler": sample_euler, "heun": sample_heun,
            "euler-a": sample_euler_a, "langevin": sample_langevin}
# default number of grid steps per sampler (None: every training step)
DEFAULT_STEPS = {"ddpm": None, "ddim": 50, "dpmpp-2m": 20, "dpmpp-3m": 20, "dpmpp-2m-sde": 30, "euler": 50,
                 "heun": 25, "euler-a": 50, "langevin": 200}
# default grid spacing: uniform log-SNR for DPM-Solver (Lu et al. 2022, sec. 3.3), Karras sigmas for the
# Karras-style ODE / ancestral samplers, trailing for the DDPM family (measured in benchmarks/samplers.py)
DEFAULT_SPACING = {"ddpm": "trailing", "ddim": "trailing", "dpmpp-2m": "logsnr", "dpmpp-3m": "logsnr",
                   "dpmpp-2m-sde": "logsnr", "euler": "karras", "heun": "karras", "euler-a": "karras",
                   "langevin": "trailing"}
# DDPM and Langevin visit the schedule's own grid uncapped: their ancestral steps stay stable at any noise
# level, and DDPM over all T steps is the reference every other sampler is measured against.
UNCAPPED = {"ddpm", "langevin"}
# the DPM-Solver++ samplers default to `ode_sigma_range(steps)` on continuous grids
NARROWED = {"dpmpp-2m", "dpmpp-3m", "dpmpp-2m-sde"}
_COMMON = {"generator", "callback", "cond"}


def get_sampler(name: str):
    if name not in SAMPLERS:
        raise choice_error("sampler", name, SAMPLERS)
    return SAMPLERS[name]


def sampler_options(name: str) -> tuple[str, ...]:
    """Keyword options a sampler takes beyond the common ones."""
    params = inspect.signature(get_sampler(name)).parameters
    return tuple(p for p, v in params.items() if v.kind is v.KEYWORD_ONLY and p not in _COMMON)


def sample(denoiser, x, name: str = "ddim", steps: int | None = None, spacing: str | None = None, *,
           generator=None, callback=None, cond=None, sigma_min: float | None = None,
           sigma_max: float | None = None, **options):
    """Run sampler `name` from noise x over `steps` timesteps of the given spacing.

    sigma_min / sigma_max narrow the grid's noise range (data standard deviations). Default: for the DPM-Solver++
    samplers on a continuous grid `ode_sigma_range(steps)`, i.e. 0.5 / steps .. 10; otherwise the schedule's
    range, capped at SIGMA_MAX except for ddpm / langevin."""
    fn = get_sampler(name)
    allowed = sampler_options(name)
    for key in options:
        if key not in allowed:
            raise ConfigError(f"sampler {name!r} does not take option {key!r}; it takes: {', '.join(allowed) or 'none'}")
    T = denoiser.schedule.num_timesteps
    if steps is None:
        steps = DEFAULT_STEPS[name] or T
    steps = check_steps(steps, T)
    spacing = spacing or DEFAULT_SPACING[name]
    if name in NARROWED and spacing in CONTINUOUS_SPACINGS:  # each end not given takes the DPM-Solver default
        low, high = ode_sigma_range(steps)
        sigma_min = low if sigma_min is None else sigma_min
        sigma_max = high if sigma_max is None else sigma_max
    if sigma_max is None and name not in UNCAPPED:
        sigma_max = SIGMA_MAX
    grid = make_grid(denoiser.schedule, steps, spacing, sigma_max=sigma_max, sigma_min=sigma_min)
    return fn(denoiser, x, grid, generator=generator, callback=callback, cond=cond, **options)


def nfe_per_step(name: str, **options) -> float:
    """Network evaluations per grid step (heun: 2 but 1 on the last; langevin: 1 + corrector steps)."""
    if name == "heun":
        return 2.0
    if name == "langevin":
        return 1.0 + options.get("corrector_steps", 1)
    return 1.0


__all__ = ["SAMPLERS", "SPACINGS", "get_sampler", "make_grid", "nfe_per_step", "ode_sigma_range", "sample", "sampler_options",
           "timesteps", *(f.__name__ for f in SAMPLERS.values())]
