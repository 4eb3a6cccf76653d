"""Defaults that fit the machine: what `--precision auto` and automatic threads choose here, against the settings
forced, on the default runs.

    .venv/bin/python benchmarks/defaults.py [--steps 50] [--points-steps 1000] [--repeats 3] [--no-bf16]

Table 1, the default digits run (`diffkit train --data digits --cond`), --steps steps each with precision auto,
fp32 and bf16 forced (threads automatic): ms per step from the first logged step to the last (the warm-up
excluded), what auto chose and why, and the one-time cost of its probe (a first start on this machine against
one with the probe's timings cached). Table 2, the default 2-D run (spiral), at 1 thread, at all cores and at
auto. Runs alternate between settings, --repeats times; medians. `--no-bf16` makes diffkit see a CPU without
native bf16 (a simulation: the forced-bf16 row still runs at this CPU's real bf16 speed).
Run it alone: two torch processes on 2 cores slow each other many times over.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

from diffkit import machine
from diffkit.runs import default_config, train_run
from diffkit.store.trainlog import LOG, read_log


def one_run(spec: str, steps: int, root: Path, **train) -> dict:
    """Train the default run of `spec` for `steps` steps with train settings overridden; ms per step after the
    first log row, what ran, the auto lines printed and the wall time before the first step (the probe)."""
    config = default_config(spec, cond=spec != "spiral")
    config.train.steps = steps
    for key, value in train.items():
        setattr(config.train, key, value)
    out = root / f"run-{time.perf_counter_ns()}"
    said = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(said):
        summary = train_run(config, out, progress=False)
    wall = time.perf_counter() - t0
    log = read_log(out / LOG)
    ms = 1e3 * (log["seconds"][-1] - log["seconds"][0]) / (log["step"][-1] - log["step"][0])
    lines = [line for line in said.getvalue().splitlines() if line.startswith(("precision:", "threads:"))]
    return {"ms": ms, "precision": log["precision"][-1], "threads": int(log["threads"][-1]), "lines": lines,
            "before_first_step_s": wall - summary["seconds"]}


def median_rows(spec: str, steps: int, settings: dict, repeats: int, root: Path) -> dict:
    runs = {name: [] for name in settings}
    for _ in range(repeats):  # alternate, so drift in the machine's speed hits every setting alike
        for name, train in settings.items():
            runs[name].append(one_run(spec, steps, root, **train))
    return {name: {**rs[-1], "ms": statistics.median(r["ms"] for r in rs), "all_ms": [r["ms"] for r in rs]}
            for name, rs in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50, help="digits steps per run (default 50)")
    ap.add_argument("--points-steps", type=int, default=1000, help="2-D steps per run (default 1000)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-bf16", action="store_true", help="simulate a CPU without native bf16")
    a = ap.parse_args()
    if a.no_bf16:
        machine.cpu_bf16_native = lambda: False
    print(machine.describe())
    if a.no_bf16:
        print("# simulated: diffkit is told this CPU has no native bf16")
    cores = machine.cores()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["DIFFKIT_CACHE"] = str(root / "cache")  # a first start: the probe runs once, then is cached
        first = one_run("digits", a.steps, root)
        digits = median_rows("digits", a.steps, {"auto": {}, "fp32": {"precision": "fp32"},
                                                 "bf16": {"precision": "bf16"}}, a.repeats, root)
        print(f"\n## default digits run, {a.steps} steps of 128 per run, median of {a.repeats}\n")
        print("| precision | ms / step | runs (ms) | ran | vs fp32 |\n|---|---|---|---|---|")
        for name, r in digits.items():
            print(f"| {name} | {r['ms']:.1f} | {', '.join(f'{v:.0f}' for v in r['all_ms'])} | {r['precision']}, "
                  f"{r['threads']} threads | {digits['fp32']['ms'] / r['ms']:.2f}x |")
        print(f"\nauto chose: {'; '.join(first['lines'])}")
        print(f"its probe, once per machine and network: {first['before_first_step_s']:.1f} s before the first "
              f"step at the first start, {digits['auto']['before_first_step_s']:.1f} s once cached")

        threads = {"1 thread": {"threads": 1}, f"{cores} threads": {"threads": cores}, "auto": {}}
        points = median_rows("spiral", a.points_steps, threads, a.repeats, root)
        print(f"\n## default 2-D run (spiral MLP), {a.points_steps} steps of 1024 per run, median of {a.repeats}\n")
        print("| threads | ms / step | runs (ms) | ran |\n|---|---|---|---|")
        for name, r in points.items():
            print(f"| {name} | {r['ms']:.2f} | {', '.join(f'{v:.2f}' for v in r['all_ms'])} | {r['precision']}, "
                  f"{r['threads']} threads |")
        print(f"\nauto chose: {'; '.join(points['auto']['lines'])}")


if __name__ == "__main__":
    main()
