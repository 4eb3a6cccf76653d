"""`diffkit demo`: train on the spiral, sample with DDPM and DDIM, print a table, draw the story."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..data.points import make_dataset
from ..runs import eval_samples, load_run, sample_run, train_run
from ..runs.presets import points_config
from ..schedule import NoiseSchedule
from ..store.trainlog import LOG, read_log

FORWARD_T = (0, 50, 100, 200, 350, 500, 999)
N_SAMPLES = 4000


def forward_frames(x0: np.ndarray, schedule: NoiseSchedule, ts=FORWARD_T, seed: int = 0):
    """x_t = q_sample(x0, t) for a strip of t values (one eps draw shared by all t)."""
    x0_t = torch.from_numpy(x0).double()
    eps = torch.randn(x0_t.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    out = []
    for t in ts:
        x_t = schedule.q_sample(x0_t, torch.full((len(x0_t),), t), eps)
        out.append((f"t = {t}", x_t.numpy()))
    return out


def table(rows: list[dict]) -> str:
    head = f"{'sampler':<8} {'steps':>5} {'seconds':>8} {'energy':>9} {'MMD':>9} {'SWD':>7} {'floor(E)':>9} {'floor(MMD)':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['sampler']:<8} {r['steps']:>5} {r['seconds']:>8.2f} {r['energy']:>9.5f} {r['mmd']:>9.5f} "
                     f"{r['swd']:>7.4f} {r['energy_floor']:>9.5f} {r['mmd_floor']:>10.5f}")
    return "\n".join(lines)


def train_demo_run(config, run_dir, steps, what: str, progress: bool, echo) -> dict:
    """Train the demo's run (steps overrides the default), saying what and how long."""
    if steps is not None:
        config.train.steps = steps
    echo(f"training {what} on '{config.data.spec}' for {config.train.steps} steps -> {run_dir}")
    summary = train_run(config, run_dir, overwrite=True, progress=progress)
    echo(f"trained in {summary['seconds']:.1f} s")
    return summary


def run_demo(out="demo_out", data: str = "spiral", steps: int | None = None, n: int = N_SAMPLES,
             progress: bool = True, echo=print) -> dict:
    from ..viz import animate, plots

    out = Path(out)
    run_dir = out / "run"
    config = points_config(data)
    summary = train_demo_run(config, run_dir, steps, f"a {config.network.depth}-block MLP", progress, echo)

    run = load_run(run_dir)
    T = run.config.schedule.num_timesteps
    keep = {T - 1, 700, 400, 200, 100, 50, 0}
    reverse, gif_frames = [], []

    def grab(step):
        """Record the DDPM reverse process: a strip of t values and GIF frames."""
        t = int(step.t)
        if t in keep:
            reverse.append((f"t = {t}", run.normalizer.invert(step.x.numpy())))
        if step.i % 25 == 0 or t == 0:
            gif_frames.append((f"reverse process, t = {t}", run.normalizer.invert(step.x.numpy())))

    rows, results = [], {}
    for sampler, k in (("ddpm", T), ("ddim", 50)):
        t0 = time.perf_counter()
        x = sample_run(run, n, sampler, k, seed=0, callback=grab if sampler == "ddpm" else None)
        secs = time.perf_counter() - t0
        rows.append({"sampler": sampler, "steps": k, "seconds": secs, **eval_samples(x, data)})
        results[sampler] = x
    echo(table(rows))

    data_pts = make_dataset(data, n, 123)
    pics = out / "plots"
    x0 = run.normalizer.apply(data_pts)
    forward = [(c, run.normalizer.invert(x)) for c, x in forward_frames(x0, run.denoiser.schedule)]
    written = [
        plots.strip(forward, pics / "forward.png", "forward process q(x_t | x_0): the spiral dissolves",
                    lims=plots.limits(forward[-1][1])),
        plots.strip(reverse, pics / "reverse.png", "reverse process (DDPM): a new spiral emerges",
                    lims=plots.limits(forward[-1][1])),
        plots.schedules({"linear": NoiseSchedule.from_name("linear", T), "cosine": NoiseSchedule.from_name("cosine", T)},
                        pics / "schedules.png"),
        plots.loss_curve(read_log(run_dir / LOG), pics / "loss.png"),
        plots.samples_over_data(results["ddpm"], data_pts, pics / "samples_ddpm.png", "DDPM 1000 steps"),
        plots.samples_over_data(results["ddim"], data_pts, pics / "samples_ddim.png", "DDIM 50 steps"),
        animate.gif(gif_frames, pics / "reverse.gif", lims=plots.limits(data_pts, pad=0.6)),
    ]
    np.save(out / "samples_ddpm.npy", results["ddpm"])
    np.save(out / "samples_ddim.npy", results["ddim"])
    echo("pictures: " + ", ".join(str(p) for p in written))
    return {"rows": rows, "train_seconds": summary["seconds"], "pictures": [str(p) for p in written]}
