"""Samplers: plain functions `sample_<name>(denoiser, x, timesteps, *, generator, callback, **options)`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConfigError, choice_error
from .consistency import sample_consistency
from .ddim import sample_ddim
from .ddpm import sample_ddpm
from .dpm_solver import sample_dpmpp_2m, sample_dpmpp_2m_sde, sample_dpmpp_3m
from .euler import sample_euler, sample_euler_a, sample_heun
from .grids import (
    CONTINUOUS_SPACINGS,
    SIGMA_MAX,
    SPACINGS,
    check_steps,
    diffusers_spacing,
    diffusers_timesteps,
    make_grid,
    narrowed_spacing,
    ode_sigma_range,
    timesteps,
)
from .langevin import sample_langevin
from .record import StepRecord


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler: its function and defaults (measured in benchmarks/samplers.py)."""

    fn: Callable
    steps: int | None           # default grid steps (None: every training step)
    spacing: str                # default grid spacing
    capped: bool = True         # grid capped at SIGMA_MAX (ancestral DDPM / Langevin stay stable uncapped, and
                                # DDPM over all T steps is the reference every other sampler is measured against)
    narrowed: bool = False      # on continuous grids, default noise range `ode_sigma_range(steps)` (DPM-Solver++)
    nfe: Callable[..., float] = lambda **options: 1.0  # network evaluations per grid step
    stochastic: bool = False    # draws fresh noise along the way (the same x_T need not give the same sample path)


# uniform log-SNR for DPM-Solver (Lu et al. 2022, sec. 3.3), Karras sigmas for the Karras-style ODE /
# ancestral samplers, trailing for the DDPM family
SAMPLER_TABLE: dict[str, SamplerSpec] = {
    "ddpm": SamplerSpec(sample_ddpm, None, "trailing", capped=False, stochastic=True),
    "ddim": SamplerSpec(sample_ddim, 50, "trailing"),
    "dpmpp-2m": SamplerSpec(sample_dpmpp_2m, 20, "logsnr", narrowed=True),
    "dpmpp-3m": SamplerSpec(sample_dpmpp_3m, 20, "logsnr", narrowed=True),
    "dpmpp-2m-sde": SamplerSpec(sample_dpmpp_2m_sde, 30, "logsnr", narrowed=True, stochastic=True),
    "euler": SamplerSpec(sample_euler, 50, "karras"),
    "heun": SamplerSpec(sample_heun, 25, "karras", nfe=lambda **o: 2.0),  # 2 per step, 1 on the last
    "euler-a": SamplerSpec(sample_euler_a, 50, "karras", stochastic=True),
    "langevin": SamplerSpec(sample_langevin, 200, "trailing", capped=False, stochastic=True,
                            nfe=lambda **o: 1.0 + o.get("corrector_steps", 1)),
    "consistency": SamplerSpec(sample_consistency, 2, "renoise", stochastic=True),  # consistency students (Song et al. 2023)
}
SAMPLERS = {name: spec.fn for name, spec in SAMPLER_TABLE.items()}
UNCAPPED = tuple(name for name, spec in SAMPLER_TABLE.items() if not spec.capped)
NARROWED = tuple(name for name, spec in SAMPLER_TABLE.items() if spec.narrowed)
STOCHASTIC = tuple(name for name, spec in SAMPLER_TABLE.items() if spec.stochastic)
_COMMON = {"generator", "callback", "hook", "cond"}


def get_sampler(name: str):
    if name not in SAMPLERS:
        raise choice_error("sampler", name, SAMPLERS)
    return SAMPLERS[name]


def sampler_options(name: str) -> tuple[str, ...]:
    """Keyword options a sampler takes beyond the common ones."""
    params = inspect.signature(get_sampler(name)).parameters
    return tuple(p for p, v in params.items() if v.kind is v.KEYWORD_ONLY and p not in _COMMON)


def sample(denoiser, x, name: str = "ddim", steps: int | None = None, spacing: str | None = None, *,
           generator=None, callback=None, hook=None, cond=None, sigma_min: float | None = None,
           sigma_max: float | None = None, grid=None, **options):
    """Run sampler `name` from noise x over `steps` timesteps of the given spacing.

    sigma_min / sigma_max narrow the grid's noise range (data standard deviations). Default: for the DPM-Solver++
    samplers on a continuous grid `ode_sigma_range(steps)`, i.e. 0.5 / steps .. 10; otherwise the schedule's
    range, capped at SIGMA_MAX except for ddpm / langevin.
    grid: the grid itself (descending times) in place of the one steps and spacing make, e.g. the tail of one
    (grids.part_way: img2img starts part-way, x being the caller's x at the grid's first level).
    hook: hook(t_next, x) -> x after every step (record.step_end; inpainting re-imposes the known pixels)."""
    fn = get_sampler(name)
    allowed = sampler_options(name)
    for key in options:
        if key not in allowed:
            takers = " or ".join(s for s in SAMPLERS if key in sampler_options(s)) or "none"
            raise ConfigError(f"sampler {name!r} does not take option {key!r}; it takes: "
                              f"{', '.join(allowed) or 'none'} (--sampler {takers} takes {key!r})")
    if grid is None:
        grid = sampler_grid(denoiser.schedule, name, steps, spacing, sigma_min=sigma_min, sigma_max=sigma_max)
    return fn(denoiser, x, grid, generator=generator, callback=callback, hook=hook, cond=cond, **options)


def default_steps(name: str, steps: int | None, T: int) -> int:
    """The grid steps sampler `name` runs: those asked for, else its default (every one of T training steps where
    it has none)."""
    return SAMPLER_TABLE[name].steps or T if steps is None else steps


def sampler_grid(schedule, name: str = "ddim", steps: int | None = None, spacing: str | None = None, *,
                 sigma_min: float | None = None, sigma_max: float | None = None):
    """The grid (descending float times, before the final step to x_0) sampler `name` runs on by default."""
    spec = SAMPLER_TABLE[name]
    T = schedule.num_timesteps
    steps = check_steps(default_steps(name, steps, T), T)
    spacing, narrowed = narrowed_spacing(spacing or spec.spacing)  # "logsnr:S": its own sigma_min S
    sigma_min = narrowed if sigma_min is None else sigma_min
    own = diffusers_spacing(spacing)
    if own is not None:  # diffusers' own timesteps for this sampler (no noise cap, as there)
        return diffusers_timesteps(T, steps, own[0], name, own[1])
    if spec.narrowed and spacing in CONTINUOUS_SPACINGS:  # each end not given takes the DPM-Solver default
        low, high = ode_sigma_range(steps)
        sigma_min = low if sigma_min is None else sigma_min
        sigma_max = high if sigma_max is None else sigma_max
    if sigma_max is None and spec.capped:
        sigma_max = SIGMA_MAX
    return make_grid(schedule, steps, spacing, sigma_max=sigma_max, sigma_min=sigma_min)


def nfe_per_step(name: str, **options) -> float:
    """Network evaluations per grid step (heun: 2 but 1 on the last; langevin: 1 + corrector steps)."""
    if name not in SAMPLER_TABLE:
        raise choice_error("sampler", name, SAMPLER_TABLE)
    return SAMPLER_TABLE[name].nfe(**options)


__all__ = ["SAMPLERS", "SAMPLER_TABLE", "STOCHASTIC", "SamplerSpec", "StepRecord", "SPACINGS", "get_sampler", "make_grid", "narrowed_spacing", "nfe_per_step", "ode_sigma_range", "sample", "sampler_grid",
           "sampler_options",
           "timesteps", *(f.__name__ for f in SAMPLERS.values())]
