"""NoiseSchedule: the forward process q(x_t | x_0) and its tables.

Time convention: t = 0 .. T-1 (`num_timesteps` = T). alpha_bar_t = prod_{s<=t} alpha_s,
so x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (Ho et al. 2020, eq. 4) and
x_{-1} = x_0. All tables are float64 and cast to the caller's dtype at the boundary.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np
import torch

from .errors import ConfigError, choice_error

ScheduleName = Literal["linear", "cosine", "sigmoid", "scaled_linear"]
SCHEDULE_NAMES: tuple[str, ...] = get_args(ScheduleName)
F64 = torch.float64


def linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Ho et al. 2020, sec. 4: betas linear from 1e-4 to 0.02 at T = 1000 (scaled by 1000 / T)."""
    scale = 1000.0 / num_timesteps
    return torch.linspace(scale * beta_start, scale * beta_end, num_timesteps, dtype=F64).clamp(max=0.999)


def scaled_linear_betas(num_timesteps: int, beta_start: float = 0.00085, beta_end: float = 0.012) -> torch.Tensor:
    """Latent diffusion (Rombach et al. 2022): sqrt(beta) linear, then squared."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=F64) ** 2


def betas_from_alpha_bar(alpha_bar_fn, num_timesteps: int, max_beta: float = 0.999) -> torch.Tensor:
    """beta_t = 1 - abar((t+1)/T) / abar(t/T), clipped (Nichol & Dhariwal 2021, eq. 17 and below)."""
    s = torch.arange(num_timesteps + 1, dtype=F64) / num_timesteps
    abar = alpha_bar_fn(s)
    return (1.0 - abar[1:] / abar[:-1]).clamp(min=0.0, max=max_beta)


def cosine_betas(num_timesteps: int, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal 2021, eq. 17: abar(u) = cos^2(((u + s) / (1 + s)) pi / 2)."""
    return betas_from_alpha_bar(lambda u: torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2, num_timesteps)


def sigmoid_betas(num_timesteps: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> torch.Tensor:
    """Sigmoid abar schedule (Jabri et al. 2022, 'Scalable Adaptive Computation', Algorithm 2)."""
    v_start = torch.sigmoid(torch.tensor(start / tau, dtype=F64))
    v_end = torch.sigmoid(torch.tensor(end / tau, dtype=F64))

    def abar(u):
        return (v_end - torch.sigmoid((u * (end - start) + start) / tau)) / (v_end - v_start)

    return betas_from_alpha_bar(abar, num_timesteps)


_BUILDERS = {"linear": linear_betas, "cosine": cosine_betas, "sigmoid": sigmoid_betas,
             "scaled_linear": scaled_linear_betas}


def _gather(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """table[t] for integer t, cast to like.dtype/device and shaped [B, 1, ...] to broadcast over like."""
    out = table.to(like.device)[t.to(like.device).long()].to(like.dtype)
    return out.reshape(-1, *([1] * (like.dim() - 1)))


class NoiseSchedule:
    """Float64 tables of a discrete variance-preserving diffusion of length T (the "vp" path; path.py holds the
    flow and EDM paths, which are NoiseSchedules too, seen through their VP view)."""

    path = "vp"

    def __init__(self, betas, name: str = "custom"):
        betas = torch.as_tensor(betas, dtype=F64).flatten().clone()
        if betas.numel() < 2:
            raise ConfigError(f"a schedule needs at least 2 betas, got {betas.numel()}")
        if not torch.isfinite(betas).all() or (betas <= 0).any() or (betas > 1).any():
            raise ConfigError("betas must be finite and in (0, 1]")
        self.name = name
        self.zero_terminal_snr = False  # set by rescale_zero_terminal_snr
        self.betas = betas  # [T]
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)
        # alpha_bar_{t-1}, with alpha_bar_{-1} = 1 (x_{-1} = x_0).
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=F64), self.alphas_cumprod[:-1]])

    # construction ---------------------------------------------------------
    @classmethod
    def from_name(cls, name: str, num_timesteps: int = 1000) -> NoiseSchedule:
        if name not in _BUILDERS:
            raise choice_error("schedule", name, SCHEDULE_NAMES)
        if not isinstance(num_timesteps, int) or num_timesteps < 2:
            raise ConfigError(f"the number of timesteps must be an integer >= 2, got {num_timesteps!r}")
        return cls(_BUILDERS[name](num_timesteps), name=name)

    @property
    def num_timesteps(self) -> int:
        return self.betas.numel()

    # derived tables -------------------------------------------------------
    @property
    def snr(self) -> torch.Tensor:
        """SNR_t = alpha_bar / (1 - alpha_bar) (Kingma et al. 2021, eq. 1)."""
        return self.alphas_cumprod / (1.0 - self.alphas_cumprod)

    @property
    def snr_db(self) -> torch.Tensor:
        return 10.0 * torch.log10(self.snr)

    @property
    def log_snr(self) -> torch.Tensor:
        """lambda_t = log SNR_t; -inf where alpha_bar = 0 (zero terminal SNR)."""
        return torch.log(self.alphas_cumprod) - torch.log1p(-self.alphas_cumprod)

    @property
    def sigma(self) -> torch.Tensor:
        """VP noise std sigma_t = sqrt(1 - alpha_bar_t)."""
        return torch.sqrt(1.0 - self.alphas_cumprod)

    def alpha_bar_at(self, t) -> torch.Tensor:
        """alpha_bar at float t in [-1, T-1]: log-SNR interpolated linearly between integer steps.

        t = -1 means x_0 itself (alpha_bar = 1). Exact at integer t. Returns float64 [B].
        """
        if not isinstance(t, torch.Tensor):
            t = np.asarray(t)
            t = torch.from_numpy(t.astype(np.float64) if t.dtype.kind == "f" else t)
        if not t.is_floating_point() and t.numel() and 0 <= int(t.min()) and int(t.max()) < self.num_timesteps:
            return self.alphas_cumprod[t.reshape(-1).cpu()]  # integer fast path
        t = t.to(F64).reshape(-1).clamp(-1.0, self.num_timesteps - 1)
        table = torch.cat([torch.ones(1, dtype=F64), self.alphas_cumprod])  # index = t + 1
        u = t + 1.0
        lo = u.floor().long()
        frac = u - lo
        a_lo, a_hi = table[lo], table[(lo + 1).clamp(max=self.num_timesteps)]
        # interpolate log-SNR (smooth over many orders of magnitude); on [-1, 0] log-SNR starts at +inf,
        # so interpolate log alpha_bar there instead
        lam_lo = torch.log(a_lo) - torch.log1p(-a_lo)
        lam_hi = torch.log(a_hi) - torch.log1p(-a_hi)
        by_snr = torch.sigmoid(lam_lo + frac * (lam_hi - lam_lo))
        by_log = a_hi**frac
        out = torch.where(lo == 0, by_log, by_snr)
        return torch.where(frac == 0, a_lo, out)

    def t_at_log_snr(self, log_snr) -> torch.Tensor:
        """Inverse of alpha_bar_at on [0, T-1]: the float t whose log-SNR is `log_snr` (clamped to the table)."""
        lam_table = self.log_snr  # [T], decreasing; may end in -inf
        lam = torch.as_tensor(log_snr, dtype=F64).reshape(-1)
        finite = torch.isfinite(lam_table)
        lo_lam = lam_table[finite].min()
        lam = lam.clamp(min=float(lo_lam), max=float(lam_table[0]))
        # index i with lam_table[i] >= lam > lam_table[i + 1]
        i = (torch.searchsorted(-lam_table[finite].contiguous(), -lam, right=True) - 1).clamp(0, int(finite.sum()) - 2)
        lam_i, lam_j = lam_table[i], lam_table[i + 1]
        frac = torch.where(lam_i > lam_j, (lam_i - lam) / (lam_i - lam_j), torch.zeros_like(lam))
        return i.to(F64) + frac

    def t_at_sigma_ve(self, sigma_ve) -> torch.Tensor:
        """t at a variance-exploding noise level sigma_ve = sigma / alpha = exp(-log_snr / 2)."""
        return self.t_at_log_snr(-2.0 * torch.log(torch.as_tensor(sigma_ve, dtype=F64)))

    # the path's own coordinates (path.py): for a VP schedule they are the schedule's own ---------------
    def path_scales(self, t):
        """(alpha, sigma) of x = alpha x0 + sigma eps at float t, float64 [B]."""
        abar = self.alpha_bar_at(t)
        return abar.sqrt(), (1.0 - abar).sqrt()

    def network_time(self, t) -> torch.Tensor:
        """The time the network sees: the float index t itself."""
        return torch.as_tensor(t, dtype=F64).reshape(-1)

    # forward process ------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (Ho et al. 2020, eq. 4)."""
        alpha_bar = self.alpha_bar_at(t).to(x0.device, x0.dtype).reshape(-1, *([1] * (x0.dim() - 1)))
        return alpha_bar.sqrt() * x0 + (1.0 - alpha_bar).sqrt() * eps

    def q_step(self, x_prev: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """One Markov step x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps (Ho et al. 2020, eq. 2)."""
        beta = _gather(self.betas, torch.as_tensor(t), x_prev)
        return (1.0 - beta).sqrt() * x_prev + beta.sqrt() * eps

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """Mean and variance of q(x_{t-1} | x_t, x_0) (Ho et al. 2020, eqs. 6-7).

        Returns (mean [B, ...], variance [B, 1, ...]); the variance is 0 at t = 0.
        """
        t = torch.as_tensor(t)
        c0, ct, var = (_gather(tab, t, x_t) for tab in self.posterior_tables())
        return c0 * x0 + ct * x_t, var

    def posterior_tables(self):
        """Coefficients of x_0 and x_t in the posterior mean, and beta-tilde_t, as float64 [T]."""
        ab, ab_prev = self.alphas_cumprod, self.alphas_cumprod_prev
        coef_x0 = self.betas * ab_prev.sqrt() / (1.0 - ab)
        coef_xt = (1.0 - ab_prev) * self.alphas.sqrt() / (1.0 - ab)
        variance = self.betas * (1.0 - ab_prev) / (1.0 - ab)
        return coef_x0, coef_xt, variance

    # serialisation --------------------------------------------------------
    def to_config(self) -> dict:
        if self.name in _BUILDERS:
            cfg = {"name": self.name, "num_timesteps": self.num_timesteps}
        else:
            cfg = {"name": "custom", "betas": self.betas.tolist()}
        return {**cfg, "zero_terminal_snr": self.zero_terminal_snr}

    @classmethod
    def from_config(cls, cfg: dict) -> NoiseSchedule:
        if cfg.get("name") == "custom":
            sched = cls(cfg["betas"], name="custom")
        else:
            sched = cls.from_name(cfg["name"], int(cfg["num_timesteps"]))
        if cfg.get("zero_terminal_snr"):
            sched = rescale_zero_terminal_snr(sched)
        return sched


def rescale_zero_terminal_snr(schedule: NoiseSchedule) -> NoiseSchedule:
    """Shift and scale sqrt(alpha_bar) so alpha_bar_{T-1} = 0 and alpha_bar_0 is kept.

    Lin et al. 2024, 'Common Diffusion Noise Schedules and Sample Steps are Flawed', Algorithm 1.
    """
    sqrt_ab = schedule.alphas_cumprod.sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab = (sqrt_ab - last) * first / (first - last)
    ab = sqrt_ab**2
    alphas = torch.cat([ab[:1], ab[1:] / ab[:-1]])
    out = NoiseSchedule(1.0 - alphas, name=schedule.name)
    out.zero_terminal_snr = True
    return out
