"""Sampling in bf16 against fp32 on a trained image run: FD over the judge's floor, guided class accuracy and images
per second at dpmpp-2m 20, guided at w = 3, the same seeds both ways (a paired difference).

    .venv/bin/python benchmarks/sampling_precision.py RUN DATA [--n 1000] [--seeds 3]

bf16 is the run's sampling precision (`sample_run(..., precision=...)`, nn/precision.py): the network's calls under
bf16 autocast, its output back in float32, the sampler's own arithmetic in float32. Each is asked for by name (a run
loaded with "auto" samples bf16 on a CPU with native bf16 already). Worth it only on a CPU with native bf16
(machine.describe() says).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

from diffkit import machine
from diffkit.runs import eval_image_samples, load_run, sample_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("data")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args()
    print(machine.describe())
    run = load_run(a.run)
    labels = [i % run.config.network.num_classes for i in range(a.n)]
    fds = {}
    for precision in ("fp32", "bf16"):
        fd, acc, rate = [], [], []
        for seed in range(a.seeds):
            t0 = time.perf_counter()
            x = sample_run(run, a.n, "dpmpp-2m", 20, seed=seed, cond=labels, guidance=3.0, precision=precision)
            rate.append(a.n / (time.perf_counter() - t0))
            m = eval_image_samples(x, a.data, labels=labels, seed=seed, progress=False)
            fd.append(m["fd"] / m["fd_floor"])
            acc.append(m["class_accuracy"])
        fds[precision] = fd
        print(f"{precision}: FD / floor {statistics.mean(fd):.3f} +- {statistics.stdev(fd) / math.sqrt(len(fd)):.3f}, "
              f"accuracy {statistics.mean(acc):.1%}, {max(rate):.1f} images/s (fastest seed)")
    d = [b - f for f, b in zip(fds["fp32"], fds["bf16"])]
    print(f"bf16 - fp32, paired over seeds: {statistics.mean(d):+.3f} +- {statistics.stdev(d) / math.sqrt(len(d)):.3f}")


if __name__ == "__main__":
    main()
