"""The lab's score panel: a 2-D run's score field at one step, the exact field beside it, the error per t."""

from __future__ import annotations

import numpy as np
import torch

from ..data.points import PointSource
from ..errors import DiffkitError
from ..runs import run_oracle, score_error

CURVE_POINTS = 2000  # held-out points behind the score-error curve
CURVE_TIMES = 40


def _round(a, digits: int = 4) -> list:
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()


def score_panel(run, name: str, t: int, n: int, seed: int, curves: dict) -> dict:
    """Noisy points x_t of held-out data (normalized units), the model's arrows sigma_t^2 s_theta(x_t) (each
    ends at sqrt(alpha_bar_t) x0_hat: where the noise came from), the oracle's exact arrows when the run's
    data is a Gaussian mixture, and E|eps_theta - eps_true|^2 = sigma_t^2 E|s_theta - s_true|^2 against t
    (cached per loaded run)."""
    if run.config.fitted.kind != "points":
        raise DiffkitError(f"the score panel draws 2-D runs; {name!r} holds images")
    T = run.denoiser.schedule.num_timesteps
    if t >= T:
        raise DiffkitError(f"t must be below the run's {T} timesteps, got {t}")
    model = run.denoiser.replace(clip_x0=None)  # cond None: the unconditional score of a conditional run
    oracle = run_oracle(run)
    x = PointSource(run.config.data.spec).fresh(n, seed)
    x0 = torch.from_numpy(run.normalizer.apply(x).astype(np.float64))
    ab = run.denoiser.schedule.alpha_bar_at([float(t)])[0]
    sigma = float((1 - ab).sqrt())
    g = torch.Generator().manual_seed(seed)
    x_t = ab.sqrt() * x0 + sigma * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    with torch.no_grad():
        eps_model = model(x_t.float(), float(t))[0].double()
    out = {"t": t, "T": T, "alpha_bar": float(ab), "sigma": sigma, "points": _round(x_t),
           "model": _round(-sigma * eps_model), "oracle": None, "error_at_t": None, "curve": None}
    if oracle is None:
        return out
    eps_true = oracle.network.exact(x_t, torch.tensor([float(t)]))["eps"]
    out["oracle"] = _round(-sigma * eps_true)
    out["error_at_t"] = float(((eps_model - eps_true) ** 2).sum(1).mean())
    key = (name, id(run))
    if key not in curves:
        ts = np.unique(np.geomspace(1, T, CURVE_TIMES).round() - 1)
        held = torch.from_numpy(run.normalizer.apply(PointSource(run.config.data.spec).fresh(CURVE_POINTS, seed + 1))
                                .astype(np.float64))
        err = score_error(model, oracle, held, ts, generator=torch.Generator().manual_seed(seed + 2))
        curves[key] = {"t": ts.astype(int).tolist(), "error": _round(err, 8)}
    out["curve"] = curves[key]
    return out
