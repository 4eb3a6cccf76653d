"""Training throughput with 1 and 2 processes (DistributedDataParallel on gloo) on this machine's CPU cores.

    .venv/bin/python benchmarks/scale.py [--models mlp,digits] [--repeats 1] [--compile]

For the 2-D MLP (spiral, batch 1024) and the digits U-Net (its preset, batch 128): `diffkit train` with one
process on 1 thread and on all cores, and `diffkit train --nproc 2` (one thread per rank; the ranks share the
cores). Samples/s is measured from the run's own train_log.csv between its first and last logged step (so
process start, data loading and the first steps' warm-up are left out). Scaling efficiency = samples/s on
N cores / (N x samples/s of one process on one thread): the share of perfect per-core scaling. The global
batch is the same in every row, and so is the result (tests/test_distributed.py).
--compile adds a row with torch.compile of the network (one process, all cores). "wall s" is the whole
command (start-up, data, compilation, steps) for the steps in MODELS.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
MODELS = {  # name: (train arguments, batch size, steps)
    "mlp": (["--data", "spiral"], 1024, 1000),
    "digits": (["--data", "digits", "--cond"], 128, 250),
}


def throughput(run: Path, batch: int) -> float:
    with open(run / "train_log.csv", newline="") as f:
        rows = [(int(r["step"]), float(r["seconds"])) for r in csv.DictReader(f)]
    (s0, t0), (s1, t1) = rows[0], rows[-1]
    return (s1 - s0) * batch / (t1 - t0)


def train(args: list[str], out: Path) -> float:
    """Runs `diffkit train`; returns its wall time in seconds (process start, compile and all)."""
    cmd = [str(BIN / "diffkit"), "train", *args, "--out", str(out), "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mlp,digits")
    p.add_argument("--repeats", type=int, default=1, help="runs per row; the best is kept")
    p.add_argument("--compile", action="store_true")
    a = p.parse_args()
    from diffkit import machine

    print(machine.describe())
    cores = os.cpu_count() or 1
    setups = [("1 process, 1 thread", ["--threads", "1"], 1), (f"1 process, {cores} threads", ["--threads", str(cores)], cores),
              ("2 processes (DDP, gloo), 1 thread each", ["--nproc", "2"], 2)]  # (label, arguments, cores used)
    if a.compile:
        setups.append((f"1 process, {cores} threads, --compile", ["--threads", str(cores), "--compile"], cores))
    print(f"# training throughput on this machine ({cores} cores), samples/s (best of {a.repeats})")
    print(f"{'model':<8} {'setup':<42} {'samples/s':>10} {'vs 1 thread':>12} {'efficiency':>11} {'wall s':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            args, batch, steps = MODELS[name]
            base = None
            for k, (label, extra, used) in enumerate(setups):
                best, wall = 0.0, 0.0
                for r in range(a.repeats):
                    out = Path(tmp) / f"{name}-{k}-{r}"
                    secs = train([*args, "--steps", str(steps), "--checkpoint-every", str(10 * steps), *extra], out)
                    if throughput(out, batch) > best:
                        best, wall = throughput(out, batch), secs
                base = base or best
                print(f"{name:<8} {label:<42} {best:>10.0f} {best / base:>11.2f}x {best / (used * base):>10.0%} "
                      f"{wall:>7.1f}",
                      flush=True)


if __name__ == "__main__":
    main()
