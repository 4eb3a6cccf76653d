"""Images per second: a run sampled by diffkit (torch) and by its ONNX export's NumPy + onnxruntime sampler, from
the same x_T at the same sampler, steps and guidance, with the largest difference between the two.

    .venv/bin/python benchmarks/onnx_speed.py RUN [RUN ...] [--n 256] [--sampler dpmpp-2m] [--steps 20] [--guidance 3]

Each figure is the fastest of --repeats timed runs after one warm-up; torch runs on all cores in fp32 (what the
export holds), onnxruntime with its default threads.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from diffkit import machine
from diffkit.runs import load_run, sample_run
from diffkit.runs.export import export_onnx

sys.path.insert(0, str(Path(__file__).parent))
from roofline import fastest  # noqa: E402  (the fastest of a few timed calls)


def exported_sampler(folder: Path):
    spec = importlib.util.spec_from_file_location("exported_sample", folder / "sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Exported(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--sampler", default="dpmpp-2m")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=3.0, help="class runs: w in the run's interval")
    ap.add_argument("--prompts", nargs="+", default=["a red circle", "a small blue square"],
                    help="text runs: the prompts exported and sampled (n / len(prompts) samples each)")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(machine.cores())
    print(machine.describe())
    print(f"\n{a.n} samples, {a.sampler} at {a.steps} steps\n")
    print("| run | shape | guidance | diffkit (torch fp32) samples/s | ONNX (onnxruntime + NumPy) samples/s | "
          "ratio | largest difference |")
    print("|---|---|---|---|---|---|---|")
    for path in a.runs:
        run = load_run(path, precision="fp32")
        classes = run.config.network.num_classes
        text = bool(run.config.data.text)
        shape = list(run.config.fitted.shape)
        noise = np.random.default_rng(0).standard_normal((a.n, *shape), dtype=np.float32)
        if text:  # n / len(prompts) samples of each prompt, in the order sample_run draws them
            per = a.n // len(a.prompts)
            noise, labels = noise[:per * len(a.prompts)], np.repeat(np.arange(len(a.prompts)), per)
            kwargs = {"prompt": a.prompts, "guidance": a.guidance}
        else:
            labels = np.arange(a.n) % classes if classes else None
            kwargs = {} if labels is None else {"cond": labels.tolist(), "guidance": a.guidance}
        w = a.guidance if classes or text else 1.0
        n = len(noise)
        with tempfile.TemporaryDirectory() as tmp:
            export_onnx(path, Path(tmp) / "onnx", a.sampler, a.steps, prompts=a.prompts if text else None)
            exported = exported_sampler(Path(tmp) / "onnx")
            count = per if text else n
            t_torch, ours = fastest(lambda run=run, count=count, noise=noise, kwargs=kwargs: sample_run(
                run, count, a.sampler, a.steps, noise=noise, **kwargs), a.repeats)
            t_onnx, theirs = fastest(lambda exported=exported, noise=noise, labels=labels, w=w: exported.sample(
                noise, labels, w), a.repeats)
        print(f"| {path} | {shape} | {w:g} | {n / t_torch:.0f} | {n / t_onnx:.0f} | {t_torch / t_onnx:.2f}x | "
              f"{np.abs(ours - theirs).max():.1e} |", flush=True)


if __name__ == "__main__":
    main()
