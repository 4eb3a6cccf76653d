"""LoRA fine-tuning measured: a mnist5k base adapted to another style (scikit-learn's digits, upscaled to 28x28),
from 100 training images, against a full fine-tune and training from scratch on the same 100 images at equal wall
time; quality judged on held-out digits of the new style (FD in the features of a judge trained on that style, and
its reading of each sample's class, guided at w = 3).

    .venv/bin/python benchmarks/lora.py --base MNIST5K_RUN [--steps 300] [--targets attention attention+embed]
                                        [--lr 2e-2 ...] [--n 1000] [--work DIR]

Writes DIR/digits28-train.npz (the 125 images whose 100-image train split the runs learn from) and
DIR/digits28-heldout.npz (every other digit: the judge's data and the reference), and one run per row.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from diffkit import machine
from diffkit.data.images import load_images
from diffkit.metrics.images import evaluate_images
from diffkit.metrics.judge import load_or_train_judge
from diffkit.nn import lora
from diffkit.runs import load_run, read_config, sample_run, train_run
from diffkit.runs.adapters import is_lora
from diffkit.runs.finetune import finetune_config
from diffkit.store.manifest import sha256
from diffkit.store.rundir import MODEL

SIDE = 28


def upscaled_digits(work: Path, train_images: int = 125) -> tuple[str, str]:
    """scikit-learn's 8x8 digits, bilinearly upscaled to 28x28 with a dark border as MNIST has, split in two files."""
    from PIL import Image

    data = load_images("digits")
    x = np.concatenate([data.train, data.test])
    y = np.concatenate([data.train_labels, data.test_labels])
    big = np.stack([np.asarray(Image.fromarray((img[0] * 255).astype(np.uint8)).resize((20, 20), Image.BILINEAR))
                    for img in x]).astype(np.float32) / 255
    out = np.zeros((len(x), 1, SIDE, SIDE), np.float32)
    out[:, 0, 4:24, 4:24] = big
    order = np.random.default_rng(0).permutation(len(x))
    files = []
    for name, idx in (("train", order[:train_images]), ("heldout", order[train_images:])):
        path = work / f"digits28-{name}.npz"
        np.savez(path, x=out[idx], y=y[idx])
        files.append(str(path))
    return files[0], files[1]


def full_finetune(base: str, data: str, out: Path, steps: int, lr: float) -> None:
    """Every weight of the base trains on the new data (`diffkit finetune --full`)."""
    train_run(finetune_config(base, data, full=True, train_steps=steps, lr=lr), out, progress=False, overwrite=True)


def scratch(base: str, data: str, out: Path, steps: int, lr: float) -> None:
    """The base's recipe from random weights on the new data."""
    config = finetune_config(base, data, train_steps=steps, lr=lr)
    config.parent = None
    train_run(config, out, progress=False, overwrite=True)


def step_seconds(make, probe: int = 15) -> float:
    t = time.perf_counter()
    make(probe)
    return (time.perf_counter() - t) / probe


def score(run_dir, heldout, judge, n: int) -> dict:
    run = load_run(run_dir)
    labels = np.arange(n) % 10
    x = sample_run(run, n, "dpmpp-2m", 20, cond=labels.tolist(), guidance=3.0, seed=1)
    return evaluate_images(x, heldout, judge, labels=labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--steps", type=int, default=300, help="the LoRA runs' steps (the others get equal wall time)")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--targets", nargs="+", default=["attention", "attention+embed"])
    ap.add_argument("--lr", type=float, nargs="+", default=[2e-2])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--work", default="/tmp/diffkit-lora")
    a = ap.parse_args()
    torch.set_num_threads(machine.cores())
    print(machine.describe())
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    train_file, heldout_file = upscaled_digits(work)
    heldout = load_images(heldout_file)
    judge = load_or_train_judge(heldout, progress=False)
    base_sha = sha256((Path(a.base) / MODEL).read_bytes())
    base_lr = read_config(a.base).train.lr
    rows = [["base (no fine-tune)", "-", "-", "-", score(a.base, heldout, judge, a.n)]]
    budget = None
    for targets in a.targets:
        for lr in a.lr:
            out = work / f"lora-{targets}-{lr:g}"
            t = time.perf_counter()
            train_run(finetune_config(a.base, train_file, rank=a.rank, targets=targets, train_steps=a.steps, lr=lr),
                      out, progress=False, overwrite=True)
            seconds = time.perf_counter() - t
            budget = max(budget or 0.0, seconds)  # the others get the longest LoRA run's time
            network = lora.attach(load_run(a.base, fast=False).network, a.rank, targets)
            adapters, params = lora.count(network)
            assert is_lora(read_config(out))
            rows.append([f"LoRA r={a.rank} {targets}, lr {lr:g}", f"{100 * adapters / params:.2f}%", a.steps,
                         f"{seconds:.0f}", score(out, heldout, judge, a.n)])
    for name, make in (("full fine-tune", full_finetune), ("from scratch on the 100", scratch)):
        lr = base_lr
        per = step_seconds(lambda k, make=make, probe=work / f"probe-{name[:4]}", lr=lr: make(a.base, train_file, probe, k, lr))
        steps = max(1, int(budget / per))
        out = work / name.split()[0]
        t = time.perf_counter()
        make(a.base, train_file, out, steps, lr)
        rows.append([name, "100%", steps, f"{time.perf_counter() - t:.0f}", score(out, heldout, judge, a.n)])
    assert sha256((Path(a.base) / MODEL).read_bytes()) == base_sha, "the base run's weights changed"
    print(f"\nbase {a.base}: model.safetensors unchanged (sha256 {base_sha[:16]}...)")
    print(f"new style: {train_file} (its 100-image train split), judged on {heldout_file}'s held-out split "
          f"({len(heldout.test)} images; the judge reads them right {100 * judge.accuracy(heldout.test, heldout.test_labels):.1f}%)\n")
    print("| run | trained parameters | steps | s | FD | FD floor | FD / floor | judge reads the asked class |")
    print("|---|---|---|---|---|---|---|---|")
    for name, share, steps, seconds, m in rows:
        print(f"| {name} | {share} | {steps} | {seconds} | {m['fd']:.3f} | {m['fd_floor']:.3f} | "
              f"{m['fd'] / m['fd_floor']:.2f}x | {100 * m['class_accuracy']:.1f}% |", flush=True)


if __name__ == "__main__":
    main()
