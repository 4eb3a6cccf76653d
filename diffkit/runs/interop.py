"""diffusers folders in: `diffkit import --diffusers FOLDER --out RUN` turns a local diffusers UNet2DModel (a model
folder with its scheduler_config.json beside it, or a DDPM / DDIM pipeline folder with model_index.json) into a
run directory that samples, scores and serves like a trained one.

The run is self-contained: config.json holds the UNet's own config and diffkit's reading of the scheduler
config; model.safetensors the UNet's weights (under "unet."); `parent` the folder's path and the checksum of its
weights, as provenance. Deleting or changing the folder afterwards does not touch the run. Weights are read from
safetensors only: a pickle `.bin` is refused, never unpickled. Anything of the scheduler config that diffkit
cannot represent exactly is refused by name, so an imported run samples what diffusers would. A folder diffkit
exported carries diffkit.json (its classes' names, the trained null class, the guidance interval): read back, the
imported run guides as the exported one did. Every pixel U-Net run diffkit exports comes back: a flow run's
FlowMatchEulerDiscreteScheduler (shift 1) reads as the flow objective, and a PooledUNet2DModel (a U-Net whose
self-attention pools its keys) is built from diffkit's own module, never from the copy of it in the folder.

A StableDiffusionPipeline folder goes to runs/interop_sd.py (a latent text run that reads its VAE and text encoder
from the folder); `verify_import` is `diffkit import --verify RUN`, the full check of such a folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import (
    DataConfig,
    FittedStats,
    ObjectiveConfig,
    ParentConfig,
    RunConfig,
    SamplingConfig,
    TrainConfig,
)
from ..errors import CheckpointError, ConfigError
from ..nn.diffusers_unet import DiffusersUNetConfig
from ..nn.registry import build_network
from ..store.folder import RECORD, full_sha256, record_bytes, write_record
from ..store.manifest import MANIFEST, atomic_dir, manifest_bytes, sha256
from ..store.rundir import CONFIG, MODEL, read_config, tensor_bytes
from .diffusers_folder import (
    load_checked,
    model_config,
    read_export_record,
    read_json,
    read_scheduler,
    read_weights,
)
from .interop_sd import SD_PIPELINES, sd_import_config

PIPELINES = ("DDPMPipeline", "DDIMPipeline")  # pixel pipelines: a UNet2DModel and a scheduler
# the U-Nets they may hold: UNet2DModel, or diffkit's export of a U-Net that pools its attention keys (built from
# diffkit's own nn/diffusers_pooled_unet.py, never from the copy in the folder)
UNETS = ("UNet2DModel", DiffusersUNetConfig.POOLED)


def locate(folder: Path) -> tuple[Path, Path]:
    """(the UNet's folder, the scheduler config file) of a pipeline folder or a model folder (a folder: checked by
    import_diffusers)."""
    index = folder / "model_index.json"
    if index.is_file():
        pipeline = read_json(index, "pipeline index")
        name = pipeline.get("_class_name")
        unet = pipeline.get("unet")
        unet_class = unet[1] if isinstance(unet, list) and len(unet) == 2 else None
        if name not in PIPELINES or unet_class not in UNETS:
            raise ConfigError(f"{folder} is a {name} (its unet a {unet_class}); diffkit imports "
                              f"{', '.join(PIPELINES + SD_PIPELINES)} folders (their unet a {' or '.join(UNETS)}) and "
                              "UNet2DModel model folders")
        return folder / "unet", folder / "scheduler" / "scheduler_config.json"
    if (folder / "config.json").is_file():
        return folder, folder / "scheduler_config.json"
    raise ConfigError(f"{folder} has neither a model_index.json (a pipeline) nor a config.json (a model); give a "
                      "diffusers folder as save_pretrained writes it")


def read_unet(unet_dir: Path) -> tuple[dict, dict[str, torch.Tensor], str]:
    """(its config, its weights, the weights' sha256), checked against each other; safetensors only."""
    config = model_config(unet_dir, UNETS, "pixels, optionally class-conditional")
    weights, digest = read_weights(unet_dir)
    for key, ok, why in (("class_embed_type", None, "diffkit passes class labels through num_class_embeds"),
                         ("time_embedding_type", "positional", "diffkit passes discrete training timesteps")):
        if config.get(key, ok) != ok:
            raise ConfigError(f"{unet_dir}: {key} {config[key]!r} is not imported ({why}; it takes {ok!r})")
    return config, weights, digest


def import_config(folder: Path) -> tuple[RunConfig, dict[str, torch.Tensor]]:
    """The run config and the weights (under "unet.") of an imported folder, checked by loading them."""
    unet_dir, scheduler = locate(folder)
    unet, weights, digest = read_unet(unet_dir)
    s = read_scheduler(scheduler, unet)
    embeds = int(unet.get("num_class_embeds") or 0)
    # a folder diffkit exported says which class embedding is its trained null class; any other UNet2DModel's
    # embeddings are all classes, with no null class trained (guidance and unconditional sampling refused)
    record = read_export_record(folder, embeds) if unet_dir != folder else None
    classes = record["num_classes"] if record else embeds
    C, size = int(unet.get("in_channels", 3)), unet.get("sample_size")
    if not isinstance(size, int):
        raise ConfigError(f"{unet_dir}/config.json: sample_size {size!r} is not one side length; diffkit imports "
                          "square UNet2DModels")
    config = RunConfig(
        data=DataConfig(spec=f"diffusers:{folder}", cond=classes > 0),
        schedule=s["schedule"], prediction=s["prediction"], objective=s.get("objective", ObjectiveConfig()),
        network=DiffusersUNetConfig(unet=unet, num_classes=classes),
        train=TrainConfig(p_uncond=record["p_uncond"] if record else 0.0),
        fitted=FittedStats(kind="images", shape=[C, size, size], normalizer={"mean": [0.5], "std": [0.5]},
                           x0_bound=1.0,
                           class_names=record["class_names"] if record else [str(c) for c in range(classes)] or None),
        sampling=SamplingConfig(guidance_interval=record["guidance_interval"] if record else None, clip_x0=s["clip"],
                                spacing=s["spacing"]),
        parent=ParentConfig(kind="import", path=str(folder), sha256=digest)).validate()
    network = build_network(config.network)
    load_checked(network.unet, weights, unet_dir)
    return config, {f"unet.{k}": v for k, v in weights.items()}


def pipeline_class(folder: Path) -> str | None:
    """The _class_name of a pipeline folder's model_index.json (None: not a pipeline folder)."""
    index = folder / "model_index.json"
    return read_json(index, "pipeline index").get("_class_name") if index.is_file() else None


def import_diffusers(folder, out) -> RunConfig:
    """Write run directory `out` (new) from a local diffusers folder; returns its config."""
    folder, out = Path(folder).resolve(), Path(out)
    if out.exists():
        raise ConfigError(f"{out} already exists; import into a new run directory")
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; give a local diffusers pipeline or model folder")
    sd = pipeline_class(folder) in SD_PIPELINES
    config, weights = sd_import_config(folder) if sd else import_config(folder)
    config_bytes = json.dumps(config.to_dict(), indent=2).encode()
    model = tensor_bytes(weights, {"step": "0"})
    record = {RECORD: record_bytes(folder, config.parent.reads)} if config.parent.reads else {}
    atomic_dir(out, {CONFIG: config_bytes, MODEL: model, **record,
                     MANIFEST: manifest_bytes({CONFIG: sha256(config_bytes), MODEL: sha256(model)}, step=0)})
    return config


def verify_import(run_dir) -> str:
    """The full check of an imported run's folder (`diffkit import --verify RUN`): the parts it reads hashed again
    and compared with the checksum taken on import; equal, the cheap record is refreshed (a copied or touched
    folder then loads again). Returns a sentence saying what was checked."""
    config = read_config(run_dir)
    p = config.parent
    if p is None or p.kind != "import":
        raise ConfigError(f"{run_dir} is not an imported run; --verify checks a run made by `diffkit import`")
    if not p.reads:
        return f"{run_dir} is self-contained (its weights were copied on import); it reads nothing from {p.path}"
    if not Path(p.path).is_dir():
        raise CheckpointError(f"{run_dir} reads {p.path}, which no longer exists; restore the folder")
    if full_sha256(p.path, p.reads) != p.sha256:
        raise CheckpointError(f"{p.path} is not the folder {run_dir} was imported from: its {', '.join(p.reads)} "
                              "differ byte for byte (full checksum); restore it or import it again into a new run")
    write_record(run_dir, p.path, p.reads)
    return f"{p.path}: {', '.join(p.reads)} match the import's checksum; the run's folder record is refreshed"
