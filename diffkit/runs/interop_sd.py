"""A Stable-Diffusion-style pipeline folder in (`diffkit import --diffusers FOLDER --out RUN`; Rombach et al. 2022):
a UNet2DConditionModel denoising an AutoencoderKL's latents, cross-attending to a transformers text encoder's
tokens, with a scheduler, becomes a latent text run.

  unet/          copied into the run (model.safetensors under "unet."), as a UNet2DModel import is;
  vae/           the run's VAE: its scaling_factor is the run's latent scale (data.latent "diffusers:FOLDER");
  text_encoder/, tokenizer/
                 the run's text encoder (data.text "diffusers:FOLDER"), read as the pipeline reads it: prompts
                 padded to the tokenizer's max length, no attention mask, the empty prompt as the null;
  scheduler/     mapped exactly onto diffkit's schedule and spacing, or refused by name (diffusers_folder.py).

The VAE and the text encoder stay in the folder (hundreds of MB each): the run records their full checksum on
import and checks a cheap record of them (sizes, mtimes, config and safetensors headers) on every load
(store/folder.py). The safety checker and feature extractor are not used: diffkit's samples are not filtered.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import (
    DataConfig,
    FittedStats,
    ParentConfig,
    RunConfig,
    SamplingConfig,
    TrainConfig,
)
from ..errors import ConfigError
from ..nn.diffusers_unet import DiffusersCondUNetConfig
from ..nn.registry import build_network
from ..store.folder import full_sha256
from .diffusers_folder import (
    load_checked,
    model_config,
    read_json,
    read_scheduler,
    read_weights,
    safetensors_path,
)

SD_PIPELINES = ("StableDiffusionPipeline",)
SD_READS = ("text_encoder", "tokenizer", "vae")  # what an imported run reads from the folder when it samples
# model_index.json entries diffkit reads, and those it may ignore (nothing of the model's sampling depends on them)
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
IGNORED = ("safety_checker", "feature_extractor", "image_encoder", "requires_safety_checker")
# UNet2DConditionModel settings beyond SD 1.x / 2.x's text conditioning, each refused by name
UNET_EXTRAS = {"addition_embed_type": "added conditioning (SDXL-style)", "class_embed_type": "class embeddings",
               "num_class_embeds": "class embeddings", "encoder_hid_dim": "a projection of the text tokens",
               "time_cond_proj_dim": "a guidance-scale input (LCM-style)"}


def read_index(folder: Path) -> dict:
    """The pipeline's model_index.json, checked: its components are those of a text-to-image pipeline."""
    index = read_json(folder / "model_index.json", "pipeline index")
    extra = sorted(k for k, v in index.items() if not k.startswith("_") and k not in COMPONENTS + IGNORED
                   and v not in (None, [None, None]))
    if extra:
        raise ConfigError(f"{folder} has components diffkit does not take: {', '.join(extra)} (it imports "
                          f"{', '.join(COMPONENTS)})")
    for part in COMPONENTS:
        if not isinstance(index.get(part), list) or not (folder / part).is_dir():
            raise ConfigError(f"{folder} is a {index.get('_class_name')} without its {part}/ folder; a "
                              f"Stable-Diffusion-style pipeline needs {', '.join(COMPONENTS)}")
    for part, cls in (("unet", "UNet2DConditionModel"), ("vae", "AutoencoderKL")):
        if index[part][-1] != cls:
            raise ConfigError(f"{folder}: its {part} is a {index[part][-1]}; diffkit imports a {cls} there")
    return index


def read_sd_unet(unet_dir: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    config = model_config(unet_dir, "UNet2DConditionModel", "Stable Diffusion's text-conditional U-Net")
    for key, what in UNET_EXTRAS.items():
        if config.get(key) is not None:
            raise ConfigError(f"{unet_dir}: {key} = {config[key]!r} ({what}) is not imported; diffkit takes a U-Net "
                              "conditioned on the text tokens alone")
    if config.get("time_embedding_type", "positional") != "positional":
        raise ConfigError(f"{unet_dir}: time_embedding_type {config['time_embedding_type']!r} is not imported "
                          "(diffkit passes discrete training timesteps to a positional embedding)")
    if not isinstance(config.get("sample_size"), int):
        raise ConfigError(f"{unet_dir}/config.json: sample_size {config.get('sample_size')!r} is not one side "
                          "length; diffkit imports square U-Nets")
    weights, _ = read_weights(unet_dir)
    return config, weights


def read_vae(vae_dir: Path, latent_channels: int) -> dict:
    config = model_config(vae_dir, "AutoencoderKL", "Stable Diffusion's autoencoder")
    safetensors_path(vae_dir)
    if config.get("shift_factor") not in (None, 0, 0.0):
        raise ConfigError(f"{vae_dir}: shift_factor {config['shift_factor']} is not imported (diffkit scales "
                          "latents by scaling_factor alone)")
    if config.get("latent_channels", 4) != latent_channels:
        raise ConfigError(f"{vae_dir}: the VAE gives {config.get('latent_channels', 4)}-channel latents but the U-Net "
                          f"takes {latent_channels} channels (an inpainting or depth U-Net takes extra channels: "
                          "not imported)")
    return config


def read_text_encoder(folder: Path, cross_attention_dim) -> int:
    """The text encoder's width, checked against the U-Net's cross-attention; safetensors weights only."""
    config = read_json(folder / "text_encoder" / "config.json", "text encoder config")
    safetensors_path(folder / "text_encoder", "model.safetensors")
    width = config.get("hidden_size", config.get("d_model"))
    if not isinstance(width, int) or width != cross_attention_dim:
        raise ConfigError(f"{folder}/text_encoder gives {width}-wide tokens but the U-Net cross-attends to "
                          f"{cross_attention_dim}-wide ones")
    if not any((folder / "tokenizer" / f).is_file() for f in ("tokenizer.json", "vocab.json", "tokenizer_config.json",
                                                                "spiece.model")):
        raise ConfigError(f"{folder}/tokenizer holds no tokenizer files (tokenizer.json or vocab.json and "
                          "merges.txt); save the pipeline with its tokenizer")
    return width


def sd_import_config(folder: Path) -> tuple[RunConfig, dict[str, torch.Tensor]]:
    """The run config and the U-Net's weights (under "unet.") of a Stable-Diffusion-style pipeline folder."""
    read_index(folder)
    unet, weights = read_sd_unet(folder / "unet")
    channels, size = int(unet.get("in_channels", 4)), int(unet["sample_size"])
    vae = read_vae(folder / "vae", channels)
    width = read_text_encoder(folder, unet.get("cross_attention_dim"))
    s = read_scheduler(folder / "scheduler" / "scheduler_config.json", unet, flow=False)
    factor = 2 ** (len(vae.get("block_out_channels", (64,))) - 1)
    scale = float(vae.get("scaling_factor", 0.18215))
    ref = f"diffusers:{folder}"
    config = RunConfig(
        data=DataConfig(spec=ref, latent=ref, text=ref),
        schedule=s["schedule"], prediction=s["prediction"],
        network=DiffusersCondUNetConfig(unet=unet, context_dim=width),
        # the pipeline's null is the empty prompt, trained by caption dropout (Rombach et al. 2022, app. E): guided
        train=TrainConfig(p_uncond=0.1),
        fitted=FittedStats(kind="latents", shape=[channels, size, size], normalizer={"mean": [0.0], "std": [1 / scale]},
                           x0_bound=1.0, latent_scale=scale,
                           pixel_shape=[int(vae.get("in_channels", 3)), size * factor, size * factor]),
        sampling=SamplingConfig(guidance_interval=None, clip_x0=s["clip"], spacing=s["spacing"]),
        parent=ParentConfig(kind="import", path=str(folder), sha256=full_sha256(folder, SD_READS),
                            reads=list(SD_READS))).validate()
    network = build_network(config.network)
    load_checked(network.unet, weights, f"{folder}/unet")
    return config, {f"unet.{k}": v for k, v in weights.items()}
