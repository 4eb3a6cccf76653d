"""Text to image, measured: how well samples obey their prompts, attribute by attribute.

    .venv/bin/python benchmarks/text.py shapes [--run RUN --vae VAE] [--n 4] [--ws 1,3,5,7.5]
    .venv/bin/python benchmarks/text.py mnist5k [--seconds 300] [--n 30]

shapes: without --run, trains the default run (`diffkit train --data shapes --text`: its VAE on first use in
RUN-vae, then a 64-wide latent U-Net, 2000 steps) and reports its wall time; with --run, reads the training
seconds from the runs' train_log.csv (the VAE's from --vae, or RUN-vae where it is there). Then, at each
guidance scale w (dpmpp-2m, 20 steps, guidance at every noise level), --n samples per prompt (4 --n for the
held-out combinations, which have few prompts) of three prompt sets, each image read back by diffkit.metrics.shapes:
  training-style  one caption per (shape, colour, size, position) from the training templates (positions stated),
                  minus the held-out combinations: 297 prompts, one template and synonyms drawn per prompt
  paraphrases     the same attribute combinations in the held-out PARAPHRASE_TEMPLATES
  held-out combos every magenta square and every small green triangle (never seen in training), training templates
and prints per-attribute accuracy (shape, colour, size, position) and "all four"; then training-style prompts at
the best w with guidance only in the image preset's interval (0.2, 1], against everywhere. A grid of prompts goes to
docs/text_shapes.png.

mnist5k: a VAE (factor 4, 400 steps), then a class-conditional and a text-conditional latent U-Net (the same
preset; the text one adds cross-attention), each trained for the same --seconds of wall time; digit accuracy of
the judge for "the digit N" prompts (text) and class labels (class) at each w, --n per digit. Grid:
docs/text_mnist5k.png.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DOCS = Path(__file__).resolve().parents[1] / "docs"
DIFFKIT = [sys.executable, "-m", "diffkit"]
GRID_PROMPTS = ("a large red circle at the top left", "a small blue triangle at the bottom right",
                "a big yellow square in the centre", "a little cyan disc on the left",
                "a large green triangle at the top", "a small magenta circle in the lower right",
                "there is a small red square at the bottom", "a large magenta square at the top right")


def log_seconds(run) -> float:
    with open(Path(run) / "train_log.csv") as f:
        return float(list(csv.DictReader(f))[-1]["seconds"])


def shape_prompt_sets(seed: int = 0) -> dict[str, list[tuple[str, str]]]:
    """{set: [(prompt, group)]}: group names the held-out combination (else "")."""
    from diffkit.text.captions import (
        PARAPHRASE_TEMPLATES,
        TRAIN_TEMPLATES,
        is_held_out,
        shape_caption,
    )

    rng = np.random.default_rng(seed)
    combos = [(s, c, z, p) for s in range(3) for c in range(6) for z in range(2) for p in range(9)]
    seen = [k for k in combos if not is_held_out([k[0]], [k[1]], [k[2]])[0]]
    held = [k for k in combos if is_held_out([k[0]], [k[1]], [k[2]])[0]]
    return {
        "training-style": [(shape_caption(rng, TRAIN_TEMPLATES, *k), "") for k in seen],
        "paraphrases": [(shape_caption(rng, PARAPHRASE_TEMPLATES, *k), "") for k in seen],
        "held-out combos": [(shape_caption(rng, TRAIN_TEMPLATES, *k),
                             "magenta square" if k[1] == 4 and k[0] == 1 else "small green triangle") for k in held],
    }


def sample_prompts(run, prompts, n: int, w: float):
    from diffkit.runs import sample_run

    return sample_run(run, n, "dpmpp-2m", 20, seed=1, prompt=list(prompts), guidance=w, guidance_interval=None)


def shapes(args) -> None:
    from diffkit.metrics.adherence import prompt_adherence
    from diffkit.metrics.shapes import ATTRIBUTES, adherence
    from diffkit.runs import load_run, sample_run
    from diffkit.runs.vae_beside import vae_beside
    from diffkit.text.captions import shape_prompt_attributes
    from diffkit.viz.images import image_grid

    tmp = Path(tempfile.mkdtemp(prefix="text-bench-"))
    if args.run is None:
        args.run = str(tmp / "shapes-text")
        t0 = time.perf_counter()
        subprocess.run([*DIFFKIT, "train", "--data", "shapes", "--text", "--out", args.run, "--quiet"], check=True)
        print(f"trained VAE + text run in {time.perf_counter() - t0:.0f} s wall")
    if args.vae is None and vae_beside(args.run).is_dir():
        args.vae = str(vae_beside(args.run))
    vae_s = log_seconds(args.vae) if args.vae else 0.0
    print(f"training time (train_log.csv): VAE {vae_s:.0f} s + text run {log_seconds(args.run):.0f} s = "
          f"{(vae_s + log_seconds(args.run)) / 60:.1f} min")
    run = load_run(args.run)
    sets = shape_prompt_sets()
    print(f"\n{'prompts':<16} {'w':>4} {'n':>5} " + " ".join(f"{a:>8}" for a in (*ATTRIBUTES, "all")) + "  img/s")
    best = (None, -1.0)
    for w in args.ws:
        for name, items in sets.items():
            prompts = [p for p, _ in items]
            k = 4 * args.n if name == "held-out combos" else args.n
            t0 = time.perf_counter()
            x = sample_prompts(run, prompts, k, w)
            ips = len(x) / (time.perf_counter() - t0)
            m = prompt_adherence(x, prompts, "shapes")
            o = m["overall"]
            print(f"{name:<16} {w:>4g} {len(x):>5} " + " ".join(f"{o[a]:>8.3f}" for a in (*ATTRIBUTES, "all"))
                  + f"  {ips:5.0f}")
            if name == "training-style" and o["all"] > best[1]:
                best = (w, o["all"])
            if name == "held-out combos":
                for group in ("magenta square", "small green triangle"):
                    rows = [i for i, (_, g) in enumerate(items) if g == group]
                    idx = np.concatenate([np.arange(i * k, (i + 1) * k) for i in rows])
                    wanted = {a: np.repeat([shape_prompt_attributes(prompts[i]).get(a, -1) for i in rows], k)
                              for a in ATTRIBUTES}
                    g = adherence(x[idx], wanted)
                    print(f"  {group:<20} {len(idx):>6} " + " ".join(f"{g[a]:>8.3f}" for a in (*ATTRIBUTES, "all")))
    w = best[0]
    prompts = [p for p, _ in sets["training-style"]]
    x = sample_run(run, args.n, "dpmpp-2m", 20, seed=1, prompt=prompts, guidance=w, guidance_interval=[0.2, 1.0])
    o = prompt_adherence(x, prompts, "shapes")["overall"]
    print(f"{'training-style':<16} {w:>4g} {len(x):>5} " + " ".join(f"{o[a]:>8.3f}" for a in (*ATTRIBUTES, "all"))
          + "  guidance only in the image preset's interval (0.2, 1]")
    x = sample_prompts(run, GRID_PROMPTS, 8, w)
    image_grid(x, DOCS / "text_shapes.png", nrow=8, scale=3)
    print(f"\nbest w on training-style prompts: {w:g} (all four {best[1]:.3f}); grid of {len(GRID_PROMPTS)} prompts x 8 "
          f"at that w -> docs/text_shapes.png (rows: {'; '.join(GRID_PROMPTS)})")


def mnist_model(kind: str, vae: str, seconds: float, n: int, ws, tmp: str, queue) -> None:
    """In a child process: train the class or text latent U-Net for `seconds`, then digit accuracy at each w."""
    import torch

    from diffkit.data.images import load_images
    from diffkit.metrics.judge import load_or_train_judge
    from diffkit.runs import default_config, make_trainer, sample_run, train_run

    torch.set_num_threads(2)

    def config():
        return default_config("mnist5k", cond=kind == "class", latent=vae, text="minilm" if kind == "text" else None)

    probe = make_trainer(config(), Path(tmp) / f"probe-{kind}", progress=False)
    for _ in range(3):
        probe.train_step()
    t0 = time.perf_counter()
    for _ in range(5):
        probe.train_step()
    cfg = config()
    cfg.train.steps = max(50, int(seconds / ((time.perf_counter() - t0) / 5)))
    cfg.train.checkpoint_every = cfg.train.steps
    out = Path(tmp) / f"mnist-{kind}"
    summary = train_run(cfg, out, progress=False)
    judge = load_or_train_judge(load_images("mnist5k"), progress=False)
    digits = np.repeat(np.arange(10), n)
    rows = []
    for w in ws:
        t0 = time.perf_counter()
        if kind == "text":
            x = sample_run(out, n, "dpmpp-2m", 20, seed=1, prompt=[f"the digit {d}" for d in range(10)], guidance=w,
                           guidance_interval=None)
        else:
            x = sample_run(out, len(digits), "dpmpp-2m", 20, seed=1, cond=digits, guidance=w, guidance_interval=None)
        ips = len(x) / (time.perf_counter() - t0)
        rows.append({"w": w, "accuracy": float((judge.predict(x) == digits).mean()), "ips": ips,
                     "grid": x.reshape(10, n, *x.shape[1:])[:, :10].reshape(-1, *x.shape[1:])})
    queue.put({"kind": kind, "steps": summary["steps"], "seconds": summary["seconds"],
               "train_ips": summary["steps"] * cfg.train.batch_size / summary["seconds"], "rows": rows})


def mnist5k(args) -> None:
    from diffkit.viz.images import image_grid

    tmp = tempfile.mkdtemp(prefix="text-bench-")
    vae = args.vae or str(Path(tmp) / "vae")
    if args.vae is None:
        subprocess.run([*DIFFKIT, "train-vae", "--data", "mnist5k", "--out", vae, "--steps", "400", "--quiet"], check=True)
    ctx = mp.get_context("spawn")
    results = []
    for kind in ("class", "text"):  # one after the other: two torch processes on 2 cores slow each other
        queue = ctx.Queue()
        p = ctx.Process(target=mnist_model, args=(kind, vae, args.seconds, args.n, args.ws, tmp, queue))
        p.start()
        results.append(queue.get())
        p.join()
    print(f"\nmnist5k latent U-Net, {args.seconds:g} s of training each; digit accuracy of the judge, {args.n} per digit")
    print(f"{'conditioning':<14} {'steps':>6} {'img/s':>6} " + " ".join(f"{'w=' + format(w, 'g'):>7}" for w in args.ws))
    for r in results:
        print(f"{r['kind']:<14} {r['steps']:>6} {r['train_ips']:>6.0f} " +
              " ".join(f"{row['accuracy']:>7.3f}" for row in r["rows"]))
    text = results[1]
    best = max(text["rows"], key=lambda row: row["accuracy"])
    image_grid(best["grid"], DOCS / "text_mnist5k.png", nrow=10, scale=2)
    print(f"best w for 'the digit N': {best['w']:g} ({best['accuracy']:.3f}); rows 0..9 -> docs/text_mnist5k.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", choices=["shapes", "mnist5k"])
    p.add_argument("--run", help="shapes: a trained text run (else the recipe is trained here)")
    p.add_argument("--vae", help="the VAE run behind --run (its training time is counted), or mnist5k's VAE to reuse")
    p.add_argument("--n", type=int, help="samples per prompt (shapes, default 4) or per digit (mnist5k, default 30)")
    p.add_argument("--ws", default="1,3,5,7.5", help="guidance scales")
    p.add_argument("--seconds", type=float, default=300, help="mnist5k: training seconds per model")
    args = p.parse_args()
    from diffkit import machine

    print(machine.describe())
    args.ws = [float(w) for w in args.ws.split(",")]
    args.n = args.n or (4 if args.data == "shapes" else 30)
    (shapes if args.data == "shapes" else mnist5k)(args)


if __name__ == "__main__":
    main()
