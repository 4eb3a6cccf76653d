"""The U-Net's sampling fast path, measured: image-calls per second of a run's network at several images per call,
in NCHW and channels_last, and whole sampling (dpmpp-2m 20, guided at w = 3 for a class run) on the plain path
(`load_run(fast=False)`: NCHW, one call) and the fast one (channels_last, the lean residual blocks, the chunk
`unet_fast.sampling_chunk` picks), in interleaved rounds, with the largest difference between their samples.

    .venv/bin/python benchmarks/unet_sampling.py RUN [RUN ...] [--n 512] [--repeats 3] [--no-calls] [--chunks]

--chunks: instead, whole sampling on the fast path in the run's own precision (bf16 on a CPU with native bf16) at
the chunks `sampling_chunk` picks for float32 and for bf16 calls and at twice the latter, in interleaved rounds.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

from diffkit import machine
from diffkit.nn.unet_fast import lean_blocks, sampling_chunk
from diffkit.runs import load_run, sample_run

sys.path.insert(0, str(Path(__file__).parent))
from distill import timed_repeats  # noqa: E402  (settings timed in turn within each round)
from roofline import fastest  # noqa: E402  (the fastest of a few timed calls)

CHUNKS = (16, 32, 64, 128, 256, 512)



def calls_table(a) -> None:
    print("\n## Network calls: image-calls per second by images per call\n")
    print("| run | layout | " + " | ".join(map(str, CHUNKS)) + " |\n|---|---|" + "---|" * len(CHUNKS))
    for path in a.runs:
        run = load_run(path, fast=False, precision="fp32")
        shape, classes = run.config.fitted.shape, run.config.network.num_classes
        net = run.network.eval()
        x, t = torch.randn(a.n, *shape), torch.full((a.n,), 500.0)
        c = torch.arange(a.n) % classes if classes else None
        with torch.no_grad():
            for name, layout, lean in (("NCHW", torch.contiguous_format, False),
                                       ("channels_last", torch.channels_last, False),
                                       ("channels_last, lean blocks", torch.channels_last, True)):
                net = lean_blocks(net.to(memory_format=layout), lean)
                xx = x.contiguous(memory_format=layout)
                rates = [a.n / fastest(lambda net=net, xx=xx, t=t, c=c, k=k: [
                    net(xx[i:i + k], t[i:i + k], None if c is None else c[i:i + k]) for i in range(0, a.n, k)])[0]
                    for k in CHUNKS]
                print(f"| {path} | {name} | " + " | ".join(f"{r:.0f}" for r in rates) + " |", flush=True)


def chunks_table(a) -> None:
    print("\n## Sampling by images per call: the run's own sampler, class runs guided at w = 3 in their interval, "
          f"the run's precision; samples/s, the fastest of {a.repeats} interleaved rounds\n")
    print("| run | precision | chunk: samples/s | the fp32 rule's chunk | the bf16 rule's chunk |\n"
          "|---|---|---|---|---|")
    for path in a.runs:
        run = load_run(path)
        shape, classes = run.config.fitted.shape, run.config.network.num_classes
        rules = sampling_chunk(shape, "fp32"), sampling_chunk(shape, "bf16")
        kw = {"cond": [i % classes for i in range(a.n)], "guidance": 3.0} if classes else {}
        sample_run(run, a.n, seed=0, **kw)  # warm-up

        def draw(seed, k, run=run, kw=kw):
            run.denoiser.chunk = k
            return sample_run(run, a.n, seed=seed, **kw)

        times = timed_repeats({k: functools.partial(draw, k=k) for k in sorted({*rules, 2 * rules[1]})}, a.repeats)
        best = {k: a.n / min(t) for k, t in times.items()}
        cells = ", ".join(f"{k}: {v:.1f}" for k, v in best.items())
        gain = best[rules[1]] / best[rules[0]]
        print(f"| {path} | {run.precision} | {cells} | {rules[0]} | {rules[1]} ({gain:.2f}x) |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of plain-then-fast sampling")
    ap.add_argument("--chunks", action="store_true", help="only the table of whole sampling by images per call")
    ap.add_argument("--calls", action=argparse.BooleanOptionalAction, default=True, help="the per-call table")
    a = ap.parse_args()
    torch.set_num_threads(machine.cores())
    print(machine.describe())
    if a.chunks:
        chunks_table(a)
        return
    if a.calls:
        calls_table(a)
    print(f"\n## Sampling: dpmpp-2m 20 steps, class runs guided at w = 3 in their interval; {a.repeats} rounds, each "
          "timing the plain path then the fast one (a burst of other work on the machine hits both)\n")
    print("| run | chunk | plain samples/s (fastest) | fast samples/s (fastest) | speed-up of the fastest | "
          "speed-up per round | largest difference |\n|---|---|---|---|---|---|---|")
    for path in a.runs:
        plain, fast = load_run(path, fast=False, precision="fp32"), load_run(path, precision="fp32")
        classes = plain.config.network.num_classes
        kw = {"cond": [i % classes for i in range(a.n)], "guidance": 3.0} if classes else {}
        draws = [lambda r=r, kw=kw: sample_run(r, a.n, "dpmpp-2m", 20, seed=0, **kw) for r in (plain, fast)]
        outs = [d() for d in draws]  # warm-up
        rounds = [[fastest(d, 1)[0] for d in draws] for _ in range(a.repeats)]
        best = [min(r[i] for r in rounds) for i in (0, 1)]
        per_round = ", ".join(f"{p / f:.2f}" for p, f in rounds)
        print(f"| {path} | {sampling_chunk(plain.config.fitted.shape)} | {a.n / best[0]:.1f} | {a.n / best[1]:.1f} "
              f"| {best[0] / best[1]:.2f}x | {per_round} (median {statistics.median(p / f for p, f in rounds):.2f}) "
              f"| {np.abs(outs[0] - outs[1]).max():.1e} |", flush=True)


if __name__ == "__main__":
    main()
