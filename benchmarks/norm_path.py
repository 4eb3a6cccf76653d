"""GroupNorm on the U-Net's bf16 sampling fast path, measured: one network call at the sampling chunk and whole
sampling (the run's own sampler and steps, class runs guided at w = 3 in their interval), with each norm through
torch's kernel in float32 (the path before: a copy up, the kernel, a copy down, then the adaptive scale and shift)
and through `GroupNorm.modulated` (now: float32 statistics per channel pooled per group, then x * a + b computed in
float32 and written once in bf16), in interleaved rounds, with the largest difference between their outputs.

    .venv/bin/python benchmarks/norm_path.py RUN [RUN ...] [--rounds 3] [--n 1000]

Only where bf16 sampling is the default (a CPU with native bf16: machine.describe() says); elsewhere it still runs
(emulated bf16 is slow) but measures nothing the default uses.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from diffkit import machine
from diffkit.nn.unet import GroupNorm
from diffkit.runs import load_run, sample_run

sys.path.insert(0, str(Path(__file__).parent))
from roofline import fastest  # noqa: E402  (the fastest of a few timed calls)


def _through_float32(self, x, scale=None, shift=None):
    h = F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps).to(x.dtype)
    return h if scale is None else torch.addcmul(shift, h, 1 + scale)


@contextlib.contextmanager
def norm_before():
    """GroupNorm.modulated as it was: torch's kernel on a float32 copy (GroupNorm.forward calls modulated)."""
    now = GroupNorm.modulated
    GroupNorm.modulated = _through_float32
    try:
        yield
    finally:
        GroupNorm.modulated = now


def once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def rounds_of(draw, rounds: int, timed) -> tuple[list[tuple[float, float]], tuple]:
    """[(before s, now s)] per round, each timed by `timed`, after one untimed draw of each (their outputs)."""
    with norm_before():
        before = draw()
    now = draw()
    times = []
    for _ in range(rounds):
        with norm_before():
            b = timed(draw)
        times.append((b, timed(draw)))
    return times, (before, now)


def row(path, what: str, chunk: int, times, outs, per: float) -> str:
    best = [min(t[i] for t in times) for i in (0, 1)]
    ratios = [b / n for b, n in times]
    diff = np.abs(np.asarray(outs[0], dtype=np.float64) - np.asarray(outs[1], dtype=np.float64)).max()
    return (f"| {Path(path).name} | {what} | {chunk} | {per / best[0]:.1f} | {per / best[1]:.1f} | "
            f"{best[0] / best[1]:.2f}x | {min(ratios):.2f}-{max(ratios):.2f} (median {statistics.median(ratios):.2f}) "
            f"| {diff:.1e} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of before-then-now")
    ap.add_argument("--n", type=int, default=1000, help="images per whole sampling")
    a = ap.parse_args()
    torch.set_num_threads(machine.cores())
    print(machine.describe())
    print("\n| run | what | images per call | before /s | now /s | speed-up of the fastest | per round | largest "
          "difference |\n|---|---|---|---|---|---|---|---|")
    for path in a.runs:
        run = load_run(path, precision="bf16")
        net, chunk = run.denoiser.network, run.denoiser.chunk
        classes = run.config.network.num_classes
        x, t = torch.randn(chunk, *run.config.fitted.shape), torch.full((chunk,), 500.0)
        c = torch.arange(chunk) % classes if classes else None
        with torch.inference_mode():
            times, outs = rounds_of(lambda net=net, x=x, t=t, c=c: net(x, t, c).float().numpy(), a.rounds,
                                    lambda f: fastest(f, 3)[0])
        print(row(path, "one network call (image-calls/s)", chunk, times, outs, chunk), flush=True)
        kw = {"cond": [i % classes for i in range(a.n)], "guidance": 3.0} if classes else {}
        times, outs = rounds_of(lambda run=run, kw=kw: sample_run(run, a.n, seed=0, **kw), a.rounds, once)
        sampler = f"{run.config.sampling.sampler} {run.config.sampling.steps}"
        print(row(path, f"sampling, {sampler} (samples/s)", chunk, times, outs, a.n), flush=True)


if __name__ == "__main__":
    main()
