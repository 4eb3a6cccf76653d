"""Error decomposition: every sampler at 5..100 network evaluations, run on the exact denoiser of the data
(the oracle: pure discretisation error) and on a trained model (total error), side by side; then the model's
score error per t, and likelihoods (ODE NLL and negative ELBO) of the oracle and the model.

Data: gaussians8 and benchmarks/anisotropic.json (three components, unequal weights, a thin rotated
ellipse). The model is the default point run (MLP, linear schedule, 3000 steps); the oracle lives in the
run's normalized coordinates and schedule, so both run the same sampler on the same x_T.

Per sampler and NFE: projected energy distance to fresh data (n samples vs n points; the data-vs-data
floor at the same n is printed) and the samples' mean NLL under the true mixture in nats per point (the
data's own entropy is the floor). Score error: E ||eps_theta - eps_true||^2 = sigma_t^2 E ||s_theta - s_true||^2
at 60 t, on held-out points, drawn to score_error.png.

    .venv/bin/python benchmarks/oracle.py [--n 20000] [--plot docs/score_error.png] [--nll-n 2000]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from samplers import NFES, steps_for

from diffkit import machine
from diffkit.data.mixture import GaussianMixture, gaussians8
from diffkit.data.points import PointSource
from diffkit.likelihood import elbo, ode_nll
from diffkit.metrics.points import projected_energy_distance
from diffkit.oracle import OracleDenoiser, log_prob
from diffkit.runs import (
    default_config,
    likelihood_model,
    load_run,
    score_error,
    train_run,
)
from diffkit.sampling import SAMPLERS, sample

HERE = Path(__file__).parent
DATA = {"gaussians8": ("gaussians8", gaussians8), "anisotropic": (str(HERE / "anisotropic.json"),
                                                                 lambda: GaussianMixture.from_json(HERE / "anisotropic.json"))}


def train(spec: str, out: Path) -> float:
    t0 = time.perf_counter()
    train_run(default_config(spec), out, progress=False)
    return time.perf_counter() - t0


def sampler_rows(run, oracle, mix, n: int, seed: int):
    """(sampler, nfe, ED oracle, ED model, NLL oracle, NLL model) per sampler and NFE, plus the floors."""
    fresh = PointSource(run.config.data.spec)
    ref = fresh.fresh(n, seed + 1)
    floor_ed = projected_energy_distance(fresh.fresh(n, seed + 2), ref)
    entropy = float(-log_prob(mix, ref.astype(np.float64)).mean())
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    rows = []
    for name in SAMPLERS:
        for nfe in NFES:
            row = [name, nfe]
            eds, nlls = [], []
            for den in (oracle, run.denoiser):
                dtype = torch.float64 if den is oracle else torch.float32
                g = torch.Generator().manual_seed(seed + 3)
                z = sample(den, x_T.to(dtype), name, steps_for(name, nfe), generator=g).float().numpy()
                x = run.normalizer.invert(z)
                eds.append(projected_energy_distance(x, ref))
                nlls.append(float(-log_prob(mix, x.astype(np.float64)).mean()))
            rows.append(row + eds + nlls)
            print(f"| {name} | {nfe} | {eds[0]:.5f} | {eds[1]:.5f} | {nlls[0]:.3f} | {nlls[1]:.3f} |", flush=True)
    return rows, floor_ed, entropy


def likelihoods(run, oracle, mix, n: int, seed: int) -> dict:
    """Held-out NLL (data coordinates): the truth, the oracle's ODE and -ELBO, the model's ODE and -ELBO."""
    x = PointSource(run.config.data.spec).fresh(n, seed + 5)
    z = torch.from_numpy(run.normalizer.apply(x).astype(np.float64))
    jac = float(np.log(run.normalizer.std).sum())
    model = likelihood_model(run)
    out = {"true": -log_prob(mix, x.astype(np.float64))}
    # the same noise draws for both ELBOs (common random numbers: their difference is the model's, not the draws')
    out["oracle_ode"] = ode_nll(oracle, z)["nll"] + jac
    eo = elbo(oracle, z, generator=torch.Generator().manual_seed(seed))
    out["oracle_elbo"] = eo["nll"] + jac
    out["model_ode"] = ode_nll(model, z)["nll"] + jac
    em = elbo(model, z, generator=torch.Generator().manual_seed(seed))
    out["model_elbo"] = em["nll"] + jac
    stats = {k: (float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))) for k, v in out.items()}
    return stats, {"oracle": eo["terms"].mean(0)[1:-1], "model": em["terms"].mean(0)[1:-1]}  # L_1 .. L_{T-1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--nll-n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", default=str(HERE.parent / "docs" / "score_error.png"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(machine.describe())
    curves = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, (spec, make) in DATA.items():
            mix = make()
            secs = train(spec, Path(tmp) / label)
            run = load_run(Path(tmp) / label)
            oracle = OracleDenoiser.for_run(mix, run)
            print(f"\n## {label}: model trained in {secs:.1f} s ({run.config.train.steps} steps, "
                  f"{run.config.schedule.name} schedule)\n")
            print("| sampler | NFE | ED oracle | ED model | NLL oracle | NLL model |\n|---|---|---|---|---|---|")
            _rows, floor_ed, entropy = sampler_rows(run, oracle, mix, a.n, a.seed)
            print(f"\nfloors at n = {a.n}: ED data vs data {floor_ed:.5f}; NLL of the data itself {entropy:.3f} nats")
            L, terms = likelihoods(run, oracle, mix, a.nll_n, a.seed)
            print(f"\nheld-out NLL, nats per point ({a.nll_n} points, +- standard error):")
            for k, (m, se) in L.items():
                print(f"  {k:<12} {m:8.4f} +- {se:.4f}")
            print(f"  oracle ELBO gap (negative ELBO - true NLL): {L['oracle_elbo'][0] - L['true'][0]:.4f} nats")
            ts = np.unique(np.geomspace(1, run.denoiser.schedule.num_timesteps, 60).round() - 1)
            x = PointSource(spec).fresh(4000, a.seed + 9)
            z = torch.from_numpy(run.normalizer.apply(x).astype(np.float64))
            err = score_error(run.denoiser.replace(clip_x0=None), oracle, z, ts, generator=torch.Generator().manual_seed(1))
            curves[label] = (ts, err, terms)
            worst = ts[int(np.argmax(err))]
            print(f"\nscore error sigma^2 E|s_theta - s|^2: max {err.max():.4f} at t = {worst:.0f}, "
                  f"mean over t {err.mean():.4f}, at t = 0: {err[0]:.4f}, at t = {ts[-1]:.0f}: {err[-1]:.5f}")
    if a.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.0), dpi=110)
        for i, (label, (ts, err, terms)) in enumerate(curves.items()):
            ax.plot(ts + 1, err, label=label, color=f"C{i}")  # t + 1: t = 0 on a log axis
            t_all = np.arange(1, len(terms["model"]) + 1)
            bx.plot(t_all, terms["model"], color=f"C{i}", label=f"{label}: model", lw=0.8)
            bx.plot(t_all, terms["oracle"], color=f"C{i}", ls="--", label=f"{label}: exact denoiser", lw=0.8)
        ax.set_xscale("log"), ax.set_yscale("log")
        ax.set_xlabel("t + 1 (log scale)"), ax.set_ylabel("sigma_t^2 E |s_theta - s_true|^2")
        ax.set_title("score error of trained 2-D models")
        bx.set_xscale("log"), bx.set_yscale("log")
        bx.set_xlabel("t (log scale)"), bx.set_ylabel("E L_t (nats)")
        bx.set_title("where the ELBO is spent: L_t per step")
        for x in (ax, bx):
            x.legend(fontsize=8), x.grid(alpha=0.3, which="both")
        fig.tight_layout()
        fig.savefig(a.plot)
        print(f"\nwrote {a.plot}")


if __name__ == "__main__":
    main()
