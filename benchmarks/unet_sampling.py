"""The U-Net's sampling fast path, measured: image-calls per second of a run's network at several images per call,
in NCHW and channels_last, and whole sampling (dpmpp-2m 20, guided at w = 3 for a class run) on the plain path
(`load_run(fast=False)`: NCHW, one call) and the fast one (channels_last, the chunk `unet_fast.sampling_chunk`
picks), with the largest difference between their samples.

    .venv/bin/python benchmarks/unet_sampling.py RUN [RUN ...] [--n 512]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from diffkit import machine
from diffkit.nn.unet_fast import sampling_chunk
from diffkit.runs import load_run, sample_run

sys.path.insert(0, str(Path(__file__).parent))
from roofline import fastest  # noqa: E402  (the fastest of a few timed calls)

CHUNKS = (16, 32, 64, 128, 256, 512)



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--n", type=int, default=512)
    a = ap.parse_args()
    torch.set_num_threads(machine.cores())
    print(machine.describe())
    print("\n## Network calls: image-calls per second by images per call\n")
    print("| run | layout | " + " | ".join(map(str, CHUNKS)) + " |\n|---|---|" + "---|" * len(CHUNKS))
    for path in a.runs:
        run = load_run(path, fast=False, precision="fp32")
        shape, classes = run.config.fitted.shape, run.config.network.num_classes
        net = run.network.eval()
        x, t = torch.randn(a.n, *shape), torch.full((a.n,), 500.0)
        c = torch.arange(a.n) % classes if classes else None
        with torch.no_grad():
            for layout in (torch.contiguous_format, torch.channels_last):
                net = net.to(memory_format=layout)
                xx = x.contiguous(memory_format=layout)
                rates = [a.n / fastest(lambda: [net(xx[i:i + k], t[i:i + k], None if c is None else c[i:i + k])
                                                for i in range(0, a.n, k)])[0] for k in CHUNKS]
                name = "NCHW" if layout == torch.contiguous_format else "channels_last"
                print(f"| {path} | {name} | " + " | ".join(f"{r:.0f}" for r in rates) + " |", flush=True)
    print("\n## Sampling: dpmpp-2m 20 steps, class runs guided at w = 3 in their interval\n")
    print("| run | chunk | plain samples/s | fast samples/s | speed-up | largest difference |\n|---|---|---|---|---|---|")
    for path in a.runs:
        plain, fast = load_run(path, fast=False, precision="fp32"), load_run(path, precision="fp32")
        classes = plain.config.network.num_classes
        kw = {"cond": [i % classes for i in range(a.n)], "guidance": 3.0} if classes else {}
        times, outs = zip(*[fastest(lambda: sample_run(r, a.n, "dpmpp-2m", 20, seed=0, **kw), 1)  # noqa: B023
                            for r in (plain, fast)])
        print(f"| {path} | {sampling_chunk(plain.config.fitted.shape)} | {a.n / times[0]:.1f} | {a.n / times[1]:.1f} "
              f"| {times[0] / times[1]:.2f}x | {np.abs(outs[0] - outs[-1]).max():.1e} |", flush=True)


if __name__ == "__main__":
    main()
