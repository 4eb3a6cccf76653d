"""Where to guide: one trained class-conditional image run sampled with guidance w in several noise-level
intervals, scored as the README's table is (1,000 samples, classes cycled, dpmpp-2m 20 or, with --sampler run,
the run's own sampler; the judge's FD over its floor, class accuracy, precision and recall, and colour purity for
shapes), over several sampling seeds. Also prints the noise levels sigma_ve = sigma / alpha of the sampler's steps,
so an interval can be read as steps.

    .venv/bin/python benchmarks/guidance_interval.py RUN DATA [--intervals run all 0.2,1 4,80] [--w 3] [--seeds 3]
        [--first-seed 0] [--sampler run]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from diffkit import denoiser, machine
from diffkit.data.images import load_images
from diffkit.metrics.images import evaluate_images
from diffkit.metrics.judge import load_or_train_judge
from diffkit.metrics.shapes import colour_purity
from diffkit.runs import RUN_DEFAULT, load_run, sample_run


def interval(text: str):
    if text == "run":
        return RUN_DEFAULT
    if text == "all":
        return None
    lo, hi = (float(v) for v in text.split(","))
    return [lo, hi]


def step_levels(run, sampler: str, steps: int) -> list[float]:
    """sigma_ve at each network call of the sampler (what the guidance interval is compared with)."""
    seen, scale_at = [], denoiser.Denoiser.scale_at

    def record(self, alpha_bar):
        seen.append(math.sqrt((1 - alpha_bar) / alpha_bar) if alpha_bar > 0 else math.inf)
        return scale_at(self, alpha_bar)

    denoiser.Denoiser.scale_at = record
    try:
        sample_run(run, 2, sampler, steps, seed=0, cond=[0, 1], guidance=3.0, guidance_interval=[0.0, 1.0])
    finally:
        denoiser.Denoiser.scale_at = scale_at
    return seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("data")
    ap.add_argument("--intervals", nargs="+", default=["run", "all", "0.2,1", "3,80", "4,80"],
                    help="LO,HI noise levels, 'run' (the run's own) or 'all'")
    ap.add_argument("--w", type=float, default=3.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--sampler", default="dpmpp-2m",
                    help="dpmpp-2m (at 20 steps, the images' reference) or 'run': the run's own sampler and steps")
    ap.add_argument("--n", type=int, default=1000)
    a = ap.parse_args()
    print(machine.describe(peaks=False))
    torch.set_num_threads(machine.cores())
    data = load_images(a.data)
    judge = load_or_train_judge(data, progress=False)
    run = load_run(a.run)
    labels = np.arange(a.n) % data.num_classes
    sampler, steps = (None, None) if a.sampler == "run" else (a.sampler, 20)
    shown_sampler = f"{run.config.sampling.sampler} {run.config.sampling.steps}" if sampler is None else f"{sampler} 20"
    levels = step_levels(run, sampler, steps)
    print(f"# {a.run}: {shown_sampler} calls at sigma_ve {', '.join(f'{s:.3g}' for s in levels)}; the run's interval "
          f"{run.config.sampling.guidance_interval}\n")
    print("| interval | guided calls | seed | FD / floor | accuracy | precision | recall | purity |")
    print("|---|---|---|---|---|---|---|---|")
    for text in a.intervals:
        shown = interval(text)
        bounds = run.config.sampling.guidance_interval if shown is RUN_DEFAULT else shown
        guided = len(levels) if bounds is None else sum(bounds[0] < s <= bounds[1] for s in levels)
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            x = sample_run(run, a.n, sampler, steps, seed=seed, cond=labels, guidance=a.w, guidance_interval=shown)
            m = evaluate_images(x, data, judge, labels=labels)
            purity = f"{colour_purity(x):.3f}" if a.data == "shapes" else "-"
            print(f"| {text} | {guided} | {seed} | {m['fd'] / m['fd_floor']:.2f} | {m['class_accuracy']:.1%} | "
                  f"{m['precision']:.3f} | {m['recall']:.3f} | {purity} |", flush=True)


if __name__ == "__main__":
    main()
