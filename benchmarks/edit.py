"""Editing measured on held-out images: inpainting (bottom half regenerated, guided by the image's own class and
not), an img2img strength sweep (mnist5k 3s edited towards 8), inversion's reconstruction against steps, and a
negative prompt on a shapes text run; pictures for docs/edit.md.

    .venv/bin/python benchmarks/edit.py --digits RUN --mnist5k RUN [--text RUN] [--n 500] [--pictures docs]
                                        [--sections inpaint img2img invert negative]

Sampling: dpmpp-2m at 20 steps, the README's reference sampler (inversion: ddim, as it must be). Quality: the data
set's judge (class accuracy; FD of the completions against the held-out test split, beside the floor of real
training images against it); shapes: the attribute reader of metrics/shapes.py.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from diffkit import machine
from diffkit.data.images import load_images
from diffkit.data.shapes import COLOUR_NAMES, SHAPE_NAMES, SIZE_NAMES
from diffkit.metrics.images import evaluate_images
from diffkit.metrics.judge import load_or_train_judge
from diffkit.metrics.shapes import read_shapes
from diffkit.runs import load_run, sample_run
from diffkit.runs.edit import edit_run
from diffkit.runs.interpolate import interpolate_run
from diffkit.runs.invert import invert_run

SAMPLER, STEPS = "dpmpp-2m", 20


def bottom_half(shape) -> np.ndarray:
    m = np.zeros(shape[-2:], np.float32)
    m[shape[-2] // 2:] = 1
    return m


def psnr(a, b) -> float:
    return float(10 * np.log10(1 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


def held_out(data, n: int):
    """n test images drawn at random (seed 0; the split is ordered by class, so its head would be a few classes)."""
    idx = np.random.default_rng(0).permutation(len(data.test))[:n]
    return data.test[idx], data.test_labels[idx]


def inpainting(name: str, run, data, judge, n: int) -> list[list]:
    x, y = held_out(data, n)
    rows = []
    settings = [("inpaint", 3.0, SAMPLER, STEPS, 0), ("inpaint", 1.0, SAMPLER, STEPS, 0),
                ("inpaint", 3.0, "ddpm", 50, 0), ("inpaint, resample 2", 3.0, "ddpm", 50, 2),
                ("plain samples of the same classes", 3.0, SAMPLER, STEPS, None)]
    for what, w, sampler, steps, resample in settings:
        t = time.perf_counter()
        if resample is None:
            out = sample_run(run, len(x), sampler, steps, cond=y.tolist(), guidance=w)
        else:
            out = edit_run(run, x, mask=bottom_half(x.shape), cond=y.tolist(), guidance=w, sampler=sampler,
                           steps=steps, resample=resample)
        seconds = time.perf_counter() - t
        top = x.shape[-2] // 2
        kept = "-" if resample is None else f"{float(np.abs(out[..., :top, :] - x[..., :top, :]).max()):.1e}"
        m = evaluate_images(out, data, judge, labels=y)
        rows.append([name, what, f"{sampler} {steps}", f"{w:g}", len(x), kept, f"{100 * m['class_accuracy']:.1f}%",
                     f"{m['fd']:.3f}", f"{m['fd_floor']:.3f}", f"{m['fd'] / m['fd_floor']:.2f}x",
                     f"{len(x) / seconds:.0f}"])
    return rows


def strength_sweep(run, data, judge, n: int, source: int = 3, target: int = 8) -> list[list]:
    x = data.test[data.test_labels == source][:n]
    base = judge.embed(x)
    rows = []
    for s in (0.2, 0.4, 0.6, 0.8, 1.0):
        out = edit_run(run, x, strength=s, cond=target, guidance=3.0, sampler=SAMPLER, steps=STEPS)
        read = judge.predict(out)
        rows.append([f"{s:.1f}", len(x), f"{100 * (read == target).mean():.1f}%", f"{100 * (read == source).mean():.1f}%",
                     f"{np.linalg.norm(judge.embed(out) - base, axis=1).mean():.3f}",
                     f"{np.abs(out - x).mean():.3f}"])
    return rows


def inversion(run, data, n: int) -> list[list]:
    x, y = held_out(data, n)
    rows = []
    for steps in (10, 20, 50, 100, 200):
        row = [steps]
        for iterations in (0, 1):
            t = time.perf_counter()
            z = invert_run(run, x, steps=steps, iterations=iterations, cond=y.tolist())
            back = sample_run(run, len(x), "ddim", steps, noise=z, cond=y.tolist())
            row += [f"{psnr(back, x):.1f}", f"{time.perf_counter() - t:.1f}"]
        rows.append(row)
    return rows


def negative_prompt(run, n: int, prompt: str = "a large circle") -> list[list]:
    """The prompt at w = 3 alone and with negative prompts: the shares of each colour, circles and large shapes
    read back. "red" is the acceptance's case; the colour the run draws for the prompt (yellow, on the run
    measured) shows what a negative prompt does when the prompt alone draws it."""
    circle, large = SHAPE_NAMES.index("circle"), SIZE_NAMES.index("large")
    rows = []
    for neg in (None, "red", "yellow"):
        out = sample_run(run, n, SAMPLER, STEPS, prompt=prompt, guidance=3.0, negative=neg, seed=0)
        found = read_shapes(out)
        share = {c: 100 * (found["colour"] == k).mean() for k, c in enumerate(COLOUR_NAMES)}
        rows.append([prompt, neg or "-", n, *(f"{share[c]:.1f}%" for c in COLOUR_NAMES),
                     f"{100 * (found['shape'] == circle).mean():.1f}%", f"{100 * (found['size'] == large).mean():.1f}%"])
    return rows


def table(header: list[str], rows: list[list]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |", flush=True)
    print()


def pictures(folder: Path, runs: dict, text) -> None:
    from diffkit.viz.images import image_grid

    digits, mnist = runs["digits"], runs["mnist5k"]
    for name, (run, data) in (("digits", digits), ("mnist5k", mnist)):
        x, y = held_out(data, 12)
        mask = bottom_half(x.shape)
        out = edit_run(run, x, mask=mask, cond=y.tolist(), guidance=3.0, sampler=SAMPLER, steps=STEPS)
        image_grid(np.concatenate([x, np.maximum(0.35 * x, mask), out]), folder / f"edit_inpaint_{name}.png", nrow=12)
    run, data = mnist
    threes = data.test[data.test_labels == 3][:6]
    strip = [threes] + [edit_run(run, threes, strength=s, cond=8, guidance=3.0, sampler=SAMPLER, steps=STEPS)
                        for s in (0.2, 0.4, 0.6, 0.8, 1.0)]
    image_grid(np.stack(strip, 1).reshape(-1, *threes.shape[1:]), folder / "edit_strength.png", nrow=6)
    run, data = digits
    x, y = held_out(data, 12)
    z = invert_run(run, x, steps=50, cond=y.tolist())
    back = sample_run(run, len(x), "ddim", 50, noise=z, cond=y.tolist())
    noise_view = np.clip(0.5 + 0.2 * z, 0, 1)
    image_grid(np.concatenate([x, noise_view, back]), folder / "edit_invert.png", nrow=12)
    rows = [interpolate_run(mnist[0], 8, seeds=(s, s + 1), cond=c, guidance=3.0, sampler="ddim", steps=STEPS)
            for s, c in ((1, 2), (3, 5))]
    rows += [interpolate_run(mnist[0], 8, seed=s, classes=pair, guidance=3.0, sampler="ddim", steps=STEPS)
             for s, pair in ((4, (1, 7)), (6, (3, 8)))]
    image_grid(np.concatenate(rows), folder / "edit_interpolate.png", nrow=8)
    if text is not None:
        plain = sample_run(text, 8, SAMPLER, STEPS, prompt="a large circle", guidance=3.0, seed=0)
        away = sample_run(text, 8, SAMPLER, STEPS, prompt="a large circle", guidance=3.0, negative="red", seed=0)
        image_grid(np.concatenate([plain, away]), folder / "edit_negative.png", nrow=8)
    print(f"pictures in {folder}/edit_*.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--digits", required=True)
    ap.add_argument("--mnist5k", required=True)
    ap.add_argument("--text", help="a shapes text run (the negative-prompt row)")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--pictures", help="folder for the docs' pictures")
    ap.add_argument("--sections", nargs="+", default=["inpaint", "img2img", "invert", "negative"],
                    help="what to measure (default: all)")
    a = ap.parse_args()
    torch.set_num_threads(machine.cores())
    print(machine.describe())
    runs = {}
    for name, path in (("digits", a.digits), ("mnist5k", a.mnist5k)):
        run = load_run(path)
        runs[name] = (run, load_images(name, seed=run.config.train.seed))
    text = load_run(a.text) if a.text else None
    if a.pictures:
        pictures(Path(a.pictures), runs, text)
    if "inpaint" in a.sections:
        print(f"\n## Inpainting: the bottom half of {a.n} held-out images (at random), guided by each image's class\n")
        rows = []
        for name, (run, data) in runs.items():
            rows += inpainting(name, run, data, load_or_train_judge(data, progress=False), a.n)
        table(["data", "what", "sampler", "w", "n", "known pixels, largest change", "judge reads its class", "FD",
               "FD floor", "FD / floor", "images/s"], rows)
    if "img2img" in a.sections:
        run, data = runs["mnist5k"]
        print(f"## img2img: held-out mnist5k 3s edited towards 8 (w = 3, {SAMPLER} {STEPS})\n")
        table(["strength", "n", "read as 8", "read as 3", "judge-feature distance to the input", "mean pixel change"],
              strength_sweep(run, data, load_or_train_judge(data, progress=False), a.n))
    if "invert" in a.sections:
        run, data = runs["digits"]
        print(f"## Inversion: {min(a.n, 200)} held-out digits, each image's class at w = 1, then ddim back\n")
        table(["steps", "PSNR dB (DDIM inversion)", "s", "PSNR dB (1 fixed-point iteration)", "s"],
              inversion(run, data, min(a.n, 200)))
    if text is not None and "negative" in a.sections:
        print(f"## Negative prompts on the shapes text run ({SAMPLER} {STEPS}, w = 3)\n")
        table(["prompt", "negative", "n", *COLOUR_NAMES, "circle", "large"], negative_prompt(text, a.n))


if __name__ == "__main__":
    main()
