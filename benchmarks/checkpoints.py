"""What a checkpoint costs: save time and size for the default 2-D, digits and mnist5k models, and its share of
training time at the default interval (save time / (checkpoint_every x measured step time)).

    .venv/bin/python benchmarks/checkpoints.py [--data spiral,digits,mnist5k] [--saves 5] [--steps 20]

Run it alone: two torch processes on 2 cores slow each other many times over.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from diffkit import machine
from diffkit.machine import intra_op_threads
from diffkit.runs import default_config, make_trainer
from diffkit.store.rundir import MODEL, STATE, STATE_DIR, checkpoint_steps, step_dir


def measure(spec: str, saves: int, steps: int) -> dict:
    cfg = default_config(spec, cond=spec != "spiral")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(cfg, Path(tmp) / "run", progress=False)
        trainer.run_dir.mkdir(parents=True)
        from diffkit.store.rundir import save_config

        save_config(trainer.run_dir, trainer.config)
        with intra_op_threads(trainer.settle().threads):  # what training here runs with (auto: decided now)
            for _ in range(3):  # warm-up
                trainer.train_step()
            t0 = time.perf_counter()
            for _ in range(steps):
                trainer.train_step()
            step_s = (time.perf_counter() - t0) / steps
        times = []
        for _ in range(saves):
            trainer.step += 1  # a new checkpoint folder each time
            t0 = time.perf_counter()
            trainer.save()
            times.append(time.perf_counter() - t0)
        newest = checkpoint_steps(trainer.run_dir)[-1]
        model_mb = (trainer.run_dir / MODEL).stat().st_size / 2**20
        state_mb = (step_dir(trainer.run_dir, newest) / STATE).stat().st_size / 2**20
        kept = len(list((trainer.run_dir / STATE_DIR).iterdir()))
    save_s = sorted(times)[len(times) // 2]
    every = cfg.train.checkpoint_every
    return {"data": spec, "params": sum(p.numel() for p in trainer.network.parameters()), "step_ms": step_s * 1e3,
            "save_ms": save_s * 1e3, "model_mib": model_mb, "state_mib": state_mb, "kept": kept, "every": every,
            "overhead_pct": 100 * save_s / (every * step_s)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="spiral,digits,mnist5k")
    p.add_argument("--saves", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    a = p.parse_args()
    torch.set_num_threads(2)
    print(machine.describe())
    rows = [measure(spec, a.saves, a.steps) for spec in a.data.split(",")]
    print(f"{'data':<9} {'params':>9} {'step ms':>8} {'save ms':>8} {'model MiB':>10} {'state MiB':>10} "
          f"{'every':>6} {'overhead':>9}")
    for r in rows:
        print(f"{r['data']:<9} {r['params']:>9,} {r['step_ms']:>8.1f} {r['save_ms']:>8.1f} {r['model_mib']:>10.2f} "
              f"{r['state_mib']:>10.2f} {r['every']:>6} {r['overhead_pct']:>8.2f}%")
    print(f"(median of {a.saves} saves; each writes train_state/step-N/ with a manifest, model.safetensors and "
          f"manifest.json, fsynced; {rows[0]['kept']} checkpoint folders kept)")


if __name__ == "__main__":
    main()
