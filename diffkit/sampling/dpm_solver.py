"""DPM-Solver++ multistep samplers in data-prediction form (Lu et al. 2022, arXiv:2211.01095).

Notation: alpha, sigma of the VP process, lambda = log(alpha / sigma), h = lambda_next - lambda_now,
x0_i = the denoiser's x0_hat at step i. The last step (to sigma = 0, h = inf) is first order: it
returns x0_hat ("lower-order final step"); a 2nd/3rd-order step there has no defined h.
"""

from __future__ import annotations

import math

import torch

from .common import levels
from .grids import with_final


def _expm1_neg(h: float) -> float:
    """e^{-h} - 1, exact for small h and -1 at h = inf."""
    return -1.0 if math.isinf(h) else math.expm1(-h)


@torch.no_grad()
def _multistep(denoiser, x, timesteps, order: int, callback, cond, lower_order_final: bool):
    pairs = with_final(timesteps)
    ts = [t for t, _ in pairs] + [pairs[-1][1]]
    lv = levels(denoiser.schedule, ts)
    x0s: list[torch.Tensor] = []  # x0_hat at the last few steps, newest last
    hs: list[float] = []          # step sizes in lambda of the last few steps, newest last
    n = len(pairs)
    for i in range(n):
        now, nxt = lv[i], lv[i + 1]
        _, x0 = denoiser(x, now.t, cond)
        x0s = (x0s + [x0])[-3:]
        h = nxt.lam - now.lam
        if nxt.sigma == 0.0:  # final step to the data: first order, x = x0_hat
            x = x0
        else:
            # lower-order warm-up (not enough history) and lower-order final steps (few-step stability)
            k = min(order, len(x0s), (n - i) if lower_order_final else order)
            if k == 1:  # DPM-Solver++ 1 = DDIM (eq. 9 with D = x0)
                D = x0
                x = (nxt.sigma / now.sigma) * x - nxt.alpha * _expm1_neg(h) * D
            elif k == 2:  # DPM-Solver++(2M), Algorithm 2
                r = hs[-1] / h
                D = (1 + 1 / (2 * r)) * x0s[-1] - (1 / (2 * r)) * x0s[-2]
                x = (nxt.sigma / now.sigma) * x - nxt.alpha * _expm1_neg(h) * D
            else:  # third-order multistep (Lu et al. 2022, appendix; same form as DPM-Solver's 3M)
                r0, r1 = hs[-1] / h, hs[-2] / h
                d1_0 = (x0s[-1] - x0s[-2]) / r0
                d1_1 = (x0s[-2] - x0s[-3]) / r1
                d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi1 = _expm1_neg(h)                 # e^{-h} - 1
                phi2 = phi1 / h + 1.0                # (e^{-h} - 1) / h + 1
                phi3 = phi2 / h - 0.5                # ((e^{-h} - 1 + h) / h^2) - 1/2
                x = (nxt.sigma / now.sigma) * x - nxt.alpha * phi1 * x0s[-1] + nxt.alpha * phi2 * d1 \
                    - nxt.alpha * phi3 * d2
        hs = (hs + [h])[-2:]
        if callback is not None:
            callback(i, now.t, x, x0)
    return x


def sample_dpmpp_2m(denoiser, x, timesteps, *, generator=None, callback=None, cond=None, lower_order_final: bool = True):
    """DPM-Solver++(2M): second-order multistep, one network call per step (Lu et al. 2022, Algorithm 2)."""
    return _multistep(denoiser, x, timesteps, 2, callback, cond, lower_order_final)


def sample_dpmpp_3m(denoiser, x, timesteps, *, generator=None, callback=None, cond=None, lower_order_final: bool = True):
    """DPM-Solver++(3M): third-order multistep, one network call per step."""
    return _multistep(denoiser, x, timesteps, 3, callback, cond, lower_order_final)


@torch.no_grad()
def sample_dpmpp_2m_sde(denoiser, x, timesteps, *, generator=None, callback=None, cond=None, eta: float = 1.0):
    """SDE-DPM-Solver++(2M) (Lu et al. 2022, sec. 5 / eq. for the data-prediction SDE), midpoint form:
    x' = (sigma'/sigma) e^{-h} x + alpha' (1 - e^{-2h}) (x0 + D1 / 2) + sigma' sqrt(1 - e^{-2h}) z,
    with eta scaling the injected noise (h -> (1 + eta) h in the decay; eta = 0 gives 2M)."""
    pairs = with_final(timesteps)
    lv = levels(denoiser.schedule, [t for t, _ in pairs] + [pairs[-1][1]])
    prev_x0, prev_h = None, None
    for i in range(len(pairs)):
        now, nxt = lv[i], lv[i + 1]
        _, x0 = denoiser(x, now.t, cond)
        h = nxt.lam - now.lam
        if nxt.sigma == 0.0:
            x = x0
        else:
            eta_h = eta * h
            D = x0
            if prev_x0 is not None:
                r = prev_h / h
                D = x0 + (x0 - prev_x0) / (2 * r)
            x = (nxt.sigma / now.sigma) * math.exp(-eta_h) * x - nxt.alpha * math.expm1(-h - eta_h) * D
            if eta > 0:
                noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
                x = x + nxt.sigma * math.sqrt(-math.expm1(-2 * eta_h)) * noise
        prev_x0, prev_h = x0, h
        if callback is not None:
            callback(i, now.t, x, x0)
    return x
