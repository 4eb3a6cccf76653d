"""Sample an exported diffkit run with NumPy and onnxruntime only (no torch, no diffkit): the sampler that
`diffkit export --format onnx` writes beside network.onnx as sample.py.

    python sample.py --noise X_T.npy --out SAMPLES.npy [--class C | --labels L.npy] [--guidance W]
    python sample.py --n 16 --seed 0 --out SAMPLES.npy          # x_T from NumPy's generator
    python sample.py --noise X_T.npy --prompt "the digit 4" --guidance 5 --out S.npy   # a text run's exported prompt

plan.json holds the run's steps, precomputed by diffkit in float64 for the sampler and step count it was
exported with. Every deterministic sampler it exports (DDIM, DPM-Solver++(2M) and (3M)) is, per step, linear in
the current x and the newest x0_hat's, and x0_hat is linear in x and the network's output, so one step is:

    out = network(s_in x, t)                      (guided: u + w (c - u) of one batched call on cond and null)
    x0  = c_x x + c_out out                       (clipped to [-clip, clip] where the run clips)
    x   = w_x x + sum_j w_j x0_j                  (over the newest x0_hat's, oldest first)

and the samples go back to the data's coordinates by the run's normalizer (images: clipped to [0, 1]), or, for a
latent run, through its VAE decoder (decoder.onnx) to pixels in [0, 1].
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort


class Exported:
    def __init__(self, folder):
        folder = Path(folder)
        self.plan = json.loads((folder / "plan.json").read_text())
        options = ort.SessionOptions()
        self.session = ort.InferenceSession(str(folder / "network.onnx"), options, providers=["CPUExecutionProvider"])
        # the graph's own inputs: a network that ignores the prompt's mask (Stable Diffusion's U-Net) has none for it
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.texts = dict(np.load(folder / "prompts.npz")) if self.plan.get("prompts") else None  # text runs
        decoder = self.plan.get("decoder")  # a latent run: its VAE decoder, diffusion space -> pixels in [0, 1]
        self.decoder = None if decoder is None else ort.InferenceSession(str(folder / decoder), options,
                                                                          providers=["CPUExecutionProvider"])

    def network(self, x, t, labels):
        """labels: class ids, or for a text run rows of prompts.npz (the null prompt is its last row)."""
        feed = {"x": x.astype(np.float32), "t": t.astype(np.float32)}
        if self.texts is not None:
            feed["tokens"], feed["mask"] = self.texts["tokens"][labels], self.texts["mask"][labels]
        elif labels is not None:
            feed["cond"] = labels.astype(np.int64)
        return self.session.run(["prediction"], {k: v for k, v in feed.items() if k in self.inputs})[0]

    def _output(self, x, t, labels, w: float):
        if labels is None or w == 1.0:
            return self.network(x, t, labels)
        null = np.full_like(labels, len(self.texts["mask"]) - 1 if self.texts is not None else self.plan["null_class"])
        both = self.network(np.concatenate([x, x]), np.concatenate([t, t]), np.concatenate([labels, null]))
        cond, uncond = both[: len(x)], both[len(x):]
        return uncond + np.float32(w) * (cond - uncond)

    def sample(self, noise: np.ndarray, labels: np.ndarray | None = None, guidance: float = 1.0) -> np.ndarray:
        """Samples in the data's coordinates from x_T = noise (float32 [N, *shape])."""
        plan = self.plan
        if list(noise.shape[1:]) != plan["shape"] or noise.dtype != np.float32:
            raise SystemExit(f"error: the noise must be float32 [N, {', '.join(map(str, plan['shape']))}], got "
                             f"{noise.dtype} {list(noise.shape)}")
        if self.texts is not None:
            if labels is None:  # no prompt: the null prompt
                labels = np.full(len(noise), len(self.texts["mask"]) - 1, np.int64)
        elif (labels is None) != (plan["num_classes"] == 0):
            raise SystemExit("error: " + ("this run is class-conditional; give --class or --labels" if labels is None
                                          else "this run is unconditional; drop --class / --labels"))
        x, history = noise, []
        for step in plan["steps"]:
            t = np.full(len(x), step["t"], np.float32)
            out = self._output(x * np.float32(step["s_in"]), t, labels, guidance if step["guided"] else 1.0)
            x0 = step["c_x"] * x + step["c_out"] * out
            if plan["clip"] is not None:
                x0 = np.clip(x0, -plan["clip"], plan["clip"])
            history = (history + [x0])[-3:]
            weights = step["w_x0"]
            new = x * np.float32(step["w_x"])
            for w, h in zip(weights, history[-len(weights):]):
                new = new + np.float32(w) * h
            x = new
        if self.decoder is not None:
            return self.decoder.run(["pixels"], {"x": x.astype(np.float32)})[0]
        data = (x.astype(np.float64) * np.asarray(plan["std"]) + np.asarray(plan["mean"])).astype(np.float32)
        return np.clip(data, 0.0, 1.0) if plan["images"] else data


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description="sample an exported diffkit run with onnxruntime")
    ap.add_argument("--out", required=True)
    ap.add_argument("--noise", help="x_T, a float32 .npy [N, *shape]")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--class", dest="cls", type=int, help="one class for every sample")
    ap.add_argument("--labels", help="one class id per sample, an int .npy [N]")
    ap.add_argument("--prompt", help="a text run: one of the prompts it was exported with (plan.json)")
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--folder", default=str(here), help="the exported folder (default: this file's)")
    a = ap.parse_args(argv)
    model = Exported(a.folder)
    if a.noise:
        noise = np.load(a.noise, allow_pickle=False)
    else:
        noise = np.random.default_rng(a.seed).standard_normal((a.n, *model.plan["shape"]), dtype=np.float32)
    labels = None
    if a.labels:
        labels = np.load(a.labels, allow_pickle=False).astype(np.int64)
    elif a.cls is not None:
        labels = np.full(len(noise), a.cls, np.int64)
    elif a.prompt is not None:
        prompts = model.plan.get("prompts") or []
        if a.prompt not in prompts:
            raise SystemExit(f"error: {a.prompt!r} was not exported; this folder samples {prompts or 'no prompts'} "
                             "(export again with --prompts to add one)")
        labels = np.full(len(noise), prompts.index(a.prompt), np.int64)
    np.save(a.out, model.sample(noise, labels, a.guidance).astype(np.float32))
    print(f"wrote {len(noise)} samples to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
