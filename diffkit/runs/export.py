"""`diffkit export --run RUN --format onnx --out DIR`: a run's network as ONNX, checked with onnxruntime, and a
sampler that needs only NumPy and onnxruntime.

DIR holds network.onnx (x [B, *shape] float32, t [B] float32, cond [B] int64 for a class run -> prediction,
any batch), decoder.onnx for a latent run, plan.json (the run's sampling, precomputed in float64 for one sampler and step count) and sample.py
(runs/onnx_sample.py, which imports neither torch nor diffkit). The plan is read off diffkit's own arithmetic:
each level's network input scale, time and the affine map from (x, output) to x0_hat are probed through the
run's Denoiser with a stand-in network, and each step's update weights come from the samplers' own functions
(DPM-Solver++ in data-prediction form; DDIM is its first order). So the exported sampler follows the run's path
(ddpm, flow, edm), prediction type, spacing, guidance interval and x0 clipping without re-implementing them.

Exported: point, pixel and latent runs, unconditional or class-conditional, and imported Stable Diffusion pipelines;
a latent run's VAE decoder goes with it as decoder.onnx (diffusion-space samples -> pixels in [0, 1]). A text run's
encoder does not go with it: the prompts it will sample are encoded at export (`--prompts`) into prompts.npz, the
null prompt beside them, and network.onnx takes (tokens, mask) in place of class ids (a network that ignores the
mask, as Stable Diffusion's U-Net does, takes tokens only).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from ..cond import conditioning_for
from ..errors import ConfigError
from ..sampling import sampler_grid
from ..sampling.common import grid_levels
from ..sampling.dpm_solver import dpmpp_weights, final_order
from ..text.data import prompt_cond
from .pipeline import Run, deterministic_own, load_run

ORDERS = {"ddim": 1, "dpmpp-2m": 2, "dpmpp-3m": 3}  # the deterministic samplers a plan can hold
CHECK_BATCHES = (1, 3, 8)
TOLERANCE = 1e-4  # onnxruntime against torch, relative to the output's largest magnitude


class _Probe(torch.nn.Module):
    """A stand-in network that records what the Denoiser feeds it and returns a constant."""

    def __init__(self, value: float):
        super().__init__()
        self.value, self.seen = value, None

    def forward(self, x, t, cond=None):
        self.seen = (x.detach().clone(), t.detach().clone())
        return torch.full_like(x, self.value)


def level_map(run: Run, t: float) -> dict:
    """At grid time t: the network's time, its input scale s_in (x_in = s_in x) and x0_hat = c_x x + c_out out."""
    shape = (1, *run.config.fitted.shape)
    zero, one = _Probe(0.0), _Probe(1.0)
    plain = run.denoiser.replace(clip_x0=None, guidance_scale=1.0, chunk=None, conditioning=None)
    x = torch.ones(shape, dtype=torch.float64)
    c_x = float(plain.replace(network=zero)(x, t)[1].flatten()[0])
    x_in, t_net = zero.seen
    c_out = float(plain.replace(network=one)(torch.zeros(shape, dtype=torch.float64), t)[1].flatten()[0])
    return {"t": float(t_net[0]), "s_in": float(x_in.flatten()[0]), "c_x": c_x, "c_out": c_out}


def sampling_plan(run: Run, sampler: str, steps: int | None) -> list[dict]:
    """Per step: the level map, whether guidance applies there, and the update weights (w_x, w_x0 oldest first)."""
    if sampler not in ORDERS:
        raise ConfigError(f"the exported sampler must be one of {', '.join(ORDERS)} (deterministic multistep), "
                          f"got {sampler!r}")
    schedule = run.denoiser.schedule
    grid = sampler_grid(schedule, sampler, steps, run.config.sampling.spacing)
    lv = grid_levels(schedule, grid)
    n, plan = len(lv) - 1, []
    guided = run.denoiser.replace(guidance_scale=2.0)  # where its scale is not 1: inside the guidance interval
    for i in range(n):
        kept = min(i + 1, 3)  # the x0_hat's a multistep sampler keeps
        order = min(kept, final_order(ORDERS[sampler], i, n, True)) if sampler != "ddim" else 1
        w_x, *w_x0 = dpmpp_weights(lv[max(0, i + 1 - kept):i + 1], lv[i + 1], order)
        plan.append({**level_map(run, lv[i].t), "grid_t": lv[i].t, "guided": guided.scale_at(lv[i].alpha ** 2) != 1.0,
                     "w_x": w_x, "w_x0": w_x0})
    return plan


class _Network(torch.nn.Module):
    """The run's plain network with diffkit's signature, for the exporter."""

    def __init__(self, network, conditional: bool):
        super().__init__()
        self.network, self.conditional = network, conditional

    def forward(self, x, t, cond=None):
        return self.network(x, t, cond if self.conditional else None)


class _TextNetwork(torch.nn.Module):
    """A text run's network with its cond as two tensors, for the exporter: tokens [B, L, D], mask bool [B, L]."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, x, t, tokens, mask):
        return self.network(x, t, {"tokens": tokens, "mask": mask})


class _Decoder(torch.nn.Module):
    """A latent run's diffusion-space samples -> pixels in [0, 1] (runs/vae.py: LatentDecoder)."""

    def __init__(self, decoder):
        super().__init__()
        self.vae, self.scale = decoder.vae.eval(), decoder.scale

    def forward(self, x):
        return (self.vae.decode(x / self.scale).clamp(-1, 1) + 1) / 2


def export_checked(module: torch.nn.Module, inputs, names: list[str], output: str, path: Path) -> float:
    """module through torch's ONNX exporter (any batch), then onnxruntime against torch at CHECK_BATCHES on
    inputs(b); returns the largest difference relative to the output's range (refused above TOLERANCE)."""
    import onnxruntime as ort

    axes = {name: {0: "batch"} for name in [*names, output]}
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer warns of every shape test in a module's Python (diffusers' U-Net has several that only pick a
        # memory layout); what the trace recorded is checked below at several batch sizes instead
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, inputs(2), str(path), input_names=names, output_names=[output],
                          dynamic_axes=axes, dynamo=False)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        takes = {i.name for i in session.get_inputs()}  # the exporter drops an input the module ignores
        worst = 0.0
        for b in CHECK_BATCHES:
            args = inputs(b)
            want = module(*args).numpy()
            got = session.run([output], {k: v.numpy() for k, v in zip(names, args) if k in takes})[0]
            worst = max(worst, float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12)))
    if worst > TOLERANCE:
        raise ConfigError(f"onnxruntime's {output} differs from torch's by {worst:.2e} of its range (more than "
                          f"{TOLERANCE:g}); {path.name} does not export faithfully")
    return worst


def export_network(run: Run, path: Path, texts: dict | None = None) -> float:
    """network.onnx; returns the largest relative difference onnxruntime showed against torch. A text run's network
    takes the exported prompts' (tokens, mask) (texts: prompt_embeddings)."""
    classes = run.config.network.num_classes
    shape = tuple(run.config.fitted.shape)
    g = torch.Generator().manual_seed(0)

    def inputs(b):
        x = torch.randn((b, *shape), generator=g)
        t = torch.rand(b, generator=g) * (run.config.schedule.num_timesteps - 1)
        if texts is not None:
            rows = torch.randint(0, len(texts["tokens"]), (b,), generator=g)
            return x, t, torch.from_numpy(texts["tokens"])[rows], torch.from_numpy(texts["mask"])[rows]
        return (x, t, torch.randint(0, classes + 1, (b,), generator=g)) if classes else (x, t)

    if texts is not None:
        module, names = _TextNetwork(run.network.eval()), ["x", "t", "tokens", "mask"]
    else:
        module, names = _Network(run.network.eval(), classes > 0), ["x", "t", "cond"][:3 if classes else 2]
    return export_checked(module, inputs, names, "prediction", path)


def prompt_embeddings(run: Run, prompts: list[str]) -> dict:
    """The prompts and the null prompt through the run's text encoder, padded to one length L: tokens float32
    [P + 1, L, D] and mask bool [P + 1, L], the null last (what guidance's unconditional half reads)."""
    cond = prompt_cond(run.config, prompts, 1)
    null = conditioning_for(run.config).null({k: v[:1] for k, v in cond.items()})
    return {"tokens": torch.cat([cond["tokens"], null["tokens"]]).float().numpy(),
            "mask": torch.cat([cond["mask"], null["mask"]]).numpy()}


def export_decoder(run: Run, path: Path) -> float:
    """decoder.onnx (a latent run's VAE decoder, from diffusion space to pixels in [0, 1])."""
    shape = tuple(run.config.fitted.shape)
    g = torch.Generator().manual_seed(1)
    return export_checked(_Decoder(run.decoder), lambda b: (torch.randn((b, *shape), generator=g),), ["x"], "pixels",
                          path)


def export_onnx(run_dir, out, sampler: str | None = None, steps: int | None = None,
                prompts: list[str] | None = None) -> dict:
    """Write DIR (new): network.onnx, plan.json, sample.py (and decoder.onnx for a latent run, prompts.npz with the
    encoded `prompts` for a text run); returns plan.json's content."""
    out = Path(out)
    if out.exists():
        raise ConfigError(f"{out} already exists; export into a new folder")
    run = load_run(run_dir, precision="fp32", fast=False)
    config = run.config
    if bool(config.data.text) != bool(prompts):
        raise ConfigError("a text run exports the prompts it will sample, encoded by its text encoder now: give "
                          "--prompts P1 P2 ..." if config.data.text else "--prompts is for text runs; this run is not one")
    if getattr(config.network, "guidance_embed", False):
        raise ConfigError("a student that reads the guidance scale as an input is not exported yet (network.onnx "
                          "takes class ids only); export its teacher or a student with one w folded in")
    own, own_steps = deterministic_own(config)  # a stochastic own sampler (shapes' dpmpp-2m-sde): dpmpp-2m
    sampler = sampler or own or "dpmpp-2m"
    steps = steps or own_steps or 20
    plan = {"format": "diffkit-onnx", "sampler": sampler, "sampler_steps": steps, "shape": list(config.fitted.shape),
            "num_classes": config.network.num_classes, "null_class": config.network.num_classes,
            "images": config.fitted.is_images, "clip": run.denoiser.clip_x0,
            "decoder": "decoder.onnx" if run.decoder is not None else None,
            "prompts": list(prompts) if prompts else None,
            "mean": config.fitted.normalizer["mean"], "std": config.fitted.normalizer["std"],
            "guidance_interval": config.sampling.guidance_interval, "steps": sampling_plan(run, sampler, steps)}
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        texts = prompt_embeddings(run, list(prompts)) if prompts else None
        if texts is not None:
            np.savez(tmp / "prompts.npz", **texts)
        plan["onnx_vs_torch"] = export_network(run, tmp / "network.onnx", texts)
        if run.decoder is not None:
            plan["decoder_vs_torch"] = export_decoder(run, tmp / "decoder.onnx")
        (tmp / "plan.json").write_text(json.dumps(plan, indent=1))
        shutil.copyfile(Path(__file__).with_name("onnx_sample.py"), tmp / "sample.py")
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return plan
