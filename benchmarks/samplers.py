"""Every sampler at 5, 10, 20, 50, 100 network evaluations (and DDPM at 1000) on a trained 2-D model:
energy distance to fresh data and wall time, as a table and a quality-vs-NFE plot; plus the cost of
sampling 100,000 points with dpmpp-2m at 20 steps and the per-step overhead of the diffusers-style
scheduler against diffusers' own, for the same model.

    .venv/bin/python benchmarks/samplers.py [--schedule linear|cosine] [--run DIR] [--n 50000] [--plot FILE.png]
        [--n-headline 200000] [--headline-seeds 2] [--headline-refs 2] [--headline-only] [--no-speed]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from diffkit import machine
from diffkit.config import DataConfig, RunConfig, ScheduleConfig
from diffkit.data.points import make_dataset
from diffkit.metrics.points import projected_energy_distance
from diffkit.runs import load_run, sample_run, train_run
from diffkit.sampling import SAMPLER_TABLE, SAMPLERS

NFES = (5, 10, 20, 50, 100)


def steps_for(name: str, nfe: int) -> int:
    """Grid steps that spend `nfe` network evaluations (heun: 2K - 1; langevin: 2K with one corrector step)."""
    if name == "heun":
        return (nfe + 1) // 2
    if name == "langevin":
        return max(1, nfe // 2)
    return nfe


def quality_table(run, n: int, seed: int):
    """Energy distance (projected O(n log n) form, n samples against n fresh data points) and wall time of every
    sampler at every NFE, plus DDPM at 1000; and the data-vs-data floor at the same n. Returns (rows, floor)."""
    reference = [make_dataset("spiral", n, 10_000 + seed)]
    floor = energy(make_dataset("spiral", n, 20_000 + seed), reference)
    rows = []
    t0 = time.perf_counter()
    x = sample_run(run, n, "ddpm", 1000, seed=seed)
    rows.append({"sampler": "ddpm", "nfe": 1000, "steps": 1000, "seconds": time.perf_counter() - t0,
                 "energy": energy(x, reference)})
    for name in SAMPLERS:
        for nfe in NFES:
            k = steps_for(name, nfe)
            t0 = time.perf_counter()
            x = sample_run(run, n, name, k, seed=seed)
            rows.append({"sampler": name, "nfe": nfe, "steps": k, "seconds": time.perf_counter() - t0,
                         "energy": energy(x, reference)})
    return rows, floor


def energy(samples, references) -> float:
    """Mean projected energy distance of samples to each reference cloud."""
    return float(np.mean([projected_energy_distance(samples, r, n_projections=128) for r in references]))


HEADLINE_SEEDS, HEADLINE_REFS = 2, 2


def headline(run, n: int, seed: int, seeds: int = HEADLINE_SEEDS, refs: int = HEADLINE_REFS) -> dict:
    """DDPM-1000 against dpmpp-2m at 10 and 20 NFE (default noise range, and the schedule's full range capped
    at 160): energy distance with n points (the O(n log n) projected form), averaged over `seeds` sampling
    seeds x `refs` independent reference draws. Returns the mean and its standard error per entry (over the
    seeds, each seed averaged over the shared references: values that share a seed are not independent), and
    the data-vs-data value (true value 0) for scale. The spread between sampling seeds dominates: at n = 200000
    it is near 0.2e-4 for a model at 1e-4, against 0.04e-4 for data against data."""
    references = [make_dataset("spiral", n, 10_000 + seed + r) for r in range(refs)]

    def stats(per_seed):
        v = np.asarray(per_seed)
        return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v)))

    out = {"floor": stats([energy(make_dataset("spiral", n, 20_000 + seed + s), references) for s in range(seeds)])}
    full = {"sigma_min": 1e-3, "sigma_max": 160.0}  # clamped to the schedule's own range
    for label, name, k, opt in (("ddpm-1000", "ddpm", 1000, {}), ("dpmpp-2m-10", "dpmpp-2m", 10, {}),
                                ("dpmpp-2m-20", "dpmpp-2m", 20, {}), ("dpmpp-2m-10 full range", "dpmpp-2m", 10, full),
                                ("dpmpp-2m-20 full range", "dpmpp-2m", 20, full)):
        out[label] = stats([energy(sample_run(run, n, name, k, seed=seed + s, **opt), references) for s in range(seeds)])
    return out


def speed(run, n_points: int = 100_000, repeats: int = 3) -> dict:
    """dpmpp-2m at 20 steps on n_points; scheduler overhead per step vs diffusers for the same network.

    The overhead is each loop's time outside the model calls, timed inside the same loop (a model call on 100k
    points costs ~100 times a scheduler step, so subtracting a separately timed network would measure noise)."""
    from diffkit import schedulers

    out = {}
    best = min(_timed(lambda: sample_run(run, n_points, "dpmpp-2m", 20, seed=0)) for _ in range(repeats))
    out["dpmpp2m_100k_seconds"] = best
    denoiser, net = run.denoiser, run.network
    x0 = torch.randn(n_points, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # the Denoiser leaves gradients to its caller; the samplers run without them
        out["model_seconds_20_calls"] = min(_timed(lambda: [denoiser(x0, 500.0) for _ in range(20)]) for _ in range(repeats))
    out.update(gemm_floor(net, 20 * n_points, repeats))
    try:
        import diffusers
    except ImportError:
        diffusers = None
    sched_cfg = {"prediction_type": "v_prediction", "timestep_spacing": "trailing"}
    for label, mod in (("diffkit", schedulers), ("diffusers", diffusers)):
        if mod is None:
            continue

        def loop(mod=mod):
            in_model = 0.0
            t0 = time.perf_counter()
            s = mod.DPMSolverMultistepScheduler(**sched_cfg)
            s.set_timesteps(20)
            x = x0.clone()
            with torch.no_grad():
                for t in s.timesteps:
                    x_in = s.scale_model_input(x, t)
                    t1 = time.perf_counter()
                    # the sampling network (the MLP's folded path: one time for the batch, expanded)
                    output = denoiser.network(x_in, torch.tensor([float(t)]).expand(n_points))
                    in_model += time.perf_counter() - t1
                    x = s.step(output, t, x).prev_sample
            return time.perf_counter() - t0, in_model

        timings = [loop() for _ in range(repeats)]
        out[f"{label}_loop_seconds"] = min(total for total, _ in timings)
        out[f"{label}_overhead_ms_per_step"] = min(total - in_model for total, in_model in timings) / 20 * 1000
    return out


def gemm_floor(net, point_calls: int, repeats: int) -> dict:
    """A lower bound on the network's time: its multiply-adds per point (every nn.Linear on the sampling path;
    the time embedding runs once per call) times `point_calls`, at this machine's measured fp32 rate for a
    [25000, hidden] x [hidden, hidden] product."""
    macs = sum(m.in_features * m.out_features for name, m in net.named_modules()
               if isinstance(m, torch.nn.Linear) and not name.startswith(("embed", "block_embed")))
    hidden = net.cfg.hidden
    a, w = torch.randn(25_000, hidden), torch.randn(hidden, hidden)
    secs = min(_timed(lambda: [a @ w for _ in range(20)]) for _ in range(repeats)) / 20
    rate = 2 * a.shape[0] * hidden * hidden / secs
    return {"macs_per_point": macs, "gemm_gflops": rate / 1e9, "gemm_floor_seconds": 2 * macs * point_calls / rate}


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def plot(rows, floor, path, title):
    from diffkit.viz.plots import plt, save

    p = plt()
    fig, ax = p.subplots(figsize=(6.5, 4.2))
    for name in SAMPLERS:
        r = [x for x in rows if x["sampler"] == name and x["nfe"] in NFES]
        ax.plot([x["nfe"] for x in r], [max(x["energy"], 1e-5) for x in r], marker="o", label=name)
    ddpm = next(x for x in rows if x["nfe"] == 1000)
    ax.axhline(max(ddpm["energy"], 1e-5), color="k", ls="--", label="ddpm, 1000 NFE")
    ax.axhline(max(abs(floor), 1e-5), color="0.6", ls=":", label="data-vs-data floor (|.|)")
    ax.set(xscale="log", yscale="log", xlabel="network evaluations (NFE)", ylabel="energy distance", title=title)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    save(fig, path)


def report_speed(run):
    s = speed(run)
    print(f"dpmpp-2m, 20 steps, 100,000 points: {s['dpmpp2m_100k_seconds']:.3f} s "
          f"(20 denoiser calls alone: {s['model_seconds_20_calls']:.3f} s; its {s['macs_per_point']:,} multiply-adds per "
          f"point at this machine's fp32 matmul rate, {s['gemm_gflops']:.0f} GFLOP/s, take at least "
          f"{s['gemm_floor_seconds']:.3f} s)")
    if "diffusers_loop_seconds" in s:
        ratio = s["diffkit_overhead_ms_per_step"] / s["diffusers_overhead_ms_per_step"]
        print(f"scheduler overhead per step (loop time outside the model calls), 100k points: diffkit "
              f"{s['diffkit_overhead_ms_per_step']:.2f} ms, diffusers {s['diffusers_overhead_ms_per_step']:.2f} ms "
              f"(ratio {ratio:.2f}; loops {s['diffkit_loop_seconds']:.3f} s vs {s['diffusers_loop_seconds']:.3f} s)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schedule", default="linear")
    ap.add_argument("--run", help="use this trained spiral run instead of training one")
    ap.add_argument("--n", type=int, default=50_000, help="points per entry of the per-sampler table")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", default="sampler_quality.png")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--n-headline", type=int, default=200_000, help="points for the DDPM-1000 vs dpmpp-2m comparison")
    ap.add_argument("--headline-seeds", type=int, default=HEADLINE_SEEDS, help="sampling seeds per headline entry")
    ap.add_argument("--headline-refs", type=int, default=HEADLINE_REFS, help="reference draws per headline entry")
    ap.add_argument("--headline-only", action="store_true")
    ap.add_argument("--speed-only", action="store_true", help="only the 100k-point timing and the scheduler overhead")
    a = ap.parse_args()
    print(machine.describe())
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = a.run
        if run_dir is None:
            run_dir = f"{tmp}/spiral"
            cfg = RunConfig(data=DataConfig(spec="spiral"), schedule=ScheduleConfig(name=a.schedule))
            t0 = time.perf_counter()
            train_run(cfg, run_dir, progress=False)
            print(f"# trained spiral ({a.schedule}, v-prediction) in {time.perf_counter() - t0:.1f} s")
        run = load_run(run_dir)
        if a.speed_only:
            return report_speed(run)
        h = headline(run, a.n_headline, a.seed, a.headline_seeds, a.headline_refs)
        ref, ref_se = h["ddpm-1000"]
        resolved = ref > 2 * ref_se  # a ratio to a value within noise of 0 means nothing

        def note(k, m, e):
            if not k.startswith("dpm"):
                return ""
            if not resolved:
                return f" (ddpm {(m - ref) * 1e4:+.2f})"
            ratio = m / ref  # its s.e. by the delta method: independent relative errors add in quadrature
            return f" ({ratio:.2f}x +- {ratio * np.hypot(e / m, ref_se / ref):.2f})"

        print(f"# headline, n = {a.n_headline}, mean +- s.e. over {a.headline_seeds} seeds (each against {a.headline_refs} reference draws) "
              "(x 1e-4): "
              + ", ".join(f"{k} {m * 1e4:.2f} +- {e * 1e4:.2f}{note(k, m, e)}" for k, (m, e) in h.items())
              + ("" if resolved else "; ddpm-1000 is within 2 s.e. of 0, so no ratio"))
        if a.headline_only:
            return
        rows, floor = quality_table(run, a.n, a.seed)
        print(f"# {torch.get_num_threads()} torch threads, n = {a.n}; energy distance to fresh spiral points "
              f"(data-vs-data floor {floor:+.6f})")
        print(f"{'sampler':<13} {'spacing':<9} " + " ".join(f"{'NFE ' + str(k):>10}" for k in NFES) + "   seconds@20")
        ddpm = rows[0]
        for name in SAMPLERS:
            r = {x["nfe"]: x for x in rows[1:] if x["sampler"] == name}
            print(f"{name:<13} {SAMPLER_TABLE[name].spacing:<9} " + " ".join(f"{r[k]['energy']:>10.6f}" for k in NFES)
                  + f"   {r[20]['seconds']:.3f}")
        print(f"{'ddpm':<13} {'trailing':<9} NFE 1000: {ddpm['energy']:.6f} ({ddpm['seconds']:.1f} s)")
        plot(rows, floor, a.plot, f"spiral, {a.schedule} schedule")
        print(f"plot: {a.plot}")
        if not a.no_speed:
            report_speed(run)

if __name__ == "__main__":
    main()
