"""The README's image pictures from a trained conditional image run: the guidance sweep (same noise, w in
{0, 1, 3, 7.5}, one row per class) and the reverse process (x0_hat at five of the 20 dpmpp-2m steps, w = 3).

    .venv/bin/python benchmarks/image_pictures.py RUN PREFIX      # e.g. runs/digits docs/digits
"""
import sys

import numpy as np
import torch

from diffkit import machine
from diffkit.runs import load_run, sample_run, to_data
from diffkit.viz.images import guidance_sweep, reverse_strip


def main() -> None:
    torch.set_num_threads(2)
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(machine.describe(peaks=False))
    run, prefix = load_run(sys.argv[1]), sys.argv[2]
    K, names = run.config.network.num_classes, run.config.fitted.class_names
    classes = np.arange(K)
    sweep = {w: sample_run(run, K, "dpmpp-2m", 20, seed=1, cond=classes, guidance=w) for w in (0.0, 1.0, 3.0, 7.5)}
    print(guidance_sweep(sweep, f"{prefix}_guidance.png", names, title="same noise, guidance scale w"))
    frames = []
    sample_run(run, K, "dpmpp-2m", 20, seed=1, cond=classes, guidance=3.0,
               callback=lambda step: frames.append(to_data(run, step.x0_hat)))
    shown = [0, 4, 9, 14, 19]
    print(reverse_strip([frames[i] for i in shown], [f"step {i + 1}" for i in shown], f"{prefix}_reverse.png",
                        "x0_hat along dpmpp-2m (20 steps, w = 3)"))


if __name__ == "__main__":
    main()
