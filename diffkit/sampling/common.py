"""Shared per-step quantities for samplers, from the schedule at a float time t.

VP form: x_t = alpha_t x0 + sigma_t eps with alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t),
lambda_t = log(alpha_t / sigma_t) (half log-SNR, as in DPM-Solver). The VE view used by Euler / Heun is
x / alpha_t with noise level sigma_t / alpha_t (Karras et al. 2022, sec. 2). t = -1 is x0 itself.

Three sigmas appear in samplers, each under its own name (DESIGN.md glossary):
  Level.sigma     VP noise scale sqrt(1 - alpha_bar_t) (the schedule's `sigma` table)
  Level.sigma_ve  VE noise level sigma_t / alpha_t, in data standard deviations; grids' sigma_min / sigma_max
  std             the noise injected by one stochastic step (DDIM's sigma_t of eq. 16, ancestral s_up)
Level.alpha is sqrt(alpha_bar_t), the VP signal scale; the schedule's per-step alpha_t = 1 - beta_t is `alphas`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError


def check_eta(eta) -> float:
    if not (isinstance(eta, (int, float)) and math.isfinite(eta) and eta >= 0):
        raise ConfigError(f"eta must be a finite number >= 0, got {eta}")
    return float(eta)


def check_s_tmax(s_tmax) -> None:
    """s_tmax (the highest level a stochastic step injects noise at, sigma_ve): None or inf (every step) or a
    number > 0."""
    if s_tmax is not None and not (isinstance(s_tmax, (int, float)) and not isinstance(s_tmax, bool)
                                   and s_tmax > 0):  # nan fails the comparison
        raise ConfigError(f"s_tmax (the highest noise level that gets fresh noise, sigma_ve) must be a number > 0 "
                          f"(inf: every step), got {s_tmax!r}")


@dataclass(frozen=True)
class Level:
    """One noise level: alpha = sqrt(alpha_bar), sigma = sqrt(1 - alpha_bar), lam = log(alpha / sigma) (half the
    log-SNR) and sigma_ve = sigma / alpha (all Python floats)."""

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
