"""Pixel space against latent space, U-Net against DiT, at equal wall time (Rombach et al. 2022; Peebles &
Xie 2023), on mnist5k and shapes64.

    .venv/bin/python benchmarks/latent.py [--data shapes64,mnist5k] [--seconds 240] [--n 200] [--vae-steps 400]

Per data set: a VAE (`diffkit train-vae` defaults, factor 4, --vae-steps steps) and its reconstruction
figures (PSNR, the judge's FD and accuracy on the test split); then four conditional models, each trained for
the same --seconds of wall time (the step count is set from a timed probe so the learning-rate schedule ends
on time): the pixel U-Net and the latent U-Net share one architecture (the 3-level image preset), the pixel
and latent DiT one DiT of about the U-Net's parameter count (the preset's patch size for each input). Each is scored on --n guided samples (dpmpp-2m, 20 steps, w = 3 in the guidance
interval): training and sampling images/s, classifier-feature FD (and its floor at the same n), guided class
accuracy, colour purity (shapes), parameters and peak memory (each model trains in its own process).
A picture of samples side by side goes to docs/latent_<data>.png.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from diffkit import machine

DOCS = Path(__file__).resolve().parents[1] / "docs"
MODELS = ("pixel U-Net", "latent U-Net", "pixel DiT", "latent DiT")


def configure(spec: str, model: str, vae_run: str):
    from diffkit.nn.unet import UNetConfig
    from diffkit.runs import default_config

    latent = vae_run if model.startswith("latent") else None
    net = "dit" if model.endswith("DiT") else "unet"
    # ddpm in both spaces, so the rows differ only in the space (mnist5k's pixel default is flow matching)
    cfg = default_config(spec, cond=True, latent=latent, net=net, dit_size="small", objective="ddpm")
    if net == "unet":  # one architecture for both spaces: the 3-level image preset (0.88M parameters)
        cfg.network = UNetConfig(in_channels=cfg.network.in_channels, channels=32, channel_mult=(1, 1, 2),
                                 attention_levels=(2,), num_classes=cfg.network.num_classes)
    else:  # a DiT of about the U-Net's size: width 96, 6 blocks, 4 heads (1.0M parameters)
        cfg.network.width, cfg.network.depth, cfg.network.heads = 96, 6, 4
    return cfg


def one_model(spec: str, model: str, vae_run: str, seconds: float, n: int, tmp: str, queue) -> None:
    """Runs in a child process: probe the step time, train for `seconds`, sample, score; puts a result row."""
    from diffkit.data.images import load_images
    from diffkit.metrics.images import evaluate_images
    from diffkit.metrics.judge import load_or_train_judge
    from diffkit.metrics.shapes import colour_purity
    from diffkit.runs import make_trainer, sample_run, train_run

    torch.set_num_threads(2)
    cfg = configure(spec, model, vae_run)
    probe = make_trainer(configure(spec, model, vae_run), Path(tmp) / f"{spec}-probe", progress=False)
    for _ in range(3):
        probe.train_step()
    t0 = time.perf_counter()
    for _ in range(5):
        probe.train_step()
    per_step = (time.perf_counter() - t0) / 5
    cfg.train.steps = max(50, int(seconds / per_step))
    cfg.train.checkpoint_every = cfg.train.steps
    out = Path(tmp) / f"{spec}-{model.replace(' ', '-')}"
    summary = train_run(cfg, out, progress=False)
    params = sum(p.numel() for p in probe.network.parameters())
    data = load_images(spec)
    judge = load_or_train_judge(data, progress=False)
    labels = np.arange(n) % data.num_classes
    t0 = time.perf_counter()
    x = sample_run(out, n, "dpmpp-2m", 20, seed=0, cond=labels, guidance=3.0)
    sample_s = time.perf_counter() - t0
    m = evaluate_images(x, data, judge, labels=labels)
    row = {"model": model, "params": params, "steps": summary["steps"], "train_s": summary["seconds"],
           "train_ips": summary["steps"] * cfg.train.batch_size / summary["seconds"], "sample_ips": n / sample_s,
           "fd": m["fd"], "fd_floor": m["fd_floor"], "accuracy": m["class_accuracy"],
           "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
           "grid": x[np.concatenate([np.flatnonzero(labels == c)[:6] for c in range(data.num_classes)])]}
    if spec.startswith("shapes"):
        row["purity"] = colour_purity(x)
    queue.put(row)


def picture(spec: str, rows: list, classes: int) -> Path:
    from PIL import Image, ImageDraw

    from diffkit.viz.images import _tile_grid, to_uint8_tiles

    panels = []
    for r in rows:
        tiles = to_uint8_tiles(r["grid"], scale=2 if r["grid"].shape[-1] >= 32 else 4)
        panel = Image.fromarray(_tile_grid(tiles, 6, classes))
        canvas = Image.new("RGB", (panel.width, panel.height + 18), "white")
        canvas.paste(panel.convert("RGB"), (0, 18))
        ImageDraw.Draw(canvas).text((4, 3), r["model"], fill="black")
        panels.append(canvas)
    sheet = Image.new("RGB", (sum(p.width for p in panels) + 8 * (len(panels) - 1), max(p.height for p in panels)), "white")
    x = 0
    for p in panels:
        sheet.paste(p, (x, 0))
        x += p.width + 8
    path = DOCS / f"latent_{spec}.png"
    sheet.save(path)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="shapes64,mnist5k")
    p.add_argument("--seconds", type=float, default=240)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--vae-steps", type=int, default=400)
    a = p.parse_args()
    print(machine.describe())
    from diffkit.cli import main as cli
    from diffkit.data.images import load_images
    from diffkit.runs import vae_report

    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        for spec in a.data.split(","):
            vae_run = str(Path(tmp) / f"vae-{spec}")
            t0 = time.perf_counter()
            assert cli(["train-vae", "--data", spec, "--out", vae_run, "--steps", str(a.vae_steps), "--quiet",
                        "--json"]) == 0
            vae_s = time.perf_counter() - t0
            rep = vae_report(vae_run)
            print(f"\n# {spec}: VAE f=4, {a.vae_steps} steps ({vae_s:.0f} s with its report): latents "
                  f"{rep['latent_shape']}, test PSNR {rep['psnr']:.2f} dB, reconstructions FD {rep['fd']:.3f} "
                  f"(floor {rep['fd_floor']:.3f}), judge accuracy {rep['accuracy']:.1%} "
                  f"(originals {rep['judge_accuracy']:.1%})", flush=True)
            print(f"{'model':<14} {'params':>8} {'steps':>6} {'train img/s':>11} {'sample img/s':>12} "
                  f"{'FD (floor)':>15} {'acc w=3':>8} {'purity':>7} {'peak GiB':>8}", flush=True)
            rows = []
            for model in MODELS:
                queue = ctx.Queue()
                proc = ctx.Process(target=one_model, args=(spec, model, vae_run, a.seconds, a.n, tmp, queue))
                proc.start()
                while True:  # a child that dies must not hang the benchmark
                    try:
                        r = queue.get(timeout=5)
                        break
                    except Exception:
                        if not proc.is_alive():
                            raise SystemExit(f"{model} on {spec} failed (exit {proc.exitcode}); see above")
                proc.join()
                rows.append(r)
                print(f"{model:<14} {r['params'] / 1e6:>7.2f}M {r['steps']:>6} {r['train_ips']:>11.0f} "
                      f"{r['sample_ips']:>12.1f} {r['fd']:>7.3f} ({r['fd_floor']:.3f}) {r['accuracy']:>8.1%} "
                      f"{r.get('purity', float('nan')):>7.1%} {r['peak_gib']:>8.2f}", flush=True)
            base = {r["model"]: r for r in rows}
            for space in ("U-Net", "DiT"):
                px, lt = base[f"pixel {space}"], base[f"latent {space}"]
                print(f"# latent / pixel {space}: training {lt['train_ips'] / px['train_ips']:.1f}x the images/s, "
                      f"sampling {lt['sample_ips'] / px['sample_ips']:.1f}x", flush=True)
            print(f"# picture: {picture(spec, rows, load_images(spec).num_classes)}", flush=True)


if __name__ == "__main__":
    main()
