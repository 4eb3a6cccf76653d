"""Gaussian paths beyond the discrete VP schedules: x_tau = alpha_tau x0 + sigma_tau eps.

Diffusion and flow matching are one family under different paths, parametrizations, time distributions and loss
weights (Kingma & Gao 2023; Gao et al. 2024). Every path here is also a NoiseSchedule: the samplers see a float
time t on the index axis [-1, T-1] (t = -1 is x0 itself) and the *variance-preserving* view of the path,

    x_vp = x_tau / sqrt(alpha^2 + sigma^2),   alpha_bar(t) = alpha^2 / (alpha^2 + sigma^2),

which has the same x0 and eps (a rescaling of x changes neither), so every sampler, the guidance, x0 clipping and
the likelihood run on every path unchanged. The Denoiser scales x_vp back to the path's own x_tau for the network
(`scale`) and shows it the path's own time (`network_time`); `path_scales` gives (alpha, sigma) for converting the
network's output to (eps_hat, x0_hat) (prediction.to_eps_x0_on_path).

  FlowPath   rectified flow / flow matching (Liu et al. 2023; Lipman et al. 2023): alpha = 1 - tau, sigma = tau,
             tau in [0, 1], with SD3's shift s: tau = s u / (1 + (s - 1) u) of a uniform u (Esser et al. 2024,
             eq. 23); the network sees 1000 tau (diffusers' and SD3's timestep). The index axis is uniform in u,
             so a uniform grid on it is the shifted grid of FlowMatchEulerDiscreteScheduler.
  EDMPath    variance exploding (Karras et al. 2022): alpha = 1, sigma in [sigma_min, sigma_max] log-uniform along
             the index axis; the network sees the index, an affine map of EDM's c_noise = ln(sigma) / 4
             (Table 1), and its input scaled by c_in = 1 / sqrt(sigma^2 + sigma_data^2).
"""

from __future__ import annotations

import math

import torch

from .errors import ConfigError, choice_error
from .schedule import F64, NoiseSchedule


def shift_time(u, shift: float):
    """SD3's time shift (Esser et al. 2024, eq. 23): s u / (1 + (s - 1) u); s = 1 is the identity."""
    return shift * u / (1.0 + (shift - 1.0) * u)


def unshift_time(tau, shift: float):
    """The inverse of shift_time: u = tau / (s - (s - 1) tau)."""
    return tau / (shift - (shift - 1.0) * tau)


def check_shift(shift) -> float:
    if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not math.isfinite(shift) or shift <= 0:
        raise ConfigError(f"--shift is a finite number > 0 (1: no shift; SD3 uses 3 at 1024 px), got {shift!r}")
    return float(shift)


def _as_t(t) -> torch.Tensor:
    return torch.as_tensor(t, dtype=F64).reshape(-1)


class _ContinuousPath(NoiseSchedule):
    """A path with a closed form on the index axis: its table is the exact alpha_bar at the integers, and
    alpha_bar_at / t_at_log_snr are exact between them (no interpolation)."""

    path = "custom"

    def _build_table(self, num_timesteps: int) -> None:
        abar = self.alpha_bar_at(torch.arange(num_timesteps, dtype=F64))
        prev = torch.cat([torch.ones(1, dtype=F64), abar[:-1]])
        super().__init__((1.0 - abar / prev).clamp(min=1e-300, max=1.0), name=self.path)
        self.zero_terminal_snr = bool(abar[-1] == 0)

    def scale(self, t) -> torch.Tensor:
        """x_tau = scale * x_vp: sqrt(alpha^2 + sigma^2), float64 [B]."""
        alpha, sigma = self.path_scales(t)
        return torch.sqrt(alpha**2 + sigma**2)

    def alpha_bar_at(self, t) -> torch.Tensor:
        alpha, sigma = self.path_scales(t)
        return alpha**2 / (alpha**2 + sigma**2)

    def input_scale(self, t) -> torch.Tensor:
        """What the network's input x is multiplied by (1; EDM: c_in)."""
        return torch.ones_like(_as_t(t))


class FlowPath(_ContinuousPath):
    """Rectified flow: x_tau = (1 - tau) x0 + tau eps, tau = shift_time((t + 1) / T)."""

    path = "flow"

    def __init__(self, num_timesteps: int = 1000, shift: float = 1.0):
        self.shift, self.T = check_shift(shift), int(num_timesteps)
        self._build_table(self.T)

    def tau(self, t) -> torch.Tensor:
        u = (_as_t(t).clamp(-1.0, self.T - 1) + 1.0) / self.T
        return shift_time(u, self.shift)

    def t_at_tau(self, tau) -> torch.Tensor:
        return unshift_time(_as_t(tau), self.shift) * self.T - 1.0

    def path_scales(self, t):
        tau = self.tau(t)
        return 1.0 - tau, tau

    def network_time(self, t) -> torch.Tensor:
        return 1000.0 * self.tau(t)

    def t_at_log_snr(self, log_snr) -> torch.Tensor:
        # lam = 2 log((1 - tau) / tau)  =>  tau = sigmoid(-lam / 2)
        tau = torch.sigmoid(-0.5 * _as_t(log_snr))
        return self.t_at_tau(tau).clamp(0.0, self.T - 1)

    def to_config(self) -> dict:
        return {"name": "flow", "num_timesteps": self.T, "shift": self.shift}


class EDMPath(_ContinuousPath):
    """Variance exploding: x = x0 + sigma eps, ln sigma uniform on the index axis [0, T-1] from sigma_min to
    sigma_max; between t = -1 (x0) and t = 0, log alpha_bar is interpolated linearly as for the VP tables."""

    path = "edm"

    def __init__(self, num_timesteps: int = 1000, sigma_min: float = 0.002, sigma_max: float = 80.0,
                 sigma_data: float = 0.5):
        for name, v in (("sigma_min", sigma_min), ("sigma_max", sigma_max), ("sigma_data", sigma_data)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"the EDM path's {name} is a finite number > 0, got {v!r}")
        if not sigma_min < sigma_max:
            raise ConfigError(f"the EDM path needs sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
        self.sigma_min, self.sigma_max, self.sigma_data = float(sigma_min), float(sigma_max), float(sigma_data)
        self.T = int(num_timesteps)
        self._build_table(self.T)

    def sigma_at(self, t) -> torch.Tensor:
        t = _as_t(t).clamp(-1.0, self.T - 1)
        lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        sigma = torch.exp(lo + t.clamp(min=0.0) / (self.T - 1) * (hi - lo))
        # t in [-1, 0): alpha_bar = alpha_bar_0 ** (t + 1), so sigma^2 = alpha_bar^-1 - 1 goes to 0 at t = -1
        abar0 = 1.0 / (1.0 + self.sigma_min**2)
        below = torch.sqrt(torch.clamp(abar0 ** -(t + 1.0) - 1.0, min=0.0))
        return torch.where(t < 0, below, sigma)

    def t_at_sigma(self, sigma) -> torch.Tensor:
        """The index of a noise level (ln sigma affine; outside [sigma_min, sigma_max] extrapolated)."""
        lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        return (torch.log(_as_t(sigma)) - lo) / (hi - lo) * (self.T - 1)

    def path_scales(self, t):
        sigma = self.sigma_at(t)
        return torch.ones_like(sigma), sigma

    def network_time(self, t) -> torch.Tensor:
        return _as_t(t).clamp(-1.0, self.T - 1)

    def input_scale(self, t) -> torch.Tensor:
        """c_in = 1 / sqrt(sigma^2 + sigma_data^2) (Karras et al. 2022, Table 1)."""
        return 1.0 / torch.sqrt(self.sigma_at(t) ** 2 + self.sigma_data**2)

    def t_at_log_snr(self, log_snr) -> torch.Tensor:
        # alpha = 1: lam = -2 ln sigma
        sigma = torch.exp(-0.5 * _as_t(log_snr))
        return self.t_at_sigma(sigma).clamp(0.0, self.T - 1)

    def to_config(self) -> dict:
        return {"name": "edm", "num_timesteps": self.T, "sigma_min": self.sigma_min, "sigma_max": self.sigma_max,
                "sigma_data": self.sigma_data}


def path_for(objective: str = "ddpm", *, schedule: str = "linear", num_timesteps: int = 1000, shift: float = 1.0,
             sigma_data: float = 1.0) -> NoiseSchedule:
    """The path an objective trains on, as the samplers see it: ddpm's VP schedule by name, the flow path with
    its shift, the EDM path with its sigma_data."""
    if objective == "flow":
        return FlowPath(num_timesteps, shift)
    if objective == "edm":
        return EDMPath(num_timesteps, sigma_data=sigma_data)
    if objective != "ddpm":
        raise choice_error("objective", objective, ("ddpm", "edm", "flow"))
    return NoiseSchedule.from_name(schedule, num_timesteps)
