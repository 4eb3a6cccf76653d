"""The lab's "Diffusion and flow" panel: the same noise sent along several 2-D runs' probability-flow ODEs (a ddpm
run's VP path, EDM's, rectified flow's, a reflowed flow's), each drawn in the linear path's coordinates
z = x / (alpha + sigma) (straightness.py), with its straightness S and network calls, and where on the common
log-SNR axis each run's objective spends its training times (Kingma & Gao 2023)."""

from __future__ import annotations

import numpy as np

from ..errors import DiffkitError
from ..runs import time_log_snr, trajectories_run
from .state import rounded

DRAWN = 48                               # trajectories drawn per run (S is averaged over all n)
EDGES = np.linspace(-15.0, 15.0, 61)     # log-SNR histogram bins; the outer two also hold what lies beyond
TIME_DRAWS = 20_000


def formulation(config) -> str:
    """What the page calls a run: "2-rectified flow" for a reflowed flow, else its objective's path."""
    if config.parent is not None and config.parent.kind == "reflow":
        return "2-rectified flow"
    return {"ddpm": "VP (ddpm)", "edm": "EDM", "flow": "rectified flow"}[config.objective.name]


def paths_panel(runs: list, steps: int, n: int, seed: int) -> dict:
    """runs: [(name, Run)], all 2-D. Per run: its formulation, S (mean and standard error over n trajectories),
    the network calls, tau per step, DRAWN trajectories [K + 1][DRAWN][2] and all n end points (normalized units),
    and the share of its training times per log-SNR bin."""
    out = []
    for name, run in runs:
        if tuple(run.config.fitted.shape) != (2,):
            raise DiffkitError(f"the diffusion and flow panel draws 2-D runs; {name!r} holds data of shape "
                               f"{list(run.config.fitted.shape)}")
        t = trajectories_run(run, n, "ddim", steps, seed=seed)
        s = t["straightness"]
        lam = np.clip(time_log_snr(run, TIME_DRAWS, seed=seed), EDGES[0], EDGES[-1])
        counts, _ = np.histogram(lam, bins=EDGES)
        out.append({"name": name, "formulation": formulation(run.config), "objective": run.config.objective.name,
                    "straightness": float(s.mean()), "straightness_se": float(s.std(ddof=1) / np.sqrt(n)),
                    "nfe": t["nfe"], "tau": rounded(t["tau"], 5), "paths": rounded(t["z"][:, :DRAWN], 3),
                    "ends": rounded(t["z"][-1], 3), "times": rounded(counts / TIME_DRAWS, 5)})
    return {"runs": out, "edges": EDGES.tolist(), "steps": steps, "n": n, "seed": seed}
