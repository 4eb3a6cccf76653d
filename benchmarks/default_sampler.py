"""An image run's default sampler against another: FD over the judge's floor and guided class accuracy at each
guidance scale, the same sampling seeds for both (what docs/images.md's "The default sampler" table shows).

    .venv/bin/python benchmarks/default_sampler.py RUN [RUN ...] [--ws 3 1] [--n 1000] [--seeds 2]
        [--against ddim:50] [--default dpmpp-2m:20]

RUN: a trained image run (the default `diffkit train --data digits --cond`, for instance); its data set is the one
its config names.
"""

from __future__ import annotations

import argparse
import math
import statistics

from diffkit import machine
from diffkit.runs import eval_image_samples, load_run, sample_run


def setting(text: str) -> tuple[str, int]:
    name, steps = text.split(":")
    return name, int(steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--ws", type=float, nargs="+", default=[3.0, 1.0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--against", type=setting, default=("ddim", 50))
    ap.add_argument("--default", type=setting, default=("dpmpp-2m", 20))
    a = ap.parse_args()
    print(machine.describe())
    settings = [a.against, a.default]
    print("\n| run | w | " + " | ".join(f"{s} {k}" for s, k in settings) + " |")
    print("|---|---|" + "---|" * len(settings))
    for path in a.runs:
        run = load_run(path)
        labels = [i % run.config.network.num_classes for i in range(a.n)]
        for w in a.ws:
            cells = []
            for sampler, steps in settings:
                fd, acc = [], []
                for seed in range(a.seeds):
                    x = sample_run(run, a.n, sampler, steps, seed=seed, cond=labels, guidance=w)
                    m = eval_image_samples(x, run.config.data.spec, labels=labels, seed=seed, progress=False)
                    fd.append(m["fd"] / m["fd_floor"])
                    acc.append(m["class_accuracy"])
                se = statistics.stdev(fd) / math.sqrt(len(fd)) if len(fd) > 1 else float("nan")
                cells.append(f"{statistics.mean(fd):.2f}x +- {se:.2f}, {statistics.mean(acc):.1%}")
            print(f"| {path} | {w:g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
