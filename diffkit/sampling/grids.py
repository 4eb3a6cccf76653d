"""Grids: the descending times a sampler visits (float t on the training axis [0, T-1]).

Discrete spacings follow Lin et al. 2024, 'Common Diffusion Noise Schedules and Sample Steps are
Flawed', Table 2:
  leading:  0, T/K, 2T/K, ...           (never reaches T-1)
  trailing: T-1, T-1-T/K, ...            (always starts at the last step)
  linspace: round(linspace(0, T-1, K))   (both ends)
Continuous grids place K noise levels and map them back to t through the schedule:
  karras:   sigma_i = (s_max^(1/rho) + i/(K-1) (s_min^(1/rho) - s_max^(1/rho)))^rho, rho = 7,
            sigma = VE noise level sigma_t / alpha_t (Karras et al. 2022, eq. 5)
  logsnr:   log-SNR uniform between its values at t = T-1 and t = 0 (Lu et al. 2022, sec. 3.3)
  renoise:  the first level at the top, the other K - 1 log-SNR uniform from sigma = 0.7 down to 0.1: where
            multistep consistency sampling (Song et al. 2023, Algorithm 1) re-noises its x0_hat (RENOISE_SIGMAS);
            beyond 4 calls the levels keep that log-SNR step and the extra ones go above 0.7 (RENOISE_SPAN); from
            10 calls, where that would pass the top, the K - 1 levels are log-SNR uniform from the top down to 0.1
  renoise-low: renoise's levels up to 4 calls; beyond, the extra levels go below 0.1, log-SNR uniform down to
            0.015 (RENOISE_LOW), for students that gain from more calls at low noise (digits', not mnist5k's)
A continuous spacing may name its lowest level: "logsnr:0.3" ("karras:0.3") is logsnr (karras) narrowed to
sigma_min = 0.3 (narrowed_spacing); a distilled student of points records one (runs/distill.py: STUDENT_SPACING).
A sampler always ends with a final step from the last grid time to x_0 (t = -1).

Noise cap: no grid time is noisier than sigma_max = 160 in VE units (x / alpha), i.e. 160 data standard
deviations (normalized data), EDM's sigma_max / sigma_data = 80 / 0.5 (Karras et al. 2022, Table 1).
The linear schedule (sigma at T-1 = 158) is untouched; the cosine schedule's last steps (betas clipped at
0.999, sigma up to 2e4) are merged into one start at sigma_max, where x_T ~ N(0, I) is still exact to
1 / 160. Zero-terminal-SNR schedules keep t = T-1 (sigma = inf) as the start.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np
import torch

from ..errors import ConfigError, choice_error

Spacing = Literal["leading", "trailing", "linspace", "karras", "logsnr", "renoise", "renoise-low"]
SPACINGS: tuple[str, ...] = get_args(Spacing)
# the timesteps diffusers' scheduler for the sampler would take (sampler_grid; an imported run's own spacing)
DIFFUSERS_SPACINGS = ("diffusers-leading", "diffusers-trailing", "diffusers-linspace")
# diffusers' timesteps for K steps depend on the scheduler as well as on timestep_spacing: its multistep solvers
# (DPMSolverMultistepScheduler) take K of K + 1 linspace / leading points, dropping the lowest; its Euler schedulers
# keep linspace's times unrounded; DDIM / DDPM take K points. The sampler's family picks the convention.
DIFFUSERS_FAMILY = {"dpmpp-2m": "multistep", "dpmpp-3m": "multistep", "dpmpp-2m-sde": "multistep",
                    "euler": "euler", "heun": "euler", "euler-a": "euler"}


def diffusers_spacing(spacing: str | None) -> tuple[str, int] | None:
    """(timestep_spacing, steps_offset) of a diffusers spacing name: "diffusers-leading", "diffusers-trailing",
    "diffusers-linspace", or "diffusers-leading+N" (steps_offset N, which diffusers adds to leading timesteps only,
    as Stable Diffusion's schedulers do with N = 1); None for any other spacing."""
    if spacing in DIFFUSERS_SPACINGS:
        return spacing.removeprefix("diffusers-"), 0
    head, plus, offset = (spacing or "").partition("+")
    if head == "diffusers-leading" and plus and offset.isdigit():
        return "leading", int(offset)
    if (spacing or "").startswith("diffusers-"):
        raise ConfigError(f"spacing {spacing!r} is not one of {', '.join(DIFFUSERS_SPACINGS)} or diffusers-leading+N "
                          "(steps_offset N)")
    return None


def diffusers_timesteps(num_timesteps: int, steps: int, spacing: str, sampler: str, offset: int = 0) -> torch.Tensor:
    """The K descending timesteps diffusers' scheduler for `sampler` would use with timestep_spacing `spacing`
    (leading, trailing, linspace) and steps_offset `offset` (leading only, as there), as float64 [K]; the last
    step then goes to x_0."""
    T, K = num_timesteps, check_steps(steps, num_timesteps)
    family = DIFFUSERS_FAMILY.get(sampler, "ddim")
    extra = 1 if family == "multistep" else 0
    if spacing == "linspace":
        ts = np.linspace(0, T - 1, K + extra)
        ts = ts if family == "euler" else ts.round()
        ts = ts[::-1][:K]
    elif spacing == "leading":
        ts = (np.arange(0, K + extra) * (T // (K + extra))).round()[::-1][:K] + offset
        if ts[0] > T - 1:
            raise ConfigError(f"steps_offset {offset} puts the first of {K} leading timesteps at {int(ts[0])}, past "
                              f"the model's last ({T - 1}); sample with fewer steps")
    elif spacing == "trailing":
        ts = np.round(np.arange(T, 0, -T / K)) - 1
    else:
        raise choice_error("diffusers timestep spacing", spacing, ("leading", "trailing", "linspace"))
    return torch.from_numpy(np.ascontiguousarray(ts, dtype=np.float64))
CONTINUOUS_SPACINGS = ("karras", "logsnr")  # placed by noise level; the others pick training timesteps
# renoise: the consistency sampler's re-noising levels (data standard deviations), highest and lowest. Song et al.
# (2023) pick them by search per data set; measured here (benchmarks/distill.py's students, runs/distill.py): a
# digits student (w = 3 folded in) at 4 calls, 3 + 3 seeds of 2,000, FD over the floor and guided accuracy:
# trailing times (sigma 2.44, 1.01, 0.43) 1.42x / 1.41x, 98.4% / 98.4%; 0.7 .. 0.1: 1.30x / 1.34x, 99.5% / 99.2%;
# 1.0 .. 0.1: 1.28x, 99.0%; 0.5 .. 0.1: 1.36x / 1.40x, 99.6% / 99.3% (re-noised higher, a sample's class is
# redrawn more often; lower, less detail is redrawn). Points: docs/distill.md (gaussians8 better, spiral a little worse)
RENOISE_SIGMAS = (0.7, 0.1)
# With 8 calls, 7 levels crowded into 0.7 .. 0.1 made the spiral's consistency student worse than at 4 calls and than
# its teacher's best 8-call sampler (2.6e-4 against 2.0e-4; 8 seeds of 50,000); 4 calls' step with the extra levels
# above 0.7 (up to 34): 1.5e-4 (gaussians8: 4.1e-4 against 2.4e-4, both far below its teacher's 1.0e-3). docs/distill.md
RENOISE_SPAN = 3  # levels spread over RENOISE_SIGMAS (4 calls); with more calls the extra levels go above 0.7
# renoise-low: with more than 4 calls the extra levels go below 0.1 instead, log-SNR uniform down to this level.
# Digits' consistency students (12 levels, 1x the teacher's learning rate; benchmarks/distill_eight.py's grids, 3
# seeds of 2,000, FD over the floor; three students) at 8 calls: 1.15-1.16x with the extras at 0.06 .. 0.015, 1.15x
# continuing the 4-call step (0.038 .. 0.002, below the student's boundary), 1.20-1.21x spread between 0.7 and 0.04,
# 1.25x above 0.7 (one student); at 4 calls 1.14-1.16x. Others lose: mnist5k's default student 3.17x below against
# 2.72x above (5 seeds of 1,000), spiral 2.2e-4 against 1.5e-4; gaussians8 gains (2.8e-4 against 4.2e-4; 8 seeds of
# 50,000). So renoise stays the consistency sampler's default; digits' students record this grid as their own
# (runs/distill.py: CONSISTENCY_OWN), and it is one flag away for any other.
RENOISE_LOW = 0.015
RHO = 7.0
SIGMA_MAX = 160.0
# DPM-Solver++'s default noise range in data standard deviations (see `ode_sigma_range`)
ODE_SIGMA_MAX = 10.0
ODE_SIGMA_MIN_TIMES_STEPS = 0.5


def narrowed_spacing(spacing: str | None) -> tuple[str | None, float | None]:
    """(spacing, sigma_min) of a spacing name: "logsnr:S" or "karras:S" (that continuous spacing, its lowest level
    sigma_min = S data standard deviations) -> (name, S); any other name -> (it, None)."""
    head, colon, value = (spacing or "").partition(":")
    if not colon:
        return spacing, None
    try:
        sigma_min = float(value)
    except ValueError:
        sigma_min = math.nan
    if head not in CONTINUOUS_SPACINGS or not math.isfinite(sigma_min) or sigma_min <= 0:
        raise ConfigError(f"spacing {spacing!r}: only {' and '.join(CONTINUOUS_SPACINGS)} take a lowest noise level, "
                          "as NAME:SIGMA_MIN with SIGMA_MIN > 0 (e.g. logsnr:0.3)")
    return head, sigma_min


def ode_sigma_range(steps: int) -> tuple[float, float]:
    """The noise range [0.5 / K, 10] (data standard deviations) DPM-Solver++ spends its K steps on by default.

    Top: for normalized data x_T ~ N(0, I) has the true marginal's mean and covariance at any level, and the
    data's higher cumulants shrink as alpha^k ~ sigma^-k, so above sigma = 10 there is nothing left to solve
    (the third cumulant is down 1000x). Bottom: the final step returns x0_hat(sigma_min), a posterior mean
    that blurs detail finer than sigma_min by O(sigma_min^2); a second-order solver's own error is O(1/K^2),
    so sigma_min ~ 1/K balances the two. The constants were measured on the spiral (benchmarks/samplers.py:
    at 10 steps the energy distance falls from 7.2e-4 over the capped full range to 1.0e-4, linear schedule)."""
    return ODE_SIGMA_MIN_TIMES_STEPS / steps, ODE_SIGMA_MAX


def karras_sigmas(ramp: torch.Tensor, sigma_min: float, sigma_max: float, rho: float = RHO) -> torch.Tensor:
    """Noise levels (s_max^(1/rho) + ramp (s_min^(1/rho) - s_max^(1/rho)))^rho for ramp in [0, 1] (Karras et al.
    2022, eq. 5): sigma_max at ramp 0, sigma_min at ramp 1."""
    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def check_steps(steps, num_timesteps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps <= 0 or steps > num_timesteps:
        raise ConfigError(f"steps must be an integer from 1 to the model's {num_timesteps} timesteps, got {steps}")
    return int(steps)


def timesteps(num_timesteps: int, steps: int, spacing: str = "trailing") -> torch.Tensor:
    """K distinct integer timesteps in [0, T-1], descending, as float64 [K] (discrete spacings only)."""
    T = num_timesteps
    steps = check_steps(steps, T)
    if spacing == "leading":
        ts = np.arange(steps) * (T // steps)
    elif spacing == "trailing":
        ts = np.round(T - np.arange(steps) * (T / steps)).astype(np.int64) - 1
    elif spacing == "linspace":
        ts = np.round(np.linspace(0, T - 1, steps)).astype(np.int64)
    elif spacing.startswith("diffusers-"):
        raise ConfigError(f"spacing {spacing!r} depends on the sampler; use sampler_grid(schedule, sampler, ...)")
    elif spacing in SPACINGS:
        raise ConfigError(f"spacing {spacing!r} needs the schedule; use make_grid(schedule, steps, spacing)")
    else:
        raise choice_error("timestep spacing", spacing, SPACINGS)
    ts = np.unique(ts)[::-1].copy()
    return torch.from_numpy(ts.astype(np.float64))


def check_sigma_range(sigma_min, sigma_max) -> None:
    for name, v in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0):
            raise ConfigError(f"{name} must be a finite noise level > 0 (in data standard deviations), got {v}")
    if sigma_min is not None and sigma_max is not None and not sigma_min < sigma_max:
        raise ConfigError(f"sigma_min ({sigma_min}) must be below sigma_max ({sigma_max})")


def make_grid(schedule, steps: int, spacing: str = "trailing", sigma_max: float | None = SIGMA_MAX,
              sigma_min: float | None = None) -> torch.Tensor:
    """K' <= K descending float times for any spacing (K' < K only where a noise cap merges times).

    sigma_max / sigma_min (VE units sigma_t / alpha_t, i.e. data standard deviations for normalized data)
    narrow the grid to that noise range; None keeps the schedule's end (or the one a spacing "NAME:SIGMA_MIN"
    names). The final step still goes to x_0."""
    T = schedule.num_timesteps
    spacing, narrowed = narrowed_spacing(spacing)
    if spacing not in SPACINGS:
        raise choice_error("timestep spacing", spacing, SPACINGS)
    sigma_min = narrowed if sigma_min is None else sigma_min
    steps = check_steps(steps, T)
    check_sigma_range(sigma_min, sigma_max)
    lam = schedule.log_snr
    zero_terminal = not math.isfinite(float(lam[-1]))
    lam_floor = float(lam[-2] if zero_terminal else lam[-1])
    if sigma_max is not None:
        lam_floor = max(lam_floor, -2.0 * math.log(sigma_max))
    lam_max = float(lam[0])
    if sigma_min is not None:
        lam_max = min(lam_max, -2.0 * math.log(sigma_min))
    if lam_max <= lam_floor:
        raise ConfigError(f"the noise range sigma {sigma_min}..{sigma_max} misses this schedule's "
                          f"{math.exp(-lam[0] / 2):.3g}..{math.exp(-lam_floor / 2):.3g}")
    t_cap, t_min = float(schedule.t_at_log_snr(lam_floor)), float(schedule.t_at_log_snr(lam_max))
    if spacing in ("renoise", "renoise-low"):
        head = torch.tensor([float(T - 1) if zero_terminal else t_cap], dtype=torch.float64)
        lam_top, lam_bottom = (-2.0 * math.log(s) for s in RENOISE_SIGMAS)  # sigma 0.7 (lower log-SNR), then 0.1
        n = steps - 1  # re-noise levels: up to RENOISE_SPAN across the range; more above it, a step apart (or below)
        if n <= RENOISE_SPAN:
            lam = torch.linspace(lam_top, lam_bottom, n, dtype=torch.float64)
        elif spacing == "renoise-low":  # the extra levels below 0.1, down to RENOISE_LOW
            low = torch.linspace(lam_bottom, -2.0 * math.log(RENOISE_LOW), n - RENOISE_SPAN + 1, dtype=torch.float64)
            lam = torch.cat([torch.linspace(lam_top, lam_bottom, RENOISE_SPAN, dtype=torch.float64), low[1:]])
        else:
            step = (lam_bottom - lam_top) / (RENOISE_SPAN - 1)
            lam = lam_bottom - step * torch.arange(n - 1, -1, -1, dtype=torch.float64)
            if float(lam[0]) <= lam_floor:  # past the top (10 calls and more): n levels evenly below the first call
                lam = torch.linspace(lam_floor, lam_bottom, n + 1, dtype=torch.float64)[1:]
        body = schedule.t_at_log_snr(lam.clamp(lam_floor, lam_max))
    elif spacing not in CONTINUOUS_SPACINGS:
        ts = timesteps(T, steps, spacing)
        head = ts[:1] if zero_terminal and float(ts[0]) == T - 1 else ts[:0]
        body = ts[len(head):].clamp(min=t_min, max=t_cap)
    else:
        head = torch.tensor([float(T - 1)] if zero_terminal else [], dtype=torch.float64)
        k = steps - len(head)
        u = torch.linspace(0, 1, k, dtype=torch.float64)
        if spacing == "karras":
            s_min, s_max = math.exp(-lam_max / 2), math.exp(-lam_floor / 2)
            sigma = karras_sigmas(u, s_min, s_max)
            body = schedule.t_at_sigma_ve(sigma) if k else u
        else:  # logsnr
            body = schedule.t_at_log_snr(lam_floor + u * (lam_max - lam_floor)) if k else u
    return torch.unique(torch.cat([head, body])).flip(0)


def with_final(ts: torch.Tensor) -> list[tuple[float, float]]:
    """Pairs (t, t_prev) along the grid, ending at t_prev = -1 (x_0 itself, alpha_bar = 1)."""
    ts = torch.as_tensor(ts, dtype=torch.float64)
    nxt = torch.cat([ts[1:], torch.tensor([-1.0], dtype=ts.dtype)])
    return list(zip(ts.tolist(), nxt.tolist()))


def check_strength(strength) -> float:
    """An img2img strength: a number in [0, 1]."""
    ok = isinstance(strength, (int, float)) and not isinstance(strength, bool) and math.isfinite(strength)
    if not ok or not 0 <= strength <= 1:
        raise ConfigError(f"the strength is a number in [0, 1] (0: the input back unchanged, 1: from pure noise), "
                          f"got {strength!r}")
    return float(strength)


def part_way(ts: torch.Tensor, strength: float) -> torch.Tensor:
    """The last round(strength x K) times of a K-step grid: where img2img starts (SDEdit, Meng et al. 2022,
    sec. 4: t0 = strength; as diffusers' img2img, which takes int(K strength)). Empty at strength 0."""
    k = round(check_strength(strength) * len(ts))
    return ts[len(ts) - k:]
