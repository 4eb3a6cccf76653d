"""Classifier-free guidance on shapes3, measured: adherence, diversity and distance per guidance scale.

    .venv/bin/python benchmarks/guidance.py [--run DIR] [--n 2000] [--sampler dpmpp-2m] [--steps 20]
                                            [--train-steps 6000] [--batch-size 1024] [--plot guidance.png] [--no-timing]

Trains a class-conditional shapes3 model (6000 steps of 1024 points, label dropout 0.1; or uses --run), sweeps w in {0, 1, 2, 3, 5, 8} with the same seed,
and prints per class: adherence (share a k-NN classifier of fresh real data labels as the class asked for),
precision, recall, coverage and energy distance against the class's real points. Also: the class mix of
unconditional samples against the data's, and the training time of the conditional model against an
unconditional one for the same steps.
Targets (issue 4): adherence >= 98% for every class at w = 3 (dpmpp-2m, 20 steps); class mix within
3 percentage points at w = 0; conditional training <= 1.1x unconditional.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from diffkit import machine
from diffkit.config import DataConfig, RunConfig
from diffkit.data.points import make_labeled
from diffkit.metrics.classes import ClassJudge
from diffkit.runs import load_run, make_trainer, sample_run, train_run

SCALES = (0, 1, 2, 3, 5, 8)
DATA = "shapes3"


def sweep(run, judge: ClassJudge, n: int, sampler: str, steps: int, seed: int, scales=SCALES):
    """Rows of per-class scores for each w, and the samples (for the picture)."""
    rows, panels = [], {}
    for w in scales:
        for c in range(judge.num_classes):
            x = sample_run(run, n, sampler, steps, seed=seed, cond=c, guidance=w)
            panels[(c, w)] = x
            rows.append({"w": w, "class": c, **judge.score_class(x, c)})
    return rows, panels


def class_mix(run, judge: ClassJudge, data_y: np.ndarray, n: int, sampler: str, steps: int, seed: int) -> dict:
    """Class shares of unconditional samples (w = 0) against the data's label shares."""
    got = judge.class_mix(sample_run(run, n, sampler, steps, seed=seed))
    want = np.bincount(data_y, minlength=judge.num_classes) / len(data_y)
    return {"samples": got, "data": want, "max_pp": float(np.abs(got - want).max() * 100)}


def config(cond: bool, steps: int, batch_size: int) -> RunConfig:
    cfg = RunConfig(data=DataConfig(spec=DATA, cond=cond))
    cfg.train.steps, cfg.train.batch_size = steps, batch_size
    return cfg


def training_ratio(root: str, batch_size: int, blocks: int = 12, steps_per_block: int = 100) -> dict:
    """Median wall time per optimizer step of conditional and unconditional training on the same data
    and batch: `blocks` blocks of steps, alternating which goes first, so that both see the same machine
    state (whole runs on a shared 2-core machine vary by +-15% from one to the next)."""
    trainers = {kind: make_trainer(config(kind == "cond", 1, batch_size), f"{root}/{kind}", progress=False)
                for kind in ("uncond", "cond")}
    times = {"cond": [], "uncond": []}
    for b in range(blocks):
        for kind in (("uncond", "cond") if b % 2 == 0 else ("cond", "uncond")):
            t0 = time.perf_counter()
            for _ in range(steps_per_block):
                trainers[kind].train_step()
            times[kind].append((time.perf_counter() - t0) / steps_per_block)
    ms = {k: 1000 * float(np.median(v)) for k, v in times.items()}
    return {**ms, "ratio": ms["cond"] / ms["uncond"]}


def print_table(rows, names):
    print(f"{'w':>4} {'class':<10} {'adherence':>9} {'precision':>9} {'recall':>7} {'coverage':>8} {'energy':>8}")
    for r in rows:
        print(f"{r['w']:>4g} {names[r['class']]:<10} {r['adherence']:>9.3f} {r['precision']:>9.3f} "
              f"{r['recall']:>7.3f} {r['coverage']:>8.3f} {r['energy']:>8.4f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a conditional shapes3 run to use instead of training one")
    ap.add_argument("--n", type=int, default=2000, help="samples per class and scale")
    ap.add_argument("--sampler", default="dpmpp-2m")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-steps", type=int, default=6000, help="optimizer steps of the trained model")
    ap.add_argument("--batch-size", type=int, default=1024, help="training batch of the trained model")
    ap.add_argument("--plot", default="guidance.png")
    ap.add_argument("--no-timing", action="store_true", help="skip the conditional-vs-unconditional training time")
    a = ap.parse_args()
    print(machine.describe())
    with tempfile.TemporaryDirectory() as tmp:
        if not a.no_timing:
            t = training_ratio(tmp, a.batch_size)
            print(f"# training cost per step, shapes3, batch {a.batch_size}, median of 12 interleaved blocks of 100 "
                  f"steps: conditional {t['cond']:.2f} ms, unconditional {t['uncond']:.2f} ms, ratio {t['ratio']:.3f} "
                  "(target <= 1.1)")
        run_dir = a.run
        if run_dir is None:
            run_dir = f"{tmp}/cond"
            out = train_run(config(True, a.train_steps, a.batch_size), run_dir, progress=False)
            print(f"# trained the conditional model: {a.train_steps} steps of {a.batch_size} points in "
                  f"{out['seconds']:.1f} s")
        run = load_run(run_dir)
        names = run.config.fitted.class_names or [str(c) for c in range(run.config.network.num_classes)]
        judge = ClassJudge(*make_labeled(DATA, 20_000, 777))
        held_out = make_labeled(DATA, 20_000, 778)
        print(f"# judge: 15-NN on 20000 fresh labeled points; accuracy on 20000 other real points "
              f"{judge.accuracy(*held_out):.3f}")
        mix = class_mix(run, judge, held_out[1], 3 * a.n, a.sampler, a.steps, a.seed)
        print("# class mix of unconditional samples (w = 0) vs data: "
              + ", ".join(f"{names[c]} {s:.3f} / {d:.3f}" for c, (s, d) in enumerate(zip(mix["samples"], mix["data"])))
              + f"; largest gap {mix['max_pp']:.1f} pp (target <= 3)")
        rows, panels = sweep(run, judge, a.n, a.sampler, a.steps, a.seed)
        print(f"# {a.sampler}, {a.steps} steps, {a.n} samples per class and scale, seed {a.seed}")
        print_table(rows, names)
        worst = min(r["adherence"] for r in rows if r["w"] == 3)
        print(f"# lowest adherence at w = 3: {worst:.3f} (target >= 0.98)")
        if a.plot:
            from diffkit.viz.plots import guidance_grid

            guidance_grid(panels, held_out[0][:6000], a.plot, names,
                          f"{DATA}: {a.sampler}, {a.steps} steps, same seed per column")
            print(f"# wrote {a.plot}")


if __name__ == "__main__":
    main()
