"""A/B of two checkouts of diffkit on this machine: ms per training step of the default 2-D runs (circle, spiral)
and of the default digits run, each checkout in fresh processes, alternating A, B, A, B, ... so that drift in the
machine's speed hits both alike; medians.

    git worktree add /tmp/before <commit>
    .venv/bin/python benchmarks/ab.py /tmp/before .  [--repeats 3] [--points-steps 1000] [--digits-steps 60]

Precision and threads are fixed (points: fp32, 1 thread, what `auto` picks for them; digits: --digits-precision,
2 threads), so both checkouts time the same work. Run it alone: two torch processes on 2 cores slow each other.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from diffkit import machine

# runs in the checkout under test (its own diffkit on PYTHONPATH): the default run of a data set, trained for a
# few steps; prints ms per step between the first and the last logged step (the warm-up excluded)
ONE_RUN = """
import contextlib, io, json, sys
from diffkit.runs import default_config, train_run
from diffkit.store.trainlog import LOG, read_log
spec, steps, precision, threads, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
config = default_config(spec, cond=spec == "digits")
config.train.steps, config.train.precision, config.train.threads = steps, precision, threads
config.train.log_every = max(steps // 10, 1)
with contextlib.redirect_stderr(io.StringIO()):
    train_run(config, out, progress=False)
log = read_log(f"{out}/{LOG}")
print(json.dumps(1e3 * (log["seconds"][-1] - log["seconds"][0]) / (log["step"][-1] - log["step"][0])))
"""


def one_run(tree: Path, spec: str, steps: int, precision: str, threads: int, root: Path) -> float:
    out = Path(tempfile.mkdtemp(dir=root)) / "run"
    env = {**os.environ, "PYTHONPATH": str(tree.resolve()), "DIFFKIT_CACHE": str(root / "cache")}
    done = subprocess.run([sys.executable, "-c", ONE_RUN, spec, str(steps), precision, str(threads), str(out)],
                          env=env, capture_output=True, text=True, check=True, cwd=root)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="checkout A (e.g. before a change)")
    ap.add_argument("b", type=Path, help="checkout B (e.g. after it)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--points-steps", type=int, default=1000)
    ap.add_argument("--digits-steps", type=int, default=60)
    ap.add_argument("--digits-precision", default="bf16" if machine.cpu_bf16_native() else "fp32")
    a = ap.parse_args()
    print(machine.describe())
    work = {"circle": (a.points_steps, "fp32", 1), "spiral": (a.points_steps, "fp32", 1),
            "digits": (a.digits_steps, a.digits_precision, 2)}
    ms = {(name, side): [] for name in work for side in "AB"}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.repeats):
            for name, (steps, precision, threads) in work.items():
                for side, tree in (("A", a.a), ("B", a.b)):
                    ms[(name, side)].append(one_run(tree, name, steps, precision, threads, Path(tmp)))
    print(f"\nA = {a.a}, B = {a.b}; median of {a.repeats} runs each, alternating\n")
    print("| run | steps x batch | precision, threads | A ms / step | B ms / step | B / A | A runs | B runs |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (steps, precision, threads) in work.items():
        ma, mb = statistics.median(ms[(name, "A")]), statistics.median(ms[(name, "B")])
        batch = 128 if name == "digits" else 1024
        print(f"| {name} | {steps} x {batch} | {precision}, {threads} | {ma:.2f} | {mb:.2f} | {mb / ma:.3f} | "
              f"{', '.join(f'{v:.2f}' for v in ms[(name, 'A')])} | {', '.join(f'{v:.2f}' for v in ms[(name, 'B')])} |")
    print("\n" + json.dumps({f"{k[0]}-{k[1]}": v for k, v in ms.items()}))


if __name__ == "__main__":
    main()
