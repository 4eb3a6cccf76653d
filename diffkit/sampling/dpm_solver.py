"""DPM-Solver++ multistep samplers in data-prediction form (Lu et al. 2022, arXiv:2211.01095).

Notation: alpha, sigma of the VP process, lambda = log(alpha / sigma), h = lambda_next - lambda_now,
x0_i = the denoiser's x0_hat at step i. The last step (to sigma = 0, h = inf) is first order: it
returns x0_hat ("lower-order final step"); a 2nd/3rd-order step there has no defined h.
"""

from __future__ import annotations

import math

import torch

from ..devices import randn_like
from .common import Level, check_eta, check_s_tmax, grid_levels
from .record import step_end


def _expm1_neg(h: float) -> float:
    """e^{-h} - 1, exact for small h and -1 at h = inf."""
    return -1.0 if math.isinf(h) else math.expm1(-h)


def dpmpp_update(x, x0s: list, lvs: list[Level], nxt: Level, order: int):
    """One DPM-Solver++ multistep update from lvs[-1] to nxt, using x0_hat at the last `order` levels.

    order 1 = DDIM (Lu et al. 2022, eq. 9); order 2 = DPM-Solver++(2M), Algorithm 2; order 3 = the
    third-order multistep of the same paper's appendix (as in DPM-Solver's reference code). Every order is
    linear in x and the x0_hat's, so the scalar weights are formed first and the tensors combined once."""
    w_x, *w_x0 = dpmpp_weights(lvs, nxt, order)
    out = x * w_x
    for w, x0 in zip(w_x0, x0s[-len(w_x0):]):  # the newest x0_hat's: the step to sigma = 0 uses one
        out.add_(x0, alpha=w)
    return out


def dpmpp_weights(lvs: list[Level], nxt: Level, order: int) -> list[float]:
    """Weights (w_x, w_1, ..., w_k) of x' = w_x x + sum_j w_j x0_j over the newest k <= order x0_hat's, oldest
    first; lvs are their levels, the last one the current level."""
    now = lvs[-1]
    h = nxt.lam - now.lam
    phi1 = _expm1_neg(h)  # e^{-h} - 1
    w_x = nxt.sigma / now.sigma if now.sigma > 0 else 0.0
    if nxt.sigma == 0.0 or order == 1:  # to the data (sigma' = 0) only first order is defined
        return [w_x, -nxt.alpha * phi1]
    r0 = (now.lam - lvs[-2].lam) / h
    if order == 2:  # D = x0_1 + (x0_1 - x0_0) / (2 r0); x' = w_x x - alpha' phi1 D
        c = 1.0 / (2 * r0)
        return [w_x, nxt.alpha * phi1 * c, -nxt.alpha * phi1 * (1 + c)]
    # order 3: d1_0 = (x0_2 - x0_1) / r0, d1_1 = (x0_1 - x0_0) / r1, d1 = d1_0 + r0 / (r0 + r1) (d1_0 - d1_1),
    # d2 = 2 (d1_0 - d1_1) / (r0 + r1), x' = w_x x - alpha' (phi1 x0_2 - phi2 d1 + phi3 d2).
    # D1 ~ h x0'(lambda_s) and D2 ~ h^2 x0''(lambda_s): the phi3 term integrates e^{u-h} u^2 / 2 x0'' over [0, h],
    # which is -phi3 h^2 x0''. (D1_0 - D1_1) / (r0 + r1) alone is h^2 x0'' / 2, hence the factor 2; without it the
    # method is only second order (the multistep code in DPM-Solver and diffusers omits it).
    r1 = (lvs[-2].lam - lvs[-3].lam) / h
    phi2 = phi1 / h + 1.0  # (e^{-h} - 1) / h + 1
    phi3 = phi2 / h - 0.5  # (e^{-h} - 1 + h) / h^2 - 1/2
    q, k = r0 / (r0 + r1), 2.0 / (r0 + r1)
    a = nxt.alpha * (phi2 * (1 + q) - phi3 * k)  # weight of d1_0
    b = nxt.alpha * (phi3 * k - phi2 * q)  # weight of d1_1
    return [w_x, -b / r1, b / r1 - a / r0, a / r0 - nxt.alpha * phi1]


def final_order(order: int, i: int, n: int, lower_order_final: bool) -> int:
    """Lower-order final steps for few-step stability (Lu et al. 2022, sec. 4): with fewer than 15 steps the
    last steps use order <= steps left; the step to sigma = 0 is always first order."""
    if i == n - 1:
        return 1
    if lower_order_final and n < 15:
        return min(order, n - i)
    return order


@torch.no_grad()
def _multistep(denoiser, x, timesteps, order: int, callback, hook, cond, lower_order_final: bool):
    lv = grid_levels(denoiser.schedule, timesteps)
    x0s: list[torch.Tensor] = []  # x0_hat at the last few levels, newest last
    n = len(lv) - 1
    for i in range(n):
        eps, x0 = denoiser(x, lv[i].t, cond)
        x0s = (x0s + [x0])[-3:]
        seen = lv[max(0, i + 1 - len(x0s)):i + 1]
        k = min(len(x0s), final_order(order, i, n, lower_order_final))  # warm-up: not enough history yet
        x = dpmpp_update(x, x0s, seen, lv[i + 1], k)
        x, stop = step_end(hook, callback, i, lv[i].t, lv[i + 1].t, x, x0, eps)
        if stop:
            break
    return x


def sample_dpmpp_2m(denoiser, x, timesteps, *, generator=None, callback=None, hook=None, cond=None, lower_order_final: bool = True):
    """DPM-Solver++(2M): second-order multistep, one network call per step (Lu et al. 2022, Algorithm 2)."""
    return _multistep(denoiser, x, timesteps, 2, callback, hook, cond, lower_order_final)


def sample_dpmpp_3m(denoiser, x, timesteps, *, generator=None, callback=None, hook=None, cond=None, lower_order_final: bool = True):
    """DPM-Solver++(3M): third-order multistep, one network call per step."""
    return _multistep(denoiser, x, timesteps, 3, callback, hook, cond, lower_order_final)


@torch.no_grad()
def sample_dpmpp_2m_sde(denoiser, x, timesteps, *, generator=None, callback=None, hook=None, cond=None, eta: float = 1.0,
                        s_tmax: float | None = None):
    """SDE-DPM-Solver++(2M) (Lu et al. 2022, sec. 5 / eq. for the data-prediction SDE), midpoint form:
    x' = (sigma'/sigma) e^{-h} x + alpha' (1 - e^{-2h}) (x0 + D1 / 2) + sigma' sqrt(1 - e^{-2h}) z,
    with eta scaling the injected noise (h -> (1 + eta) h in the decay; eta = 0 gives 2M).
    s_tmax: inject noise only on steps that start at a level sigma_ve <= s_tmax, the others being 2M steps (the
    range of EDM's stochastic sampler, Karras et al. 2022, Algorithm 2, S_tmax); None or inf: on every step."""
    check_eta(eta)
    check_s_tmax(s_tmax)
    lv = grid_levels(denoiser.schedule, timesteps)
    prev_x0, prev_h = None, None
    for i in range(len(lv) - 1):
        now, nxt = lv[i], lv[i + 1]
        eps, x0 = denoiser(x, now.t, cond)
        h = nxt.lam - now.lam
        noisy = eta > 0 and (s_tmax is None or now.sigma_ve <= s_tmax)
        if nxt.sigma == 0.0:
            x = x0
        else:
            eta_h = eta * h if noisy else 0.0  # h = inf on the first step of a zero-terminal-SNR grid
            D = x0
            if prev_x0 is not None:
                r = prev_h / h
                D = x0 + (x0 - prev_x0) / (2 * r)
            x = (nxt.sigma / now.sigma) * math.exp(-eta_h) * x - nxt.alpha * math.expm1(-h - eta_h) * D
            if noisy:
                noise = randn_like(x, generator)
                x = x + nxt.sigma * math.sqrt(-math.expm1(-2 * eta_h)) * noise
        prev_x0, prev_h = x0, h
        x, stop = step_end(hook, callback, i, now.t, nxt.t, x, x0, eps)
        if stop:
            break
    return x
