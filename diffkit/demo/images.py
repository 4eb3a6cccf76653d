"""`diffkit demo --data digits|mnist5k|shapes`: train the default class-conditional U-Net, sample with
guidance, score the samples with the data's judge and draw the image story."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.images import load_images
from ..runs import default_config, eval_image_samples, load_run, sample_run, to_data
from ..schedule import NoiseSchedule
from ..store.trainlog import LOG, read_log
from .points import train_demo_run

GUIDANCE_SWEEP = (0.0, 1.0, 3.0, 7.5)
FORWARD_T = (-1, 100, 250, 500, 750, 999)  # t = -1: x_0 itself


def table(rows: list[dict]) -> str:
    head = f"{'samples':<22} {'FD':>7} {'FD floor':>9} {'precision':>9} {'recall':>7} {'class acc':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        acc = f"{r['class_accuracy']:>9.3f}" if "class_accuracy" in r else f"{'-':>9}"
        lines.append(f"{r['name']:<22} {r['fd']:>7.3f} {r['fd_floor']:>9.3f} {r['precision']:>9.3f} "
                     f"{r['recall']:>7.3f} {acc}")
    return "\n".join(lines)


def run_image_demo(out="demo_out", data: str = "digits", steps: int | None = None, n: int = 1000,
                   progress: bool = True, echo=print) -> dict:
    from ..viz import images as pics

    out = Path(out)
    run_dir, pic_dir = out / "run", out / "plots"
    summary = train_demo_run(default_config(data, cond=True), run_dir, steps, "a class-conditional U-Net",
                             progress, echo)
    run = load_run(run_dir)
    images = load_images(data)
    K = run.config.network.num_classes
    labels = np.arange(n) % K
    rows = []
    for w in (1.0, 3.0):
        x = sample_run(run, n, "dpmpp-2m", 20, seed=0, cond=labels, guidance=w)
        m = eval_image_samples(x, data, labels=labels, progress=progress)
        rows.append({"name": f"dpmpp-2m-20, w = {w:g}", **m})
        if w == 3.0:
            guided = x
    echo(table(rows))
    echo("FD: Frechet distance on the judge CNN's penultimate features (not Inception FID); "
         "floor: train vs held-out test images")

    names = run.config.fitted.class_names
    per_class = np.concatenate([np.flatnonzero(labels == c)[:8] for c in range(K)])
    frames = []
    one_per_class = np.arange(K)
    x = sample_run(run, K, "dpmpp-2m", 20, seed=1, cond=one_per_class, guidance=3.0,
                   callback=lambda step: frames.append(to_data(run, step.x)))
    sweep = {w: sample_run(run, K, "dpmpp-2m", 20, seed=1, cond=one_per_class, guidance=w) for w in GUIDANCE_SWEEP}
    T = run.config.schedule.num_timesteps
    schedules = {"linear": NoiseSchedule.from_name("linear", T), "cosine": NoiseSchedule.from_name("cosine", T)}
    shown = [0, len(frames) // 4, len(frames) // 2, 3 * len(frames) // 4, len(frames) - 1]
    written = [
        pics.class_grid(guided[per_class], labels[per_class], pic_dir / "samples_by_class.png", names),
        pics.forward_strip(images.test[0], schedules, list(FORWARD_T), pic_dir / "forward.png"),
        pics.reverse_strip([frames[i] for i in shown], [f"step {i + 1}" for i in shown], pic_dir / "reverse.png",
                           "reverse process (dpmpp-2m, 20 steps, w = 3): noise -> digits"),
        pics.reverse_gif(frames, pic_dir / "reverse.gif", captions=[f"step {i + 1}/{len(frames)}" for i in range(len(frames))]),
        pics.guidance_sweep(sweep, pic_dir / "guidance.png", names, title="same noise, guidance scale w"),
    ]
    from ..viz.plots import loss_curve

    written.append(loss_curve(read_log(run_dir / LOG), pic_dir / "loss.png"))
    np.save(out / "samples_w3.npy", guided)
    echo("pictures: " + ", ".join(str(p) for p in written))
    return {"rows": rows, "train_seconds": summary["seconds"], "pictures": [str(p) for p in written], "final": x}
