"""The exact probability-flow ODE of a Gaussian mixture on every path: Euler at many steps lands within the
data-vs-data floor, its ODE likelihood is the mixture's own log-density, and the exact 1-rectified flow is not
straight.

    .venv/bin/python benchmarks/oracle_paths.py [--n 20000] [--steps 1000] [--seeds 3] [--nll-n 300]
                                                [--mixtures gaussians8 anisotropic] [--paths flow edm ...]

About 2 minutes per row on 2 cores (16 minutes in all).

Mixtures: gaussians8 and benchmarks/anisotropic.json (three components, unequal weights, a thin rotated ellipse).
Paths: rectified flow (shift 1 and 3), EDM (sigma_data 1 on the standardized mixture) and ddpm's linear VP
schedule. Per mixture and path: the energy distance of --n oracle samples (ddim on the trailing grid: on the flow
path exactly the Euler step) to --n fresh draws, mean +- sd over --seeds sampling seeds, beside the data-vs-data
floor (the same n, --seeds pairs of fresh draws); the largest and mean |ODE NLL - true NLL| over --nll-n held-out
points (likelihood.ode_nll, tolerances 1e-6); the straightness S of the exact ODE's trajectories (200 steps).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from diffkit import machine
from diffkit.data.mixture import load_mixture
from diffkit.likelihood import ode_nll
from diffkit.metrics.points import projected_energy_distance
from diffkit.oracle import OracleDenoiser, log_prob
from diffkit.path import path_for
from diffkit.runs import sample_oracle
from diffkit.runs.score import mixture_normalizer
from diffkit.sampling import make_grid
from diffkit.straightness import straightness

HERE = Path(__file__).parent
PATHS = {"flow": ("flow", 1.0), "flow, shift 3": ("flow", 3.0), "edm": ("edm", 1.0), "VP (linear)": ("ddpm", 1.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--nll-n", type=int, default=300)
    ap.add_argument("--mixtures", nargs="+", default=["gaussians8", "anisotropic"])
    ap.add_argument("--paths", nargs="+", default=list(PATHS), help=f"of: {', '.join(PATHS)}")
    a = ap.parse_args()
    print(machine.describe())
    specs = {"gaussians8": "gaussians8", "anisotropic": str(HERE / "anisotropic.json")}
    print(f"\n| mixture | path | energy distance ({a.steps} Euler steps, n = {a.n}) | data-vs-data floor | "
          f"max / mean abs(NLL - true) ({a.nll_n} points) | S (200 steps) | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name, spec in ((k, v) for k, v in specs.items() if k in a.mixtures):
        mix = load_mixture(spec)
        rng = np.random.default_rng(1)
        floor = [projected_energy_distance(mix.sample(a.n, rng)[0], mix.sample(a.n, rng)[0]) for _ in range(a.seeds)]
        norm = mixture_normalizer(mix)
        std_mix = mix.affine(np.asarray(norm.mean), np.asarray(norm.std))
        held = mix.sample(a.nll_n, np.random.default_rng(3))[0]
        for label, (objective, shift) in ((k, v) for k, v in PATHS.items() if k in a.paths):
            t0 = time.perf_counter()
            ed = [projected_energy_distance(
                sample_oracle(spec, a.n, "ddim", a.steps, objective=objective, shift=shift, seed=seed),
                mix.sample(a.n, np.random.default_rng(100 + seed))[0]) for seed in range(a.seeds)]
            path = path_for(objective, shift=shift, sigma_data=1.0)
            oracle = OracleDenoiser(std_mix, path)
            x0 = torch.from_numpy((held - np.asarray(norm.mean)) / np.asarray(norm.std)).double()
            nll = np.asarray(ode_nll(oracle, x0, rtol=1e-6, atol=1e-6,
                                     generator=torch.Generator().manual_seed(0))["nll"])
            # -log p(x) = -log p_std((x - m) / s) + sum log s: the standardized mixture's NLL, back in data units
            diff = np.abs(nll + np.log(np.asarray(norm.std)).sum() - (-log_prob(mix, held)))
            x_T = torch.randn(2000, mix.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
            s = straightness(oracle, x_T, make_grid(path, 200, "trailing")).mean()
            print(f"| {name} | {label} | {statistics.mean(ed):.1e} +- {statistics.stdev(ed):.0e} | "
                  f"{statistics.mean(floor):.1e} +- {statistics.stdev(floor):.0e} | {diff.max():.4f} / "
                  f"{diff.mean():.5f} | {s:.3f} | {time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
