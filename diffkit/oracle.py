"""The exact denoiser of a Gaussian mixture: what a perfectly trained network would predict.

If x0 ~ sum_k w_k N(mu_k, S_k) and x_t = a x0 + s eps (a = sqrt(alpha_bar_t), s = sqrt(1 - alpha_bar_t)),
the noised marginal is again a mixture (a Gaussian convolved with a Gaussian):
    q(x_t) = sum_k w_k N(x_t; a mu_k, C_k),   C_k = a^2 S_k + s^2 I.
With responsibilities r_k(x_t) = w_k N(x_t; a mu_k, C_k) / q(x_t) (a softmax of log-densities):
    score     = grad log q(x_t) = -sum_k r_k C_k^-1 (x_t - a mu_k)
    eps_hat   = E[eps | x_t]  = -s score                              (Vincent 2011; Song et al. 2021)
    x0_hat    = E[x0 | x_t]   = sum_k r_k (mu_k + a S_k C_k^-1 (x_t - a mu_k))   (Gaussian conditioning)
Both are computed directly (no division by a or s), in float64 with log-sum-exp, so they stay exact at
t = -1 (a = 1, the data itself) and at t = T-1 (a ~ 0). The oracle is a Denoiser predicting v = a eps - s x0,
from which the Denoiser recovers eps and x0 without dividing either: every sampler, guidance (per-class
mixtures: a component's class is `labels[k]`) and clipping work on it unchanged.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from .cond import ClassConditioning
from .data.mixture import GaussianMixture
from .denoiser import Denoiser
from .errors import DataError
from .schedule import NoiseSchedule

F64 = torch.float64
LOG_2PI = math.log(2 * math.pi)


def log_prob(mix: GaussianMixture, x) -> np.ndarray:
    """The mixture's log density at x [N, D], float64 [N]."""
    x = torch.as_tensor(np.asarray(x), dtype=F64)
    return posterior(mix, x, torch.tensor(1.0, dtype=F64))["log_prob"].numpy()


def posterior(mix: GaussianMixture, x_t: torch.Tensor, alpha_bar: torch.Tensor) -> dict:
    """Exact quantities of q at one noise level: x_t float64 [B, D], alpha_bar a float64 scalar.

    Returns float64 {"log_prob" [B], "score" [B, D], "eps" [B, D], "x0" [B, D]}."""
    a2 = alpha_bar.clamp(0.0, 1.0)
    a, s2 = a2.sqrt(), 1.0 - a2
    mu = torch.from_numpy(mix.means)                       # [K, D]
    S = torch.from_numpy(mix.covariances)                  # [K, D, D]
    eye = torch.eye(mix.dim, dtype=F64)
    C = a2 * S + s2 * eye                                  # [K, D, D]
    L = torch.linalg.cholesky(C)
    r = x_t[:, None, :] - a * mu                           # [B, K, D]
    z = torch.linalg.solve_triangular(L, r.transpose(0, 1).transpose(1, 2), upper=False)  # [K, D, B]
    maha = (z**2).sum(1).T                                 # [B, K]
    logdet = 2 * torch.log(torch.diagonal(L, dim1=1, dim2=2)).sum(-1)  # [K]
    log_comp = torch.log(torch.from_numpy(mix.weights)) - 0.5 * (maha + logdet + mix.dim * LOG_2PI)
    log_prob = torch.logsumexp(log_comp, dim=1)            # [B]
    resp = torch.softmax(log_comp, dim=1)                  # [B, K]
    Cinv_r = torch.linalg.solve_triangular(L.transpose(1, 2), z, upper=True)  # [K, D, B] = C_k^-1 (x_t - a mu_k)
    score = -torch.einsum("bk,kdb->bd", resp, Cinv_r)
    x0 = torch.einsum("bk,kd->bd", resp, mu) + a * torch.einsum("bk,kde,keb->bd", resp, S, Cinv_r)
    return {"log_prob": log_prob, "score": score, "eps": -s2.sqrt() * score, "x0": x0}


class MixtureNetwork:
    """network(x_t, t, cond=None) -> v (the oracle's 'network'); cond: class ids, id C = the whole mixture."""

    def __init__(self, mixture: GaussianMixture, schedule: NoiseSchedule):
        self.mixture = mixture
        self.schedule = schedule
        self.classes = [mixture.for_class(c) for c in range(mixture.num_classes)]

    def mixture_of(self, c: int) -> GaussianMixture:
        return self.classes[c] if 0 <= c < len(self.classes) else self.mixture

    def exact(self, x_t: torch.Tensor, t: torch.Tensor, cond=None) -> dict:
        """posterior() per row: x_t [B, ...] (flattened to D), t [B], cond class ids [B] or None; float64."""
        x = x_t.reshape(len(x_t), -1).to("cpu", F64)  # differentiable: likelihoods take its divergence
        if x.shape[1] != self.mixture.dim:
            raise DataError(f"the oracle's mixture has {self.mixture.dim} dimensions; got points of {x.shape[1]}")
        t = torch.as_tensor(t).detach().reshape(-1).to("cpu", F64).expand(len(x))
        groups = torch.zeros(len(x), dtype=torch.long) if cond is None else torch.as_tensor(cond).cpu().long()
        keys = torch.stack([t, groups.to(F64)], 1)
        out = None
        for key in torch.unique(keys, dim=0):  # one noise level and class at a time (usually one in all)
            rows = (keys == key).all(1)
            tt, c = float(key[0]), int(key[1]) if cond is not None else -1
            part = posterior(self.mixture_of(c), x[rows], self.schedule.alpha_bar_at([tt])[0])
            if out is None:
                out = {k: torch.empty((len(x), *v.shape[1:]), dtype=F64) for k, v in part.items()}
            for k, v in part.items():
                out[k][rows] = v
        return out

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        ex = self.exact(x_t, t, cond)
        abar = self.schedule.alpha_bar_at(torch.as_tensor(t).detach().cpu().reshape(-1).expand(len(x_t)))[:, None]
        v = abar.sqrt() * ex["eps"] - (1 - abar).sqrt() * ex["x0"]  # Salimans & Ho 2022, sec. 4
        return v.reshape(x_t.shape).to(x_t.device, x_t.dtype)


class OracleDenoiser(Denoiser):
    """The exact Denoiser of a Gaussian mixture under a schedule (see the module docstring).

    Beyond the Denoiser contract: `score(x_t, t, cond)` and `log_prob(x_t, t, cond)` are exact (float64
    inside, log q(x_t) returned as float64 [B]). A mixture with labels is conditional: class c's oracle is the
    mixture of its components, the null class the whole mixture; guidance mixes them as for any model."""

    def __init__(self, mixture: GaussianMixture, schedule: NoiseSchedule, **options):
        network = MixtureNetwork(mixture, schedule)
        conditioning = ClassConditioning(mixture.num_classes) if mixture.num_classes else None
        super().__init__(network, schedule, "v", conditioning=conditioning, **options)
        self.mixture, self.on_path = mixture, False  # exact in the VP view of any path (path.py)

    def replace(self, **changes) -> OracleDenoiser:
        new = copy.copy(self)
        Denoiser.__init__(new, **{**self._arguments(), **changes})
        new.on_path = False
        return new

    def score(self, x_t: torch.Tensor, t, cond=None) -> torch.Tensor:
        if self.guidance_scale != 1.0 and cond is not None:
            return super().score(x_t, t, cond)  # a guided score is a mix of two: the generic path mixes them
        ex = self.network.exact(x_t, torch.as_tensor(t, dtype=F64).reshape(-1), cond)
        return ex["score"].reshape(x_t.shape).to(x_t.device, x_t.dtype)

    def log_prob(self, x_t: torch.Tensor, t, cond=None) -> torch.Tensor:
        """Exact log q(x_t) (float64 [B]); t = -1 is the mixture's own density."""
        return self.network.exact(x_t, torch.as_tensor(t, dtype=F64).reshape(-1), cond)["log_prob"]

    @classmethod
    def for_run(cls, mixture: GaussianMixture, run, **options) -> OracleDenoiser:
        """The oracle in a trained run's normalized coordinates and schedule (to compare the two like for like)."""
        norm = run.normalizer
        return cls(mixture.affine(np.asarray(norm.mean), np.asarray(norm.std)), run.denoiser.schedule, **options)
