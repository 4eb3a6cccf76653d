"""Samplers: plain functions `sample_<name>(denoiser, x, timesteps, *, generator, callback, **options)`."""

from __future__ import annotations

import inspect

from ..errors import ConfigError, choice_error
from .ddim import sample_ddim
from .ddpm import sample_ddpm
from .grids import SPACINGS, timesteps

SAMPLERS = {"ddpm": sample_ddpm, "ddim": sample_ddim}
# default number of steps and spacing per sampler (DDPM visits every training step)
DEFAULT_STEPS = {"ddpm": None, "ddim": 50}
_COMMON = {"generator", "callback", "cond"}


def get_sampler(name: str):
    if name not in SAMPLERS:
        raise choice_error("sampler", name, SAMPLERS)
    return SAMPLERS[name]


def sampler_options(name: str) -> tuple[str, ...]:
    """Keyword options a sampler takes beyond the common ones."""
    params = inspect.signature(get_sampler(name)).parameters
    return tuple(p for p, v in params.items() if v.kind is v.KEYWORD_ONLY and p not in _COMMON)


def sample(denoiser, x, name: str = "ddim", steps: int | None = None, spacing: str = "trailing", *,
           generator=None, callback=None, cond=None, **options):
    """Run sampler `name` from noise x over `steps` timesteps of the given spacing."""
    fn = get_sampler(name)
    allowed = sampler_options(name)
    for key in options:
        if key not in allowed:
            raise ConfigError(f"sampler {name!r} does not take option {key!r}; it takes: {', '.join(allowed) or 'none'}")
    T = denoiser.schedule.num_timesteps
    if steps is None:
        steps = DEFAULT_STEPS[name] or T
    grid = timesteps(T, steps, spacing)
    return fn(denoiser, x, grid, generator=generator, callback=callback, cond=cond, **options)


__all__ = ["SAMPLERS", "SPACINGS", "get_sampler", "sample", "sampler_options", "sample_ddim", "sample_ddpm",
           "timesteps"]
