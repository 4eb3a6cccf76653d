"""`diffkit export --run RUN --format diffusers --out DIR`: a pixel U-Net run as a diffusers pipeline folder that
`DiffusionPipeline.from_pretrained(DIR)` loads offline.

diffkit's U-Net is built as diffusers' UNet2DModel is (Dhariwal & Nichol's adaptive group norm is diffusers'
`resnet_time_scale_shift="scale_shift"`, the time features are [cos, sin] as `flip_sin_to_cos=True`, the null class
is the last row of `num_class_embeds`), so its weights map one to one: the qkv 1x1 convolution of an attention splits
into to_q / to_k / to_v, the 1x1 output convolution becomes to_out.0; nothing is approximated. The scheduler config is
the run's path: a ddpm run's betas (linear, scaled_linear or cosine = squaredcos_cap_v2), its prediction type and
x0 clipping in a DDIMScheduler, timesteps "trailing" (`diffkit sample --sampler ddim --spacing diffusers-trailing`
takes the same ones); a flow run (shift 1) in a FlowMatchEulerDiscreteScheduler driven by DDPMPipeline (`--sampler
euler --spacing diffusers-linspace`: tau = linspace(1, 1/T, K), and Euler in tau on the linear path is diffkit's
step). Anything that does not map is refused by name: EDM runs, shifted flow runs, text and latent runs, a
guidance-embedding student, a training length other than 1000 steps, widths whose GroupNorm groups or attention
head widths differ between levels. A run whose self-attention pools its keys (`--attention-keys`, the 32 px
preset's default) is a UNet2DModel subclass shipped in the folder (nn/diffusers_pooled_unet.py), loaded with
`trust_remote_code=True`. A model card (README.md, huggingface_hub's ModelCard) says what the run is, and
diffkit.json what diffusers' configs cannot (export_record: the classes' names, the trained null class, the guidance
interval), so `diffkit import` brings back a class run that guides as the original did.

A class-conditional run's folder is a DDIMPipeline too: diffusers has no class-conditional pixel pipeline, so its
UNet2DModel is called with `class_labels` (the null class `num_classes` for the unconditional half of guidance);
docs/diffusers.md shows the loop.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes

from ..errors import ConfigError
from ..nn.diffusers_unet import DiffusersUNetConfig
from ..nn.registry import kind_of
from ..nn.unet import UNet, heads
from ..store.manifest import atomic_dir
from ..store.trainlog import read_log
from .diffusers_folder import BETAS, EXPORT_RECORD, PREDICTIONS, WEIGHTS
from .pipeline import load_run

DIFFUSERS_BETAS = {name: (kind, start, end) for (kind, start, end), name in BETAS.items()}
DIFFUSERS_PREDICTIONS = {ours: theirs for theirs, ours in PREDICTIONS.items()}
# the pipeline of each scheduler: DDPMPipeline's loop (unet(x, t); scheduler.step(out, t, x)) runs a flow scheduler
PIPELINES = {"DDIMScheduler": "DDIMPipeline", "FlowMatchEulerDiscreteScheduler": "DDPMPipeline"}
# the diffkit spacing that takes each scheduler's timesteps (FlowMatchEuler at shift 1: tau = linspace(1, 1/T, K))
SPACINGS = {"DDIMScheduler": ("ddim", "diffusers-trailing"), "FlowMatchEulerDiscreteScheduler": ("euler",
                                                                                                   "diffusers-linspace")}
# a run whose self-attention pools its keys (--attention-keys) ships its U-Net as a custom component: this module's
# file, copied into unet/, defines UNet2DModel with a pooling attention processor (load with trust_remote_code=True)
POOLED_MODULE, POOLED_CLASS = "diffusers_pooled_unet", DiffusersUNetConfig.POOLED


def _refuse(run_dir, why: str) -> ConfigError:
    return ConfigError(f"{run_dir} does not map onto a diffusers UNet2DModel pipeline: {why}")


def unet2d_config(network: UNet, shape, run_dir="the run") -> dict:
    """UNet2DModel's config for diffkit's U-Net (a refusal naming what does not map)."""
    cfg = network.cfg
    widths = [cfg.channels * m for m in cfg.channel_mult]
    if cfg.context_dim or cfg.guidance_embed:
        raise _refuse(run_dir, "it reads text tokens or a guidance scale, which UNet2DModel does not take")
    if cfg.embed_mult != 4 or cfg.num_timesteps != 1000:
        raise _refuse(run_dir, "UNet2DModel's time embedding is 4x the first width over 1000 timesteps, this one "
                               f"{cfg.embed_mult}x over {cfg.num_timesteps}")
    if any(c % cfg.groups for c in widths):
        raise _refuse(run_dir, f"GroupNorm takes {cfg.groups} groups at every width in UNet2DModel; widths {widths}")
    attended = sorted({widths[level] for level in cfg.attention_levels} | {widths[-1]})
    head_widths = {c // heads(cfg, c) for c in attended}
    if len(head_widths) != 1:
        raise _refuse(run_dir, f"UNet2DModel's attention heads are one width; here {sorted(head_widths)}")
    down = ["AttnDownBlock2D" if level in cfg.attention_levels else "DownBlock2D" for level in range(cfg.levels)]
    up = ["AttnUpBlock2D" if level in cfg.attention_levels else "UpBlock2D" for level in reversed(range(cfg.levels))]
    return {"_class_name": "UNet2DModel", "sample_size": int(shape[-1]), "in_channels": cfg.in_channels,
            "out_channels": cfg.in_channels, "center_input_sample": False, "time_embedding_type": "positional",
            "freq_shift": 0, "flip_sin_to_cos": True, "down_block_types": down, "up_block_types": up,
            "block_out_channels": widths, "layers_per_block": cfg.num_res_blocks, "mid_block_scale_factor": 1,
            "downsample_padding": 1, "downsample_type": "conv", "upsample_type": "conv", "dropout": cfg.dropout,
            "act_fn": "silu", "attention_head_dim": head_widths.pop(), "norm_num_groups": cfg.groups,
            "attn_norm_num_groups": cfg.groups, "norm_eps": 1e-5, "resnet_time_scale_shift": "scale_shift",
            "add_attention": True, "class_embed_type": None,
            "num_class_embeds": cfg.num_classes + 1 if cfg.num_classes else None,
            **({"_class_name": POOLED_CLASS, "attention_keys": cfg.attention_keys} if cfg.attention_keys else {})}


def _resnet(state: dict, ours: str, theirs: str, out: dict) -> None:
    for a, b in (("norm1", "norm1"), ("conv1", "conv1"), ("embed", "time_emb_proj"), ("norm2", "norm2"),
                 ("conv2", "conv2"), ("skip", "conv_shortcut")):
        for p in ("weight", "bias"):
            if f"{ours}.{a}.{p}" in state:
                out[f"{theirs}.{b}.{p}"] = state[f"{ours}.{a}.{p}"]


def _attention(state: dict, ours: str, theirs: str, out: dict) -> None:
    out[f"{theirs}.group_norm.weight"], out[f"{theirs}.group_norm.bias"] = (state[f"{ours}.norm.{p}"]
                                                                            for p in ("weight", "bias"))
    weight, bias = state[f"{ours}.qkv.weight"].flatten(1), state[f"{ours}.qkv.bias"]
    for name, w, b in zip(("to_q", "to_k", "to_v"), weight.chunk(3), bias.chunk(3)):
        out[f"{theirs}.{name}.weight"], out[f"{theirs}.{name}.bias"] = w, b
    out[f"{theirs}.to_out.0.weight"] = state[f"{ours}.out.weight"].flatten(1)
    out[f"{theirs}.to_out.0.bias"] = state[f"{ours}.out.bias"]


def unet2d_weights(network: UNet) -> dict[str, torch.Tensor]:
    """The U-Net's state dict under UNet2DModel's names (module doc)."""
    cfg, state = network.cfg, network.state_dict()
    out = {"time_embedding.linear_1.weight": state["embed.0.weight"], "time_embedding.linear_1.bias": state["embed.0.bias"],
           "time_embedding.linear_2.weight": state["embed.2.weight"], "time_embedding.linear_2.bias": state["embed.2.bias"],
           "conv_in.weight": state["conv_in.weight"], "conv_in.bias": state["conv_in.bias"],
           "conv_norm_out.weight": state["out.0.weight"], "conv_norm_out.bias": state["out.0.bias"],
           "conv_out.weight": state["out.2.weight"], "conv_out.bias": state["out.2.bias"]}
    if cfg.num_classes:
        out["class_embedding.weight"] = state["class_embed.weight"]
    stage = 0
    for level in range(cfg.levels):  # self.down: num_res_blocks stages per level, then a Downsample stage
        for i in range(cfg.num_res_blocks):
            _resnet(state, f"down.{stage}.0", f"down_blocks.{level}.resnets.{i}", out)
            if level in cfg.attention_levels:
                _attention(state, f"down.{stage}.1", f"down_blocks.{level}.attentions.{i}", out)
            stage += 1
        if level < cfg.levels - 1:
            for p in ("weight", "bias"):
                out[f"down_blocks.{level}.downsamplers.0.conv.{p}"] = state[f"down.{stage}.0.conv.{p}"]
            stage += 1
    _resnet(state, "mid.0", "mid_block.resnets.0", out)
    _attention(state, "mid.1", "mid_block.attentions.0", out)
    _resnet(state, "mid.2", "mid_block.resnets.1", out)
    stage = 0
    for block, level in enumerate(reversed(range(cfg.levels))):  # self.up: num_res_blocks + 1 stages per level
        for i in range(cfg.num_res_blocks + 1):
            _resnet(state, f"up.{stage}.0", f"up_blocks.{block}.resnets.{i}", out)
            at = 1
            if level in cfg.attention_levels:
                _attention(state, f"up.{stage}.1", f"up_blocks.{block}.attentions.{i}", out)
                at = 2
            if level > 0 and i == cfg.num_res_blocks:
                for p in ("weight", "bias"):
                    out[f"up_blocks.{block}.upsamplers.0.conv.{p}"] = state[f"up.{stage}.{at}.conv.{p}"]
            stage += 1
    return out


def scheduler_config(config, run_dir="the run") -> dict:
    """The scheduler config for a run's path: a DDIMScheduler of a ddpm run's betas, prediction and x0 clipping; a
    FlowMatchEulerDiscreteScheduler for a flow run (its velocity u = eps - x0 at 1000 tau is diffusers' own)."""
    name = config.objective.name
    if name == "flow":
        if config.objective.shift != 1.0 or config.sampling.clip_x0 or config.prediction != "flow":
            raise _refuse(run_dir, "a flow run maps onto FlowMatchEulerDiscreteScheduler with shift 1, velocity "
                                   "prediction and no x0 clipping; this one has shift "
                                   f"{config.objective.shift:g}, {config.prediction} prediction"
                                   f"{', x0 clipping' if config.sampling.clip_x0 else ''}")
        return {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": config.schedule.num_timesteps,
                "shift": 1.0, "use_dynamic_shifting": False}
    if name != "ddpm":
        raise _refuse(run_dir, f"it trains the {name} objective; the export maps ddpm runs (a DDIMScheduler of the "
                               "run's betas) and flow runs (FlowMatchEulerDiscreteScheduler)")
    kind, start, end = DIFFUSERS_BETAS[config.schedule.name]
    return {"_class_name": "DDIMScheduler", "num_train_timesteps": config.schedule.num_timesteps,
            "beta_schedule": kind, **({} if start is None else {"beta_start": start, "beta_end": end}),
            "prediction_type": DIFFUSERS_PREDICTIONS[config.prediction], "clip_sample": bool(config.sampling.clip_x0),
            "clip_sample_range": 1.0, "set_alpha_to_one": True, "steps_offset": 0, "thresholding": False,
            "timestep_spacing": "trailing", "rescale_betas_zero_snr": bool(config.schedule.zero_terminal_snr)}


def model_card(config, run_dir: Path, classes: int, scheduler: str, unet_class: str) -> str:
    from huggingface_hub import ModelCard

    shape = "x".join(map(str, config.fitted.shape))
    trained = "its recorded steps"
    log = read_log(run_dir / "train_log.csv") if (run_dir / "train_log.csv").is_file() else {"step": []}
    if log["step"]:  # the training log's last row
        trained = (f"{int(log['step'][-1])} steps in {log['seconds'][-1]:.0f} s of training (last logged loss "
                   f"{log['loss'][-1]:.4f})")
    cond = (f"class-conditional ({classes} classes; class id {classes} is the null class that classifier-free "
            "guidance uses)") if classes else "unconditional"
    sampler, spacing = SPACINGS[scheduler]
    unet = ("a UNet2DModel holding diffkit's U-Net weights, mapped one to one (no retraining, no approximation)."
            if unet_class != POOLED_CLASS else
            f"a {POOLED_CLASS}, UNet2DModel whose self-attention pools its keys and values to at most "
            f"{config.network.attention_keys} positions as diffkit's does ({POOLED_MODULE}.py, in the folder), "
            "holding diffkit's U-Net weights mapped one to one. Load the pipeline with "
            "`DiffusionPipeline.from_pretrained(DIR, trust_remote_code=True)`.")
    text = f"""---
library_name: diffusers
tags: [diffkit, unconditional-image-generation]
---
# {run_dir.name}: a diffkit run as a diffusers pipeline

A {cond} {shape} image model, `{config.data.spec}`, trained by diffkit ({config.objective.name} objective,
{config.schedule.name} schedule, {config.prediction} prediction) for {trained}; exported with
`diffkit export --run {run_dir.name} --format diffusers`.

- `unet/`: {unet}
- `scheduler/`: a {scheduler}; diffkit samples the same timesteps with
  `diffkit sample --sampler {sampler} --spacing {spacing}`.
- Pixels: the model works in [-1, 1]; the pipeline's output in [0, 1] is (x + 1) / 2.
"""
    return str(ModelCard(text))


def export_diffusers(run_dir, out) -> tuple[dict, str]:
    """Write the pipeline folder `out` (new) for run `run_dir`; returns the scheduler config and the U-Net's class
    (UNet2DModel, or POOLED_CLASS: loaded with trust_remote_code=True)."""
    run_dir, out = Path(run_dir), Path(out)
    if out.exists():
        raise ConfigError(f"{out} already exists; export into a new folder")
    run = load_run(run_dir, fast=False, precision="fp32")
    config = run.config
    if config.fitted.kind != "images" or kind_of(config.network) != "unet":
        raise _refuse(run_dir, f"it is a {kind_of(config.network)} run on {config.fitted.kind}; the export maps "
                               "diffkit's pixel U-Net runs")
    if config.data.latent or config.data.text:
        raise _refuse(run_dir, "latent and text runs need their VAE and text encoder as pipeline components, "
                               "which the export does not write yet")
    unet = unet2d_config(run.network, config.fitted.shape, run_dir)
    scheduler = scheduler_config(config, run_dir)
    unet_class = unet.get("_class_name", "UNet2DModel")  # POOLED_CLASS: a custom component, shipped in the folder
    pooled = unet_class == POOLED_CLASS
    index = {"_class_name": PIPELINES[scheduler["_class_name"]], "_diffusers_version": _diffusers_version(),
             "unet": [POOLED_MODULE if pooled else "diffusers", unet_class],
             "scheduler": ["diffusers", scheduler["_class_name"]]}
    files = {"model_index.json": json.dumps(index, indent=2).encode(),
             **({f"unet/{POOLED_MODULE}.py": (Path(__file__).parents[1] / "nn" / f"{POOLED_MODULE}.py").read_bytes()}
                if pooled else {}),
             "unet/config.json": json.dumps(unet, indent=2).encode(),
             f"unet/{WEIGHTS}": safetensors_bytes({k: v.clone() for k, v in unet2d_weights(run.network).items()},
                                                       {"format": "pt"}),
             "scheduler/scheduler_config.json": json.dumps(scheduler, indent=2).encode(),
             "README.md": model_card(config, run_dir.resolve(), config.network.num_classes, scheduler["_class_name"],
                                    unet_class).encode(),
             EXPORT_RECORD: json.dumps(export_record(config), indent=2).encode()}
    atomic_dir(out, files)
    return scheduler, unet_class


def export_record(config) -> dict:
    """The run's conditioning as diffkit reads it: its classes and their names, that the last class embedding is the
    null class guidance needs and was trained (p_uncond), and the noise levels where the run guides. Without it an
    imported class U-Net has num_class_embeds classes and no trained null class (guidance refused)."""
    classes = config.network.num_classes
    return {"about": "diffkit's reading of this pipeline, for `diffkit import --diffusers`; diffusers ignores it",
            "num_classes": classes, "null_class": classes if classes else None,
            "p_uncond": config.train.p_uncond if classes else 0.0,
            "class_names": config.fitted.class_names if classes else None,
            "guidance_interval": list(config.sampling.guidance_interval)
            if classes and config.sampling.guidance_interval else None}


def _diffusers_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("diffusers")
    except PackageNotFoundError:
        return "0.30.0"
