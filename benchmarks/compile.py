"""torch.compile for training, measured: the step time eager and compiled, and what compiling costs before the
first step, on a cold inductor cache (a machine's first compiled run) and a warm one (every later run).

    .venv/bin/python benchmarks/compile.py [--models mlp digits mnist5k] [--steps 40]

Each measurement is a fresh process (dynamo keeps compiled code in memory): it builds the default run's
trainer (`diffkit train --data D [--cond]`, with `--compile` or not), settles precision and threads, times the
first step (for a compiled run: tracing, compiling or loading from the cache, then the step) and then the median
of --steps steps. The cold and warm runs share one fresh TORCHINDUCTOR_CACHE_DIR, so "warm" is what the second
compiled run on a machine pays. Break-even: the steps after which the compiled run has caught up with eager.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from roofline import MODELS  # noqa: E402  (the default runs, by name)

from diffkit import machine  # noqa: E402
from diffkit.runs import train_config  # noqa: E402
from diffkit.runs.train import make_trainer  # noqa: E402
from diffkit.training.distributed import Runtime  # noqa: E402

DEFAULT_STEPS = {"mlp": 1200, "digits": 1300, "mnist5k": 2000, "shapes": 750}  # the default runs' lengths (presets.py)


def child(name: str, compiled: bool, steps: int) -> dict:
    """One process: first-step seconds and the median step after it."""
    _, flags, _ = MODELS[name]
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(train_config(flags), Path(tmp) / name, progress=False,
                               runtime=Runtime(compile=compiled))
        with contextlib.redirect_stderr(io.StringIO()):
            settled = trainer.settle()
        with machine.intra_op_threads(settled.threads):
            t0 = time.perf_counter()
            trainer.train_step()
            first = time.perf_counter() - t0
            times = []
            for _ in range(steps):
                t0 = time.perf_counter()
                trainer.train_step()
                times.append(time.perf_counter() - t0)
    return {"first_s": first, "step_ms": statistics.median(times) * 1e3, "precision": settled.precision,
            "threads": settled.threads}


def measure(name: str, mode: str, steps: int, cache: str) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
    out = subprocess.run([sys.executable, __file__, "--child", name, mode, "--steps", str(steps)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def child_main() -> None:
    """One measurement's process: --child NAME MODE --steps N; prints its figures as JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=2)
    ap.add_argument("--steps", type=int)
    a = ap.parse_args()
    name, mode = a.child
    sys.stdout.write(json.dumps(child(name, mode != "eager", a.steps)) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mlp", "digits", "mnist5k"], choices=list(DEFAULT_STEPS))
    ap.add_argument("--steps", type=int, default=40, help="timed steps per measurement")
    a = ap.parse_args()
    print(machine.describe(peaks=True))
    print(f"# torch {torch.__version__}\n")
    print("| run | precision, threads | eager step ms | compiled step ms | speed-up | first compiled step, cold "
          "cache s | warm cache s | eager first step s | break-even steps (warm) | default run's steps |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in a.models:
        with tempfile.TemporaryDirectory() as cache:
            eager = measure(name, "eager", a.steps, cache)
            cold = measure(name, "cold", a.steps, cache)
            warm = measure(name, "warm", a.steps, cache)
        gain_ms = eager["step_ms"] - warm["step_ms"]
        extra = warm["first_s"] - eager["first_s"]
        even = f"{extra / gain_ms * 1e3:.0f}" if gain_ms > 0 else "never"
        print(f"| {MODELS[name][0]} | {eager['precision']}, {eager['threads']} | {eager['step_ms']:.1f} | "
              f"{warm['step_ms']:.1f} | {eager['step_ms'] / warm['step_ms']:.2f}x | {cold['first_s']:.1f} | "
              f"{warm['first_s']:.1f} | {eager['first_s']:.2f} | {even} | {DEFAULT_STEPS[name]} |", flush=True)


if __name__ == "__main__":
    child_main() if "--child" in sys.argv else main()
