"""Guidance distillation: one student for a range of guidance scales, against its teacher and a fixed-w student.

On digits: the default `diffkit train --data digits --cond` teacher; a 4-step progressive student with w = 3
folded in (`--guidance 3`) and one that reads w (`--guidance-range LO,HI`, Meng et al. 2023). At each w: the
teacher at its reference setting (dpmpp-2m 20 steps guided at w in its interval) and the students at 4 calls:
FD over the judge's floor and guided class accuracy, mean +- se over --seeds seeds of --n images.

    .venv/bin/python benchmarks/guidance_distill.py [--range 1,5] [--ws 1.5 3 4.5] [--n 2000] [--seeds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

from diffkit import machine
from diffkit.runs import load_run, sample_run

sys.path.insert(0, str(Path(__file__).parent))
from distill import Scorer, job  # noqa: E402  (the measures and the training jobs of benchmarks/distill.py)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--range", default="1,5")
    ap.add_argument("--ws", type=float, nargs="+", default=[1.5, 3.0, 4.5])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(machine.describe())
    score = Scorer("digits", a)
    labels = [i % 10 for i in range(a.n)]

    def draw(run, sampler, steps, w):
        return lambda seed: sample_run(run, a.n, sampler, steps, seed=seed, cond=labels, guidance=w)

    def cell(c):
        return f"{c['q'][0]:.2f}x +- {c['q'][1]:.2f}, {c['acc']:.1%}"

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.setdefault("DIFFKIT_CACHE", str(root / "cache"))
        costs = {"teacher": job({"kind": "teacher", "flags": {"data": "digits", "cond": True},
                                 "out": str(root / "teacher")})}
        for name, flags in (("fixed", {"guidance": 3.0}), ("range", {"guidance_range": a.range})):
            costs[name] = job({"kind": "student", "teacher": str(root / "teacher"), "out": str(root / name),
                               "flags": {"method": "progressive", "steps": 4, **flags}})
            print(f"# {name} student in {costs[name]['wall']:.0f} s", file=sys.stderr, flush=True)
        teacher, fixed, ranged = (load_run(root / n) for n in ("teacher", "fixed", "range"))
        print(f"\n## digits: FD / floor and guided accuracy, mean +- se over {a.seeds} seeds of {a.n}\n")
        print(f"| w | teacher, dpmpp-2m 20 (reference) | student with w in [{a.range}], 4 calls | "
              "student with w = 3 folded in, 4 calls |")
        print("|---|---|---|---|")
        for w in a.ws:
            ref = score(draw(teacher, "dpmpp-2m", 20, w))
            own = score(draw(ranged, None, None, w))
            folded = cell(score(draw(fixed, None, None, None))) if w == 3.0 else "-"
            print(f"| {w:g} | {cell(ref)} | {cell(own)} ({own['q'][0] / ref['q'][0]:.2f}x the teacher's FD) | "
                  f"{folded} |", flush=True)
        t = costs["teacher"]["cpu"]
        print(f"\nCost: teacher {t:.0f} CPU-s; " + "; ".join(
            f"{n} student {c['cpu']:.0f} CPU-s = {c['cpu'] / t:.2f}x" for n, c in costs.items() if n != "teacher"))


if __name__ == "__main__":
    main()
