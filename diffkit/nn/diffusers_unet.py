"""diffusers' UNet2DModel and UNet2DConditionModel as network kinds: the networks of runs imported from diffusers
folders (`diffkit import --diffusers FOLDER`, runs/interop.py; a Stable-Diffusion-style pipeline, runs/interop_sd.py).

The run keeps the model's own config.json (as diffusers wrote it) in its config and the weights, under the
prefix "unet.", in its model.safetensors, so it samples through the same contract as every network:
network(x_t [B, C, H, W], t float [B] in training timesteps, cond class ids [B] | None) -> prediction; the
conditional U-Net's cond is a text cond {"tokens" [B, L, D], "mask" [B, L]} whose tokens it cross-attends to, every
position as Stable Diffusion's pipeline does (the mask is not passed). diffusers is an optional extra, imported when
such a network is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError


class _Imported:
    """What the two imported U-Net configs share: their diffusers class, what they take, no training."""

    CLASS, KIND, TAKES, CHANNELS = "UNet2DModel", "diffusers-unet2d", "images", 3
    POOLED = None  # a subclass of CLASS whose self-attention pools its keys (diffkit's export of --attention-keys)
    unet: dict

    @property
    def in_channels(self) -> int:
        return int(self.unet.get("in_channels", self.CHANNELS))

    def check(self) -> None:
        name = self.unet.get("_class_name", self.CLASS)
        if name not in (self.CLASS, *([self.POOLED] if self.POOLED else [])):
            raise ConfigError(f"a {self.KIND} network is a {self.CLASS}" + (f" or a {self.POOLED}" if self.POOLED
                              else "") + f", not {name}")
        keys = self.unet.get("attention_keys")
        if name == self.POOLED and (isinstance(keys, bool) or not isinstance(keys, int) or keys < 1):
            raise ConfigError(f"a {self.POOLED}'s config.json names its attention_keys, a whole number >= 1 (the "
                              f"keys and values each self-attention pools to), got {keys!r}")

    def check_input(self, shape, what: str = "the data") -> None:
        size = self.unet.get("sample_size")
        size = [size, size] if isinstance(size, int) else list(size or [])
        if len(shape) != 3 or shape[0] != self.in_channels or (size and list(shape[1:]) != size):
            raise ConfigError(f"the imported {self.CLASS} takes [{self.in_channels}, {', '.join(map(str, size))}] "
                              f"{self.TAKES} but {what} has shape {list(shape)}")

    def activation_floats(self, shape) -> int:
        """About how many floats one training sample keeps for the backward pass (fine-tuning: runs/finetune.py):
        ~24 per channel and pixel at the widest level, for each level's blocks (an estimate for the memory check)."""
        widths = self.unet.get("block_out_channels") or [64]
        blocks = len(widths) * (2 * int(self.unet.get("layers_per_block", 2)) + 1)
        return 24 * max(widths) * int(shape[-1]) * int(shape[-2]) * blocks


@dataclass
class DiffusersUNetConfig(_Imported):
    POOLED = "PooledUNet2DModel"  # nn/diffusers_pooled_unet.py
    unet: dict = field(default_factory=dict)  # UNet2DModel's config.json, as diffusers wrote it
    num_classes: int = 0                      # > 0: class-conditional (its num_class_embeds)
    num_timesteps: int = 1000                 # training T (set from the schedule)


def diffusers_class(name: str = "UNet2DModel"):
    """A model class of diffusers (an optional extra), or a ConfigError saying how to install it."""
    try:
        import diffusers
    except ImportError:
        raise ConfigError(f"this run's network is a diffusers {name}; install diffusers "
                          "(pip install 'diffkit[diffusers]')") from None
    return getattr(diffusers, name)


class DiffusersUNet(nn.Module):
    """A UNet2DModel (built from its config, weights loaded by the run) behind diffkit's network signature."""

    def __init__(self, cfg: DiffusersUNetConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.unet.get("_class_name") == cfg.POOLED:  # diffkit's own module: a folder's copy of it is never run
            diffusers_class()  # (says how to install diffusers where it is missing)
            from .diffusers_pooled_unet import PooledUNet2DModel
            self.unet = PooledUNet2DModel.from_config(cfg.unet)
        else:
            self.unet = diffusers_class("UNet2DModel").from_config(cfg.unet)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        labels = cond if self.cfg.num_classes else None
        if self.cfg.num_classes and cond is None:  # unconditional: the null class (the last embedding of a diffkit
            # export; a run whose null class was never trained refuses this before it gets here)
            labels = torch.full((x.shape[0],), self.cfg.num_classes, dtype=torch.long, device=x.device)
        return self.unet(x, t, class_labels=labels).sample


@dataclass
class DiffusersCondUNetConfig(_Imported):
    CLASS, KIND, TAKES, CHANNELS = "UNet2DConditionModel", "diffusers-unet2d-cond", "latents", 4
    unet: dict = field(default_factory=dict)  # UNet2DConditionModel's config.json, as diffusers wrote it
    context_dim: int = 0                      # the text encoder's width (its cross_attention_dim)
    num_classes: int = 0                      # the registry's contract: text, not classes
    num_timesteps: int = 1000                 # training T (set from the schedule)


class DiffusersCondUNet(nn.Module):
    """A UNet2DConditionModel (Stable Diffusion's) behind diffkit's network signature."""

    def __init__(self, cfg: DiffusersCondUNetConfig):
        super().__init__()
        self.cfg = cfg
        self.unet = diffusers_class("UNet2DConditionModel").from_config(cfg.unet)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: dict | None = None) -> torch.Tensor:
        if cond is None:
            raise ConfigError("an imported Stable-Diffusion-style U-Net always reads a prompt's tokens (the null "
                              "prompt's for unconditional sampling)")
        return self.unet(x, t, encoder_hidden_states=cond["tokens"].to(x.dtype)).sample
