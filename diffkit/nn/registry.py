"""Network registry: a tagged config {"kind": ..., ...} -> (typed config, module). Nothing outside nn/ names a
network class.

Every network has one signature: network(x_t [B, ...], t float32 [B], cond=None) -> prediction [B, ...], and
its config carries `num_classes` (> 0: class-conditional, with the null class) and `num_timesteps` (set from
the schedule).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..errors import ConfigError, choice_error
from .diffusers_unet import (
    DiffusersCondUNet,
    DiffusersCondUNetConfig,
    DiffusersUNet,
    DiffusersUNetConfig,
)
from .dit import DiT, DiTConfig
from .mlp import MLP, MLPConfig
from .mlp_fast import fold_for_sampling
from .precision import Autocast
from .unet import UNet, UNetConfig
from .unet_fast import ChannelsLast, sampling_chunk
from .vae import VAE, VAEConfig


@dataclass(frozen=True)
class NetworkKind:
    config: type
    module: type
    # the sampling fast path (behind `for_sampling(fast=True)`), or None where the plain forward is the fast one
    fast: Callable[[nn.Module], nn.Module] | None
    # largest batch per network call while sampling: keeps activations in cache (points) or memory bounded (images)
    sampling_chunk: int


NETWORKS: dict[str, NetworkKind] = {
    # 25k points x hidden floats stay in a CPU's cache (a 100k-point batch in one pass runs ~1.9x slower)
    "mlp": NetworkKind(MLPConfig, MLP, fold_for_sampling, 25_000),
    "unet": NetworkKind(UNetConfig, UNet, ChannelsLast, 256),  # fast: channels_last, chunk by image size
    "dit": NetworkKind(DiTConfig, DiT, None, 256),
    "vae": NetworkKind(VAEConfig, VAE, None, 256),  # an autoencoder (training/objectives.py), not a denoiser
    "diffusers-unet2d": NetworkKind(DiffusersUNetConfig, DiffusersUNet, None, 256),  # imported (runs/interop.py)
    "diffusers-unet2d-cond": NetworkKind(DiffusersCondUNetConfig, DiffusersCondUNet, None, 64),  # (interop_sd.py)
}
IMAGE_NETWORKS = ("unet", "dit", "diffusers-unet2d", "diffusers-unet2d-cond")  # the kinds that take [B, C, H, W]


def kind_of(cfg) -> str:
    for name, k in NETWORKS.items():
        if isinstance(cfg, k.config):
            return name
    raise ConfigError(f"{type(cfg).__name__} is not a network config; known kinds: {', '.join(NETWORKS)}")


def network_to_dict(cfg) -> dict:
    return {"kind": kind_of(cfg), **dataclasses.asdict(cfg)}


def network_from_dict(d: dict):
    """The typed config of a tagged dict (a dict without "kind" is an MLP: run directories before the tag)."""
    d = dict(d)
    kind = d.pop("kind", "mlp")
    if kind not in NETWORKS:
        raise choice_error("network kind", kind, NETWORKS)
    cls = NETWORKS[kind].config
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise TypeError(f"unknown {cls.__name__} keys {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})  # (dicts stay dicts)


def build_network(cfg) -> nn.Module:
    return NETWORKS[kind_of(cfg)].module(cfg)


def for_sampling(network: nn.Module, fast: bool = True, precision: str = "fp32",
                 shape=None) -> tuple[nn.Module, int]:
    """(the network a sampler should call, its batch chunk): the kind's fast path where it has one and fast
    (the U-Net's chunk then sized to the sample shape and precision); precision bf16 wraps it in autocast
    (precision.sampling_precision decides what 'auto' means)."""
    name = kind_of(network.cfg)
    kind = NETWORKS[name]
    network.eval()
    net = kind.fast(network) if fast and kind.fast else network
    chunk = sampling_chunk(shape, precision) if fast and name == "unet" and shape is not None else kind.sampling_chunk
    return (Autocast(net) if precision == "bf16" else net), chunk
