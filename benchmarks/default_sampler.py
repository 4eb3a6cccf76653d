"""An image run's default sampler against another: FD over the judge's floor and guided class accuracy at each
guidance scale, the same sampling seeds for both (what docs/images.md's "The default sampler" table shows); for
shapes runs also colour purity and the share of empty images (no shape found).

    .venv/bin/python benchmarks/default_sampler.py RUN [RUN ...] [--ws 3 1] [--n 1000] [--seeds 2]
        [--against ddim:50 [...]] [--default dpmpp-2m:20]

RUN: a trained image run (the default `diffkit train --data digits --cond`, for instance); its data set is the one
its config names. A setting is SAMPLER:STEPS[:OPTION=VALUE,...], e.g. dpmpp-2m-sde:20:s_tmax=3 (shapes' default).
"""

from __future__ import annotations

import argparse
import math
import statistics

from diffkit import machine
from diffkit.runs import eval_image_samples, load_run, sample_run


def setting(text: str) -> tuple[str, int, dict]:
    name, steps, *rest = text.split(":")
    options = dict(kv.split("=") for kv in rest[0].split(",")) if rest else {}
    return name, int(steps), {k: float(v) for k, v in options.items()}


def shapes_cells(x) -> list[float]:
    """Colour purity and the share of empty images of shapes samples."""
    from diffkit.metrics.shapes import colour_purity, read_shapes

    return [colour_purity(x), float((read_shapes(x)["shape"] < 0).mean())]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--ws", type=float, nargs="+", default=[3.0, 1.0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--against", type=setting, nargs="+", default=[("ddim", 50, {})])
    ap.add_argument("--default", type=setting, default=("dpmpp-2m", 20, {}))
    a = ap.parse_args()
    print(machine.describe())
    settings = [*a.against, a.default]
    print("\n| run | w | " + " | ".join(f"{s} {k} {','.join(f'{n}={v:g}' for n, v in o.items())}".strip() for s, k, o in settings) + " |")
    print("|---|---|" + "---|" * len(settings))
    for path in a.runs:
        run = load_run(path)
        labels = [i % run.config.network.num_classes for i in range(a.n)]
        for w in a.ws:
            cells = []
            for sampler, steps, options in settings:
                fd, acc, colours = [], [], []
                for seed in range(a.seeds):
                    x = sample_run(run, a.n, sampler, steps, seed=seed, cond=labels, guidance=w, **options)
                    m = eval_image_samples(x, run.config.data.spec, labels=labels, seed=seed, progress=False)
                    fd.append(m["fd"] / m["fd_floor"])
                    acc.append(m["class_accuracy"])
                    if run.config.data.spec == "shapes":
                        colours.append(shapes_cells(x))
                se = statistics.stdev(fd) / math.sqrt(len(fd)) if len(fd) > 1 else float("nan")
                extra = (f", purity {statistics.mean(c[0] for c in colours):.1%}, empty "
                         f"{statistics.mean(c[1] for c in colours):.1%}") if colours else ""
                cells.append(f"{statistics.mean(fd):.2f}x +- {se:.2f}, {statistics.mean(acc):.1%}{extra}")
            print(f"| {path} | {w:g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
