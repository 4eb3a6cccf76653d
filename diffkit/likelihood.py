"""Likelihoods of data under a diffusion model: the probability-flow ODE NLL and the discrete-time ELBO.

Both work on any Denoiser (trained or the oracle) in the model's coordinates and return nats per point;
runs.nll_run converts to the data's own coordinates (points) or bits per dimension (images).

Probability-flow ODE (Song et al. 2021, sec. 4.3 and appendix D.2). In the variance-exploding view
y = x_t / alpha_t at noise level sigma = sigma_t / alpha_t (Karras et al. 2022, eq. 4; DDIM eq. 14) the
ODE is dy/dsigma = eps_hat(alpha y, t(sigma)), and the instantaneous change of variables gives
    log p_0(y_0) = log p_prior(y_max) + int_0^sigma_max div_y eps_hat dsigma,
with the prior x_T ~ N(0, I), i.e. y_max ~ N(0, (1 + sigma_max^2) I). The divergence is exact (D autograd
passes) in low dimension and Hutchinson's estimate v^T J v with fixed Rademacher probes above it
(Grathwohl et al. 2019, FFJORD). SciPy's adaptive RK45 integrates the whole batch at the given tolerances.

ELBO (Ho et al. 2020, eq. 5; Sohl-Dickstein et al. 2015). The data x sits at t = -1, latents at 0..T-1:
    -log p(x) <= L_T + sum_{t=1}^{T-1} L_t + L_0
    L_T = KL(q(x_{T-1} | x) || N(0, I))                         (closed form)
    L_t = KL(q(x_{t-1} | x_t, x) || p(x_{t-1} | x_t))           = c0_t^2 ||x - x0_hat||^2 / (2 beta_tilde_t)
    L_0 = -log N(x; x0_hat(x_0, 0), sigma_ve(0)^2 I)             (Gaussian decoder)
where p(x_{t-1} | x_t) is the posterior with x0_hat in place of x (variance beta_tilde, eqs. 6-7), so each
KL is its mean term. The sum over t is estimated with one t per stratum of `strata` equal strata of 1..T-1
(one noise draw each; unbiased), and the per-t terms come back for plotting.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .devices import randn
from .errors import ConfigError

F64 = torch.float64
LOG_2PI = math.log(2 * math.pi)
EXACT_DIVERGENCE_MAX_DIM = 16  # up to this many dimensions the divergence is exact (D backward passes)


def sigma_ve_at(schedule, t) -> torch.Tensor:
    """sigma_t / alpha_t at float times t (float64); 0 at t = -1."""
    ab = schedule.alpha_bar_at(t)
    return ((1 - ab) / ab).sqrt()


def t_at_sigma_ve(schedule, sigma: float) -> float:
    """The float t in [-1, T-1] at VE noise level sigma, below t = 0 too (where alpha_bar_at interpolates
    log alpha_bar: alpha_bar(t) = alpha_bar_0^(t + 1))."""
    sigma0 = float(sigma_ve_at(schedule, [0.0])[0])
    if sigma >= sigma0:
        return float(schedule.t_at_sigma_ve(sigma)[0])
    if sigma <= 0:
        return -1.0
    return math.log1p(sigma**2) / -math.log(float(schedule.alphas_cumprod[0])) - 1.0


def _network_dtype(denoiser, dtype):
    """The dtype to call the network in: as given, float64 for an oracle, else float32."""
    return dtype or (F64 if getattr(denoiser, "mixture", None) is not None else torch.float32)


def rademacher(shape, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randint(0, 2, shape, generator=generator).to(F64) * 2 - 1


def _eps_and_divergence(denoiser, y: torch.Tensor, sigma: float, t: float, cond, probes, dtype):
    """eps_hat(alpha y, t) and div_y of it per row (exact or Hutchinson), y float64 [N, ...]."""
    alpha = 1.0 / math.sqrt(1.0 + sigma**2)
    with torch.enable_grad():
        yy = y.detach().to(dtype).requires_grad_(True)
        eps, _ = denoiser(alpha * yy, t, cond)
        flat = eps.reshape(len(eps), -1)
        if probes is None:  # exact: one backward pass per dimension
            div = torch.zeros(len(eps), dtype=F64, device=y.device)
            for d in range(flat.shape[1]):
                g, = torch.autograd.grad(flat[:, d].sum(), yy, retain_graph=d + 1 < flat.shape[1])
                div += g.reshape(len(eps), -1)[:, d].to(F64)
        else:  # Hutchinson: mean over probes of v^T (d eps / d y) v
            div = torch.zeros(len(eps), dtype=F64, device=y.device)
            for j, v in enumerate(probes):
                vv = v.to(y.device, dtype)
                g, = torch.autograd.grad((flat * vv).sum(), yy, retain_graph=j + 1 < len(probes))
                div += (g.reshape(len(eps), -1) * vv).sum(1).to(F64) / len(probes)
    return eps.detach().to(F64), div


def ode_nll(denoiser, x0: torch.Tensor, *, cond=None, rtol: float = 1e-5, atol: float = 1e-5,
            hutchinson: int | None = None, generator: torch.Generator | None = None,
            sigma_max: float | None = None, dtype=None, progress=None) -> dict:
    """-log p(x0) per point by the probability-flow ODE, in nats, in the model's coordinates.

    Args:
        denoiser: any Denoiser (trained or OracleDenoiser); x0: float [N, ...] in its coordinates.
        cond: class ids [N] (None: the unconditional model).
        rtol, atol: RK45 tolerances (on y and on the accumulated log-density).
        hutchinson: probes of the divergence estimate; None: exact up to 16 dimensions, 1 probe above.
        sigma_max: where the ODE meets the prior (default: the schedule's last level, capped at 160).
        dtype: the network's dtype (default float32; float64 for an oracle).
    Returns {"nll" float64 [N], "nfe" (network evaluations), "sigma_max", "probes" (None: exact divergence)}."""
    x0 = torch.as_tensor(x0)
    N, D = len(x0), x0[0].numel()
    if N == 0:
        raise ConfigError("the likelihood needs at least one point")
    schedule = denoiser.schedule
    if sigma_max is None:
        sigma_max = min(float(sigma_ve_at(schedule, [float(schedule.num_timesteps - 1)])[0]), 160.0)
    dtype = _network_dtype(denoiser, dtype)
    if hutchinson is None and D > EXACT_DIVERGENCE_MAX_DIM:
        hutchinson = 1
    probes = None if hutchinson is None else [rademacher((N, D), generator) for _ in range(hutchinson)]
    shape, nfe, device = x0.shape, [0], x0.device  # the network runs on x0's device

    def rhs(sigma, state):
        y = torch.from_numpy(state[: N * D]).reshape(shape).to(device)  # SciPy's state lives on the CPU
        eps, div = _eps_and_divergence(denoiser, y, sigma, t_at_sigma_ve(schedule, sigma), cond, probes, dtype)
        nfe[0] += 1
        if progress is not None:
            progress(sigma / sigma_max)
        return np.concatenate([eps.reshape(-1).cpu().numpy(), div.cpu().numpy()])

    # imported here, not at the top: SciPy's import costs ~0.45 s of every command
    from scipy.integrate import solve_ivp

    state0 = np.concatenate([x0.to(F64).reshape(-1).cpu().numpy(), np.zeros(N)])
    sol = solve_ivp(rhs, (0.0, sigma_max), state0, method="RK45", rtol=rtol, atol=atol)
    if not sol.success:
        raise ConfigError(f"the probability-flow ODE did not converge ({sol.message}); try a looser tolerance")
    y_end, integral = sol.y[: N * D, -1].reshape(N, D), sol.y[N * D:, -1]
    var = 1.0 + sigma_max**2
    log_prior = -0.5 * ((y_end**2).sum(1) / var + D * (math.log(var) + LOG_2PI))
    return {"nll": -(log_prior + integral), "nfe": nfe[0], "sigma_max": sigma_max, "probes": hutchinson}


def _gaussian_kl_prior(x0: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """KL(N(sqrt(ab) x, (1 - ab) I) || N(0, I)) per row (float64)."""
    x2 = x0.reshape(len(x0), -1).to(F64) ** 2
    return 0.5 * (alpha_bar * x2 + (1 - alpha_bar) - 1 - math.log(1 - alpha_bar)).sum(1)


@torch.no_grad()
def elbo(denoiser, x0: torch.Tensor, *, cond=None, strata: int | None = None,
         generator: torch.Generator | None = None, dtype=None, progress=None) -> dict:
    """The negative ELBO (Ho et al. 2020, eq. 5) per point in nats, with its terms (see the module docstring).

    strata: how many t in 1..T-1 are evaluated per point (one per equal stratum; default all T-1).
    Returns {"nll" float64 [N] (the bound), "terms": float64 [N, strata + 2] (L_0, the strata's sums, L_T),
    "t": the strata's first..last t as float64 [strata, 2] (inclusive)}."""
    x0 = torch.as_tensor(x0)
    schedule = denoiser.schedule
    T = schedule.num_timesteps
    strata = T - 1 if strata is None else strata
    if isinstance(strata, bool) or not isinstance(strata, int) or not 1 <= strata <= T - 1:
        raise ConfigError(f"the ELBO's strata must be an integer in 1..{T - 1}, got {strata!r}")
    dtype = _network_dtype(denoiser, dtype)
    x = x0.to(dtype)
    N = len(x)
    coef_x0, _, var = schedule.posterior_tables()
    ab = schedule.alphas_cumprod
    edges = np.linspace(1, T, strata + 1).round().astype(int)  # strata [edges[j], edges[j+1]) of 1..T-1
    terms = torch.zeros(N, strata + 2, dtype=F64)

    def x0_hat_at(t: torch.Tensor) -> torch.Tensor:  # t long [N]: one noise draw per point
        eps = randn(x.shape, generator, device=x.device, dtype=F64).to(dtype)
        a = ab[t].reshape(-1, *([1] * (x.dim() - 1))).to(x.device)
        x_t = a.sqrt().to(dtype) * x + (1 - a).sqrt().to(dtype) * eps
        # rows with different t: one network call (Denoiser takes per-row times)
        return denoiser(x_t, t.to(F64), cond)[1].to(F64).cpu()  # t on the CPU: schedule arithmetic in float64

    # L_0: Gaussian decoder with variance sigma_ve(0)^2 at the first latent
    s0 = float((1 - ab[0]) / ab[0])
    err = ((x.to(F64).cpu() - x0_hat_at(torch.zeros(N, dtype=torch.long))) ** 2).reshape(N, -1)
    terms[:, 0] = 0.5 * (err / s0 + math.log(2 * math.pi * s0)).sum(1)
    for j in range(strata):
        lo, hi = int(edges[j]), int(edges[j + 1])
        t = torch.randint(lo, hi, (N,), generator=generator)
        err = ((x.to(F64).cpu() - x0_hat_at(t)) ** 2).reshape(N, -1).sum(1)
        terms[:, 1 + j] = (hi - lo) * coef_x0[t] ** 2 * err / (2 * var[t])
        if progress is not None:
            progress((j + 1) / strata)
    terms[:, -1] = _gaussian_kl_prior(x.cpu(), float(ab[-1]))
    t_range = torch.tensor(np.stack([edges[:-1], edges[1:] - 1], 1), dtype=F64)
    return {"nll": terms.sum(1).numpy(), "terms": terms.numpy(), "t": t_range.numpy()}
