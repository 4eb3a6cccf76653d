"""Score a trained image run the way the README's image table does: 1,000 samples (classes cycled), dpmpp-2m at
20 steps, per guidance setting (w in the run's guidance interval or at every level); the judge's
classifier-feature FD against the test split beside its floor, precision / recall, class accuracy, colour
purity (shapes); and a grid of 10 samples per class at one of the settings.

    .venv/bin/diffkit train --data digits --cond --out runs/digits        # timed with /usr/bin/time -v
    .venv/bin/python benchmarks/image_runs.py digits runs/digits docs/digits_w3.png
    .venv/bin/python benchmarks/image_runs.py mnist5k runs/mnist5k docs/mnist5k_w2_all.png --settings 2:all --grid 2:all

A setting is W:run (guidance w in the run's interval) or W:all (at every noise level). Default settings:
3:run, 3:all, 1:run; default grid: the first setting.
"""

import argparse
import time

import numpy as np
import torch

from diffkit import machine
from diffkit.data.images import load_images
from diffkit.metrics.images import evaluate_images
from diffkit.metrics.judge import load_or_train_judge
from diffkit.metrics.shapes import colour_purity
from diffkit.runs import RUN_DEFAULT, load_run, sample_run
from diffkit.viz.images import class_grid


def setting(text: str) -> tuple[float, str]:
    w, _, where = text.partition(":")
    if where not in ("run", "all"):
        raise argparse.ArgumentTypeError(f"a setting is W:run or W:all, got {text!r}")
    return float(w), where


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data")
    p.add_argument("run")
    p.add_argument("picture")
    p.add_argument("--settings", type=lambda s: [setting(v) for v in s.split(",")],
                   default=[(3.0, "run"), (3.0, "all"), (1.0, "run")])
    p.add_argument("--grid", type=setting, help="the setting drawn as the grid (default: the first)")
    p.add_argument("--n", type=int, default=1000)
    a = p.parse_args()
    torch.set_num_threads(2)
    print(machine.describe())
    data = load_images(a.data)
    judge = load_or_train_judge(data, progress=False)
    run = load_run(a.run)
    print(f"judge acc {judge.test_accuracy:.4f}")
    labels = np.arange(a.n) % data.num_classes
    grid = a.grid or a.settings[0]
    for w, where in a.settings:
        interval = RUN_DEFAULT if where == "run" else None
        t1 = time.perf_counter()
        x = sample_run(run, a.n, "dpmpp-2m", 20, seed=0, cond=labels, guidance=w, guidance_interval=interval)
        dt = time.perf_counter() - t1
        m = evaluate_images(x, data, judge, labels=labels)
        extra = f" purity={colour_purity(x):.3f} (data {colour_purity(data.test):.3f})" if a.data == "shapes" else ""
        shown = run.config.sampling.guidance_interval if where == "run" else "all"
        print(f"w={w} interval={shown} sample {dt:.1f}s ({a.n / dt:.0f} img/s) fd={m['fd']:.3f} "
              f"floor={m['fd_floor']:.3f} ratio={m['fd'] / m['fd_floor']:.2f} acc={m['class_accuracy']:.3f} "
              f"P={m['precision']:.3f} R={m['recall']:.3f} (floor P={m['precision_floor']:.3f} "
              f"R={m['recall_floor']:.3f}){extra}", flush=True)
        if (w, where) == grid:
            idx = np.concatenate([np.flatnonzero(labels == c)[:10] for c in range(data.num_classes)])
            class_grid(x[idx], labels[idx], a.picture, data.class_names, per_class=10)


if __name__ == "__main__":
    main()
