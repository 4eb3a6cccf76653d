"""diffusers folders in: `diffkit import --diffusers FOLDER --out RUN` turns a local diffusers UNet2DModel (a model
folder with its scheduler_config.json beside it, or a DDPM / DDIM pipeline folder with model_index.json) into a
run directory that samples, scores and serves like a trained one.

The run is self-contained: config.json holds the UNet's own config and diffkit's reading of the scheduler
config; model.safetensors the UNet's weights (under "unet."); `parent` the folder's path and the checksum of its
weights, as provenance. Deleting or changing the folder afterwards does not touch the run. Weights are read from
safetensors only: a pickle `.bin` is refused, never unpickled. Anything of the scheduler config that diffkit
cannot represent exactly is refused by name, so an imported run samples what diffusers would.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..config import (
    DataConfig,
    FittedStats,
    ParentConfig,
    RunConfig,
    SamplingConfig,
    ScheduleConfig,
    TrainConfig,
)
from ..errors import ConfigError
from ..nn.diffusers_unet import DiffusersUNetConfig
from ..nn.registry import build_network
from ..store.manifest import MANIFEST, atomic_dir, manifest_bytes, sha256
from ..store.rundir import CONFIG, MODEL, tensor_bytes

WEIGHTS = "diffusion_pytorch_model.safetensors"
PICKLED = ("diffusion_pytorch_model.bin", "pytorch_model.bin")
PIPELINES = ("DDPMPipeline", "DDIMPipeline")  # pixel pipelines: a UNet2DModel and a scheduler
# diffusers' beta schedules with diffkit's name for them, at the beta range diffkit builds them with
BETAS = {("linear", 0.0001, 0.02): "linear", ("scaled_linear", 0.00085, 0.012): "scaled_linear",
         ("squaredcos_cap_v2", None, None): "cosine"}
PREDICTIONS = {"epsilon": "epsilon", "v_prediction": "v", "sample": "x0"}
# scheduler keys read below, and keys that may be there at any value because they do not change the model
READ = {"num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "prediction_type", "trained_betas",
        "rescale_betas_zero_snr", "clip_sample", "clip_sample_range", "timestep_spacing", "steps_offset",
        "set_alpha_to_one", "thresholding"}
NEUTRAL = {"variance_type", "dynamic_thresholding_ratio", "sample_max_value", "solver_order", "algorithm_type",
           "solver_type", "lower_order_final", "use_karras_sigmas", "interpolation_type", "timestep_type",
           "skip_prk_steps", "final_sigmas_type", "euler_at_final", "lambda_min_clipped"}


def _json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not a readable JSON {what} ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} holds a JSON {type(data).__name__}, not a {what}")
    return data


def locate(folder: Path) -> tuple[Path, Path]:
    """(the UNet's folder, the scheduler config file) of a pipeline folder or a model folder."""
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; give a local diffusers pipeline or model folder")
    index = folder / "model_index.json"
    if index.is_file():
        pipeline = _json(index, "pipeline index")
        name = pipeline.get("_class_name")
        unet = pipeline.get("unet")
        unet_class = unet[1] if isinstance(unet, list) and len(unet) == 2 else None
        if name not in PIPELINES or unet_class != "UNet2DModel":
            raise ConfigError(f"{folder} is a {name} (its unet a {unet_class}); diffkit imports {', '.join(PIPELINES)} "
                              "folders and UNet2DModel model folders")
        return folder / "unet", folder / "scheduler" / "scheduler_config.json"
    if (folder / "config.json").is_file():
        return folder, folder / "scheduler_config.json"
    raise ConfigError(f"{folder} has neither a model_index.json (a pipeline) nor a config.json (a model); give a "
                      "diffusers folder as save_pretrained writes it")


def read_unet(unet_dir: Path) -> tuple[dict, dict[str, torch.Tensor], str]:
    """(its config, its weights, the weights' sha256), checked against each other; safetensors only."""
    config = _json(unet_dir / "config.json", "model config")
    name = config.get("_class_name")
    if name != "UNet2DModel":
        raise ConfigError(f"{unet_dir} holds a {name}; diffkit imports a UNet2DModel (pixels, optionally "
                          "class-conditional)")
    path = unet_dir / WEIGHTS
    if not path.is_file():
        pickled = [p for p in PICKLED if (unet_dir / p).is_file()]
        if pickled:
            raise ConfigError(f"{unet_dir} has its weights only as a pickle ({pickled[0]}), which diffkit never loads "
                              "(unpickling can run code); save the model with safe_serialization=True")
        raise ConfigError(f"{unet_dir} has no {WEIGHTS}")
    data = path.read_bytes()
    try:
        weights = load_file(path)
    except (SafetensorError, OSError) as e:
        raise ConfigError(f"{path} is not a readable safetensors file ({e})") from None
    for key, ok, why in (("class_embed_type", None, "diffkit passes class labels through num_class_embeds"),
                         ("time_embedding_type", "positional", "diffkit passes discrete training timesteps")):
        if config.get(key, ok) != ok:
            raise ConfigError(f"{unet_dir}: {key} {config[key]!r} is not imported ({why}; it takes {ok!r})")
    return config, weights, sha256(data)


def read_scheduler(path: Path, unet: dict) -> dict:
    """diffkit's schedule, prediction and sampling defaults for a diffusers scheduler config, or a refusal that
    names the setting it cannot represent."""
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; a model folder needs its scheduler_config.json beside config.json")
    cfg = _json(path, "scheduler config")
    unknown = sorted(k for k in cfg if not k.startswith("_") and k not in READ | NEUTRAL)
    if unknown:
        raise ConfigError(f"{path}: diffkit cannot represent {', '.join(unknown)}")
    for key, ok in (("trained_betas", None), ("thresholding", False), ("set_alpha_to_one", True),
                    ("steps_offset", 0)):
        if cfg.get(key, ok) not in (ok,):
            raise ConfigError(f"{path}: {key} = {cfg[key]!r} is not representable in diffkit yet (it takes {ok!r})")
    kind = cfg.get("beta_schedule", "linear")
    start, end = (None, None) if kind == "squaredcos_cap_v2" else (cfg.get("beta_start", 0.0001),
                                                                   cfg.get("beta_end", 0.02))
    if (kind, start, end) not in BETAS:
        raise ConfigError(f"{path}: beta_schedule {kind!r} with beta_start {start}, beta_end {end} is not one of "
                          f"diffkit's schedules ({', '.join(f'{k} {a}..{b}' for k, a, b in BETAS)})")
    prediction = cfg.get("prediction_type", "epsilon")
    if prediction not in PREDICTIONS:
        raise ConfigError(f"{path}: prediction_type {prediction!r} is not one of {', '.join(PREDICTIONS)}")
    clip = bool(cfg.get("clip_sample", True))
    if clip and cfg.get("clip_sample_range", 1.0) != 1.0:
        raise ConfigError(f"{path}: clip_sample_range {cfg['clip_sample_range']} is not representable (diffkit clips "
                          "x0_hat to the pixel range [-1, 1])")
    spacing = cfg.get("timestep_spacing", "leading")
    if spacing not in ("leading", "trailing", "linspace"):
        raise ConfigError(f"{path}: timestep_spacing {spacing!r} is not one of leading, trailing, linspace")
    schedule = ScheduleConfig(name=BETAS[(kind, start, end)], num_timesteps=int(cfg.get("num_train_timesteps", 1000)),
                              zero_terminal_snr=bool(cfg.get("rescale_betas_zero_snr", False)))
    return {"schedule": schedule, "prediction": PREDICTIONS[prediction], "clip": clip, "spacing": f"diffusers-{spacing}"}


def import_config(folder: Path) -> tuple[RunConfig, dict[str, torch.Tensor]]:
    """The run config and the weights (under "unet.") of an imported folder, checked by loading them."""
    unet_dir, scheduler = locate(folder)
    unet, weights, digest = read_unet(unet_dir)
    s = read_scheduler(scheduler, unet)
    classes = int(unet.get("num_class_embeds") or 0)
    C, size = int(unet.get("in_channels", 3)), unet.get("sample_size")
    if not isinstance(size, int):
        raise ConfigError(f"{unet_dir}/config.json: sample_size {size!r} is not one side length; diffkit imports "
                          "square UNet2DModels")
    config = RunConfig(
        data=DataConfig(spec=f"diffusers:{folder}", cond=classes > 0),
        schedule=s["schedule"], prediction=s["prediction"],
        network=DiffusersUNetConfig(unet=unet, num_classes=classes),
        train=TrainConfig(p_uncond=0.0),  # no null class was trained: guidance and unconditional sampling refused
        fitted=FittedStats(kind="images", shape=[C, size, size], normalizer={"mean": [0.5], "std": [0.5]},
                           x0_bound=1.0, class_names=[str(c) for c in range(classes)] or None),
        sampling=SamplingConfig(guidance_interval=None, clip_x0=s["clip"], spacing=s["spacing"]),
        parent=ParentConfig(kind="import", path=str(folder), sha256=digest)).validate()
    network = build_network(config.network)
    try:
        network.unet.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        first = str(e).split("\n")[1].strip() if "\n" in str(e) else str(e)
        raise ConfigError(f"{unet_dir}: the weights do not match their config.json ({first})") from None
    return config, {f"unet.{k}": v for k, v in weights.items()}


def import_diffusers(folder, out) -> RunConfig:
    """Write run directory `out` (new) from a local diffusers folder; returns its config."""
    folder, out = Path(folder).resolve(), Path(out)
    if out.exists():
        raise ConfigError(f"{out} already exists; import into a new run directory")
    config, weights = import_config(folder)
    config_bytes = json.dumps(config.to_dict(), indent=2).encode()
    model = tensor_bytes(weights, {"step": "0"})
    atomic_dir(out, {CONFIG: config_bytes, MODEL: model,
                     MANIFEST: manifest_bytes({CONFIG: sha256(config_bytes), MODEL: sha256(model)}, step=0)})
    return config
