"""Shared per-step quantities for samplers, from the schedule at a float time t.

VP form: x_t = alpha_t x0 + sigma_t eps with alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t),
lambda_t = log(alpha_t / sigma_t) (half log-SNR, as in DPM-Solver). The VE view used by Euler / Heun is
x / alpha_t with noise level sigma_t / alpha_t (Karras et al. 2022, sec. 2). t = -1 is x0 itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError


def check_eta(eta) -> float:
    if not (isinstance(eta, (int, float)) and math.isfinite(eta) and eta >= 0):
        raise ConfigError(f"eta must be a finite number >= 0, got {eta}")
    return float(eta)


@dataclass(frozen=True)
class Level:
    """One noise level: alpha, sigma, lambda and the VE sigma (all Python floats)."""

    t: float
    alpha: float
    sigma: float

    @property
    def lam(self) -> float:
        if self.sigma == 0.0:
            return math.inf
        if self.alpha == 0.0:
            return -math.inf
        return math.log(self.alpha / self.sigma)

    @property
    def sigma_ve(self) -> float:
        return math.inf if self.alpha == 0.0 else self.sigma / self.alpha


def levels(schedule, ts) -> list[Level]:
    """Levels for a list of float times (use t = -1 for the clean end)."""
    abar = schedule.alpha_bar_at(list(ts)).tolist()
    return [Level(float(t), math.sqrt(a), math.sqrt(max(1.0 - a, 0.0))) for t, a in zip(ts, abar)]


def grid_levels(schedule, timesteps) -> list[Level]:
    """Levels of a sampler grid followed by the clean end (t = -1): K + 1 levels for K steps."""
    ts = [float(t) for t in timesteps]
    return levels(schedule, ts + [-1.0])
