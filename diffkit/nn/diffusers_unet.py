"""diffusers' UNet2DModel as a network kind: the network of a run imported from a diffusers folder
(`diffkit import --diffusers FOLDER`, runs/interop.py).

The run keeps the model's own config.json (as diffusers wrote it) in its config and the weights, under the
prefix "unet.", in its model.safetensors, so it samples through the same contract as every network:
network(x_t [B, C, H, W], t float [B] in training timesteps, cond class ids [B] | None) -> prediction. diffusers
is an optional extra, imported when such a network is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError


@dataclass
class DiffusersUNetConfig:
    unet: dict = field(default_factory=dict)  # UNet2DModel's config.json, as diffusers wrote it
    num_classes: int = 0                      # > 0: class-conditional (its num_class_embeds)
    num_timesteps: int = 1000                 # training T (set from the schedule)

    @property
    def in_channels(self) -> int:
        return int(self.unet.get("in_channels", 3))

    def check(self) -> None:
        if self.unet.get("_class_name", "UNet2DModel") != "UNet2DModel":
            raise ConfigError(f"a diffusers-unet2d network is a UNet2DModel, not {self.unet.get('_class_name')}")

    def check_input(self, shape, what: str = "the data") -> None:
        size = self.unet.get("sample_size")
        size = [size, size] if isinstance(size, int) else list(size or [])
        if len(shape) != 3 or shape[0] != self.in_channels or (size and list(shape[1:]) != size):
            raise ConfigError(f"the imported UNet2DModel takes [{self.in_channels}, {', '.join(map(str, size))}] "
                              f"images but {what} has shape {list(shape)}")

    def activation_floats(self, shape) -> int:
        raise ConfigError("an imported diffusers UNet2DModel samples; training it is not supported")


def unet2d_class():
    try:
        from diffusers import UNet2DModel
    except ImportError:
        raise ConfigError("this run's network is a diffusers UNet2DModel; install diffusers "
                          "(pip install 'diffkit[diffusers]')") from None
    return UNet2DModel


class DiffusersUNet(nn.Module):
    """A UNet2DModel (built from its config, weights loaded by the run) behind diffkit's network signature."""

    def __init__(self, cfg: DiffusersUNetConfig):
        super().__init__()
        self.cfg = cfg
        self.unet = unet2d_class().from_config(cfg.unet)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        labels = cond if self.cfg.num_classes else None
        return self.unet(x, t, class_labels=labels).sample
