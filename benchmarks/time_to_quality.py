"""Time to quality: a built-in data set's default run, trained from a fresh run directory by the CLI (`diffkit
train --data D`, with --cond for images; wall time of the whole command: start-up, data, any VAE, training,
checkpoints), then scored. Images as the README's table is: 1,000 samples (classes cycled), the run's own sampler
(dpmpp-2m at 20 steps; shapes: dpmpp-2m-sde at 20, noise at levels <= 3), guidance w = 3 in the run's interval, the judge's FD over its floor, class accuracy, precision (and colour purity
for shapes). Points: the excess energy distance over the data floor of 20,000 samples at dpmpp-2m 20, mean and
standard error over 3 sampling seeds (circle: its mean radius and radius spread too). Prints the target of the
speed issue, scaled to this machine: x 230 / its fp32 matmul peak, and x 1.4 more where the CPU has no native bf16.
The peak (the best of three 0.35 s readings) is read just before each training and just after it; a row's target
takes the higher reading, so a slow spell at one instant does not loosen it (the row prints both readings).

    .venv/bin/python benchmarks/time_to_quality.py digits [--seeds 1] [--flags "--steps 900 --objective flow"]
    .venv/bin/python benchmarks/time_to_quality.py spiral --seeds 4 [--flags "--steps 3000 --lr 2e-3"]
    .venv/bin/python benchmarks/time_to_quality.py t2i [--flags "--latent auto --channels 64 --steps 1500"]

t2i: text to image on shapes (`diffkit train --data shapes --text`; with --latent auto its VAE trains first, in the
same command and the same wall time), scored as benchmarks/text.py does: the 297 training-style prompts, 4 samples
each, dpmpp-2m 20, w = 5 at every noise level, all four attributes read back right.

--flags: extra `diffkit train` flags (to try a recipe before it becomes the default); the table names them.
"""

from __future__ import annotations

import argparse
import math
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from diffkit import machine
from diffkit.data.images import load_images
from diffkit.metrics.images import evaluate_images
from diffkit.metrics.judge import load_or_train_judge
from diffkit.metrics.shapes import colour_purity
from diffkit.runs import load_run, sample_run

sys.path.insert(0, str(Path(__file__).parent))
from paths import data_floor, excess  # noqa: E402  (the 2-D quality measure of benchmarks/paths.py)
from text import sample_prompts, shape_prompt_sets  # noqa: E402  (benchmarks/text.py's prompts and sampling)

# the speed issue's targets on the 2-core Xeon (fp32 matmul ~230 GFLOP/s, AMX-BF16): seconds, and what to reach
TARGETS = {"digits": (60, "accuracy >= 99%, FD <= 1.5x the floor"),
           "mnist5k": (300, "accuracy >= 97%, FD <= 2x the floor, precision >= 0.9"),
           "shapes": (180, "shape accuracy 100%, colour purity >= 95%"),
           "t2i": (600, "all four attributes right >= 95% (training-style prompts), VAE included"),
           "spiral": (5, "the default run trained"), "circle": (5, "the default run trained"),
           "moons": (5, "the default run trained"), "gaussians8": (5, "the default run trained"),
           "checkerboard": (5, "the default run trained")}
POINTS_N, POINTS_SEEDS = 20_000, 3
IMAGE_TARGETS = ("digits", "mnist5k", "shapes")
XEON_FP32 = 230.0
NO_BF16 = 1.4  # the Xeon's bf16 gain, added where a CPU has none


class Target:
    """The speed target in seconds on this machine, from fp32 matmul peak readings taken around each training."""

    def __init__(self, xeon_s: float):
        self.xeon_s, self.before = xeon_s, read_peak()

    def seconds(self, peak: float) -> float:
        return self.xeon_s * XEON_FP32 / peak * (1.0 if machine.cpu_bf16_native() else NO_BF16)

    def start(self) -> None:
        """Read the peak just before a training."""
        self.before = read_peak()

    def end(self) -> tuple[float, str]:
        """Read it just after: (the training's target, from the higher of the two readings; a table cell
        'target (peak before / after)')."""
        after = read_peak()
        target = self.seconds(max(self.before, after))
        return target, f"{target:.{1 if target < 20 else 0}f} ({self.before:.0f} / {after:.0f})"


def read_peak(dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s: the best of three 0.35 s readings (a single reading dipped to a third of the peak at times)."""
    return max(machine.matmul_gflops(dtype, seconds=0.35) for _ in range(3))


def met(data: str, m: dict) -> bool:
    if data not in IMAGE_TARGETS:
        return True  # points: the time is the target; the quality is printed beside the 3000-step recipe's
    ratio = m["fd"] / m["fd_floor"]
    if data == "digits":
        return m["class_accuracy"] >= 0.99 and ratio <= 1.5
    if data == "mnist5k":
        return m["class_accuracy"] >= 0.97 and ratio <= 2.0 and m["precision"] >= 0.9
    return m["class_accuracy"] >= 1.0 and m["purity"] >= 0.95


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", choices=list(TARGETS))
    ap.add_argument("--flags", default="", help="extra `diffkit train` flags (quoted)")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=1, help="training seeds (each a fresh run directory)")
    ap.add_argument("--first-seed", type=int, default=0, help="the first training seed (then +1, ...)")
    ap.add_argument("--keep", help="keep the run directories under this folder")
    a = ap.parse_args()
    print(machine.describe(peaks=False))
    torch.set_num_threads(machine.cores())
    target_s, what = TARGETS[a.data]
    scale = Target(target_s)
    now = scale.seconds(scale.before)
    bf16 = read_peak(torch.bfloat16) if machine.cpu_bf16_native() else float("nan")
    print(f"# fp32 matmul peak {scale.before:.0f} GFLOP/s now (bf16 {bf16:.0f}: the targets do not scale by it), native "
          f"bf16: {machine.cpu_bf16_native()}: targets x {now / target_s:.2f}")
    print(f"# target: {what} in <= {target_s} s on the Xeon = {now:.0f} s here now; each row: its target (the fp32 "
          f"peak before / after its training, GFLOP/s)\n")
    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp())
    bench = text_to_image if a.data == "t2i" else images if a.data in IMAGE_TARGETS else points
    bench(a, root, scale)


def train(a, out: Path, seed: int, cond: bool, scale: Target) -> tuple[float, float, str]:
    """Wall seconds of `diffkit train` from a fresh run directory (the whole command), with its target and the
    target's table cell (Target.end), the peak read just before and just after the command."""
    data = ["--data", "shapes", "--text"] if a.data == "t2i" else ["--data", a.data, *(["--cond"] if cond else [])]
    cmd = [sys.executable, "-m", "diffkit", "train", *data, "--out", str(out),
           "--quiet", "--seed", str(seed), *shlex.split(a.flags)]
    scale.start()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    return (wall, *scale.end())


def images(a, root: Path, scale: Target) -> None:
    data = load_images(a.data)
    judge = load_or_train_judge(data, progress=False)
    labels = np.arange(a.n) % data.num_classes
    print("| data | flags | seed | wall s | target s | FD / floor | accuracy | precision | purity | met |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for seed in range(a.first_seed, a.first_seed + a.seeds):
        out = root / f"{a.data}-{seed}"
        wall, target, cell = train(a, out, seed, True, scale)
        run = load_run(out)
        x = sample_run(run, a.n, seed=seed, cond=labels, guidance=3.0)  # its own sampler (presets.py)
        m = evaluate_images(x, data, judge, labels=labels)
        m["purity"] = colour_purity(x) if a.data == "shapes" else float("nan")
        ok = met(a.data, m) and wall <= target
        print(f"| {a.data} | {a.flags or '(default)'} | {seed} | {wall:.0f} | {cell} | "
              f"{m['fd'] / m['fd_floor']:.2f} | {m['class_accuracy']:.1%} | {m['precision']:.3f} | "
              f"{m['purity']:.3f} | {'yes' if ok else 'no'} |", flush=True)


def text_to_image(a, root: Path, scale: Target) -> None:
    from diffkit.metrics.adherence import prompt_adherence

    prompts = [p for p, _ in shape_prompt_sets()["training-style"]]
    print("| data | flags | seed | wall s | target s | shape | colour | size | position | all four | met |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for seed in range(a.first_seed, a.first_seed + a.seeds):
        out = root / f"t2i-{seed}"
        wall, target, cell = train(a, out, seed, False, scale)
        o = prompt_adherence(sample_prompts(load_run(out), prompts, 4, 5.0), prompts, "shapes")["overall"]
        ok = o["all"] >= 0.95 and wall <= target
        print(f"| t2i | {a.flags or '(default)'} | {seed} | {wall:.0f} | {cell} | {o['shape']:.1%} | "
              f"{o['colour']:.1%} | {o['size']:.1%} | {o['position']:.1%} | {o['all']:.1%} | {'yes' if ok else 'no'} |",
              flush=True)


def points(a, root: Path, scale: Target) -> None:
    floor = data_floor(a.data, POINTS_N)
    print(f"excess energy distance over the data floor ({floor:.2e}), n = {POINTS_N}, dpmpp-2m 20, mean +- se over "
          f"{POINTS_SEEDS} sampling seeds\n")
    print("| data | flags | seed | steps | wall s | target s | excess energy distance | mean radius | radius std | met |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    walls, all_excess, targets = [], [], []
    for seed in range(a.first_seed, a.first_seed + a.seeds):
        out = root / f"{a.data}-{seed}"
        wall, target, cell = train(a, out, seed, False, scale)
        targets.append(target)
        run = load_run(out)
        xs = [sample_run(run, POINTS_N, "dpmpp-2m", 20, seed=s) for s in range(POINTS_SEEDS)]
        v = [excess(x, a.data, POINTS_N, s, floor) for s, x in enumerate(xs)]
        radius = np.linalg.norm(xs[0], axis=1)
        walls.append(wall)
        all_excess += v
        print(f"| {a.data} | {a.flags or '(default)'} | {seed} | {run.config.train.steps} | {wall:.1f} | {cell} | "
              f"{statistics.mean(v):.2e} +- {statistics.stdev(v) / math.sqrt(len(v)):.0e} | "
              + (f"{radius.mean():.4f} | {radius.std():.4f}" if a.data == "circle" else "- | -")
              + f" | {'yes' if wall <= target else 'no'} |", flush=True)
    se = statistics.stdev(all_excess) / math.sqrt(len(all_excess)) if len(all_excess) > 1 else 0.0
    print(f"\nall seeds: wall {statistics.median(walls):.1f} s median ({min(walls):.1f}-{max(walls):.1f}), target "
          f"{min(targets):.1f}-{max(targets):.1f} s; excess {statistics.mean(all_excess):.2e} +- {se:.1e}")


if __name__ == "__main__":
    main()
