"""The lab's "Diffusion and flow" panel: the same noise sent along several 2-D runs' probability-flow ODEs (a ddpm
run's VP path, EDM's, rectified flow's, a reflowed flow's), each drawn in the linear path's coordinates
z = x / (alpha + sigma) (straightness.py), with its straightness S and network calls, and where on the common
log-SNR axis each run's objective spends its training times (Kingma & Gao 2023)."""

from __future__ import annotations

import numpy as np

from ..data.points import PointSource
from ..errors import DiffkitError
from ..metrics.points import energy_distance
from ..runs import time_log_snr, trajectories_run
from .state import rounded

DRAWN = 48                               # trajectories drawn per run (S is averaged over all n)
EDGES = np.linspace(-15.0, 15.0, 61)     # log-SNR histogram bins; the outer two also hold what lies beyond
TIME_DRAWS = 20_000
FINE_STEPS = 100                         # the model's own S: its ODE resolved finely, whatever the slider says


def formulation(config) -> str:
    """What the page calls a run: "2-rectified flow" for a reflowed flow, else its objective's path."""
    if config.reflowed:
        return "2-rectified flow"
    return {"ddpm": "VP (ddpm)", "edm": "EDM", "flow": "rectified flow"}[config.objective.name]


def paths_panel(runs: list, steps: int, n: int, seed: int, cache: dict) -> dict:
    """runs: [(name, Run)], all 2-D. Per run: its formulation; S of its ODE (FINE_STEPS Euler steps; mean and
    standard error over n trajectories) and of the path the `steps` Euler steps took; the network calls; the
    energy distance of the n end points to n fresh data points (data units); tau per step, DRAWN trajectories
    [K + 1][DRAWN][2] and all n end points (normalized units); the share of its training times per log-SNR bin.
    cache keeps each run's fine S and time histogram."""
    out = []
    for name, run in runs:
        if tuple(run.config.fitted.shape) != (2,):
            raise DiffkitError(f"the diffusion and flow panel draws 2-D runs; {name!r} holds data of shape "
                               f"{list(run.config.fitted.shape)}")
        key = ("paths", name, id(run), n, seed)
        if key not in cache:
            fine = trajectories_run(run, n, "ddim", FINE_STEPS, seed=seed)["straightness"]
            lam = np.clip(time_log_snr(run, TIME_DRAWS, seed=seed), EDGES[0], EDGES[-1])
            cache[key] = {"straightness": float(fine.mean()), "straightness_se": float(fine.std(ddof=1) / np.sqrt(n)),
                          "times": rounded(np.histogram(lam, bins=EDGES)[0] / TIME_DRAWS, 5)}
        t = trajectories_run(run, n, "ddim", steps, seed=seed)
        ends = run.normalizer.invert(t["z"][-1])
        ed = energy_distance(ends, PointSource(run.config.data.spec).fresh(n, seed + 1))
        out.append({"name": name, "formulation": formulation(run.config), "objective": run.config.objective.name,
                    **cache[key], "path_straightness": float(t["straightness"].mean()), "nfe": t["nfe"],
                    "energy": float(ed), "tau": rounded(t["tau"], 5), "paths": rounded(t["z"][:, :DRAWN], 3),
                    "ends": rounded(t["z"][-1], 3)})
    return {"runs": out, "edges": EDGES.tolist(), "steps": steps, "n": n, "seed": seed}
