"""Timestep grids: which of the T training steps a sampler visits, in descending order.

Spacings follow Lin et al. 2024, 'Common Diffusion Noise Schedules and Sample Steps are Flawed', Table 2:
  leading:  0, T/K, 2T/K, ...           (never reaches T-1)
  trailing: T-1, T-1-T/K, ...            (always starts at the last step)
  linspace: round(linspace(0, T-1, K))   (both ends)
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import torch

from ..errors import ConfigError, choice_error

Spacing = Literal["leading", "trailing", "linspace"]
SPACINGS: tuple[str, ...] = get_args(Spacing)


def timesteps(num_timesteps: int, steps: int, spacing: str = "trailing") -> torch.Tensor:
    """K distinct integer timesteps in [0, T-1], descending, as float64 [K]."""
    T = num_timesteps
    if not isinstance(steps, (int, np.integer)) or steps <= 0 or steps > T:
        raise ConfigError(f"steps must be an integer from 1 to the model's {T} timesteps, got {steps}")
    if spacing == "leading":
        ts = np.arange(steps) * (T // steps)
    elif spacing == "trailing":
        ts = np.round(T - np.arange(steps) * (T / steps)).astype(np.int64) - 1
    elif spacing == "linspace":
        ts = np.round(np.linspace(0, T - 1, steps)).astype(np.int64)
    else:
        raise choice_error("timestep spacing", spacing, SPACINGS)
    ts = np.unique(ts)[::-1].copy()
    return torch.from_numpy(ts.astype(np.float64))


def with_final(ts: torch.Tensor) -> list[tuple[float, float]]:
    """Pairs (t, t_prev) along the grid, ending at t_prev = -1 (x_0 itself, alpha_bar = 1)."""
    nxt = torch.cat([ts[1:], torch.tensor([-1.0], dtype=ts.dtype)])
    return list(zip(ts.tolist(), nxt.tolist()))
