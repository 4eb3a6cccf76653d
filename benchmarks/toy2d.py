"""Train `circle` and `spiral` with the default settings; print training time and sample quality.

    .venv/bin/python benchmarks/toy2d.py [--datasets circle spiral] [--n 4000] [--json out.json]

Targets (issue 2, on a 2-core CPU): circle trains in <= 15 s with mean radius within 0.01 of 1 and
radius std <= 0.05; spiral trains in <= 30 s with energy distance <= 0.005 against fresh data.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import torch

from diffkit import machine
from diffkit.runs import eval_samples, load_run, sample_run, train_config, train_run


def bench(dataset: str, n: int, root: str) -> list[dict]:
    run_dir = f"{root}/{dataset}"
    t0 = time.perf_counter()
    train_run(train_config({"data": dataset}), run_dir, progress=False)  # `diffkit train --data D`'s run
    train_s = time.perf_counter() - t0
    run = load_run(run_dir)
    rows = []
    for sampler, steps in (("ddpm", 1000), ("ddim", 50)):
        t0 = time.perf_counter()
        x = sample_run(run, n, sampler, steps, seed=0)
        sample_s = time.perf_counter() - t0
        rows.append({"dataset": dataset, "train_s": train_s, "sampler": sampler, "steps": steps, "sample_s": sample_s,
                     **eval_samples(x, dataset)})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["circle", "spiral"])
    ap.add_argument("--n", type=int, default=4000, help="samples per sampler (and fresh reference points)")
    ap.add_argument("--json", help="also write the rows to this file")
    a = ap.parse_args()
    print(machine.describe())
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, n = {a.n}")
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for d in a.datasets:
            rows += bench(d, a.n, root)
    head = (f"{'dataset':<8} {'train s':>7} {'sampler':<7} {'steps':>5} {'sample s':>8} {'energy':>8} {'floor':>8} "
            f"{'MMD':>8} {'floor':>8} {'SWD':>7} {'floor':>7} {'r mean':>7} {'r std':>7}")
    print(head)
    print("-" * len(head))
    for r in rows:
        radius = f"{r['radius_mean']:>7.4f} {r['radius_std']:>7.4f}" if "radius_mean" in r else f"{'-':>7} {'-':>7}"
        print(f"{r['dataset']:<8} {r['train_s']:>7.1f} {r['sampler']:<7} {r['steps']:>5} {r['sample_s']:>8.2f} "
              f"{r['energy']:>8.5f} {r['energy_floor']:>8.5f} {r['mmd']:>8.5f} {r['mmd_floor']:>8.5f} "
              f"{r['swd']:>7.4f} {r['swd_floor']:>7.4f} {radius}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
