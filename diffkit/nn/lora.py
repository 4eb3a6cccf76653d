"""LoRA adapters on a diffkit network, through peft (Hu et al. 2022, 'LoRA: Low-Rank Adaptation of Large Language
Models', eq. 3): a target layer's W x becomes W x + (alpha / r) B A x with A [r, in] and B [out, r]; B starts at
zero, so the adapted network starts as its base, and only A and B train. A convolution's A is a convolution of
its kernel size into r channels and B a 1x1 one (peft's Conv2d LoRA).

Which layers take adapters (TARGETS, measured: benchmarks/lora.py, docs/edit.md): names are matched in full
against the network's Linear and Conv2d modules.
"""

from __future__ import annotations

import copy
import re

import torch
from torch import nn

from ..errors import ConfigError

TARGETS = {
    # the attention layers' projections: the U-Net's qkv / out (and a text run's cross-attention q / kv), the DiT's
    # qkv / proj, an imported diffusers U-Net's to_q / to_k / to_v / to_out
    "attention": r".*\.(qkv|out|proj|q|kv|to_q|to_k|to_v|to_out\.0)",
    # and the embedding layers: the time embedding's MLP, each residual block's projection of it (U-Net; diffusers'
    # time_emb_proj), the DiT's adaptive-norm layers; for the MLP (no attention) its residual blocks and embeddings
    "attention+embed": r".*\.(qkv|out|proj|q|kv|to_q|to_k|to_v|to_out\.0|embed|ada\.\d+|fc1|fc2|time_emb_proj"
                       r"|linear_\d)|embed\.\d+|block_embed",
    # every Linear and Conv2d but the output layer
    "all": r".*",
}
DEFAULT_TARGETS = "attention+embed"
ADAPTER = "lora_"  # what peft's adapter weights are named


def _peft():
    try:
        import peft
    except ImportError:
        raise ConfigError("LoRA fine-tuning needs peft; install it with `pip install 'diffkit[lora]'`") from None
    return peft


def target_names(network: nn.Module, targets: str) -> list[str]:
    """The Linear and Conv2d modules of `network` that preset `targets` names."""
    if targets not in TARGETS:
        raise ConfigError(f"unknown LoRA targets {targets!r}; use one of: {', '.join(TARGETS)}")
    names = [n for n, m in network.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))
             and re.fullmatch(TARGETS[targets], n) and n.split(".")[0] not in ("out", "ada_out")]
    if not names:
        raise ConfigError(f"this network has no layers that LoRA targets {targets!r} names; use --lora-targets all")
    return names


def attach(network: nn.Module, rank: int, targets: str = DEFAULT_TARGETS) -> nn.Module:
    """The network with rank-`rank` LoRA adapters (alpha = rank) on its target layers, everything else frozen."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"the LoRA rank is a whole number >= 1, got {rank!r}")
    peft = _peft()
    config = peft.LoraConfig(r=rank, lora_alpha=rank, target_modules=target_names(network, targets))
    return peft.inject_adapter_in_model(config, network)


def adapter_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Only the adapters' weights of a state dict (what a LoRA run's model.safetensors holds)."""
    return {k: v for k, v in state.items() if ADAPTER in k}


def count(network: nn.Module) -> tuple[int, int]:
    """(the adapters' parameters, the base network's)."""
    adapters = sum(p.numel() for n, p in network.named_parameters() if ADAPTER in n)
    return adapters, sum(p.numel() for p in network.parameters()) - adapters


def merged(network: nn.Module, base: nn.Module) -> nn.Module:
    """A plain copy of `base` (the network's kind, no adapters) holding W + (alpha / r) B A in every target."""
    plain = copy.deepcopy(base)
    plain.load_state_dict(merge_in_place(copy.deepcopy(network)))
    return plain


def merge_in_place(adapted: nn.Module) -> dict[str, torch.Tensor]:
    """Merge every adapter of `adapted` into its layer's weight (W + (alpha / r) B A, changing `adapted`) and
    return the plain network's state dict (no adapter keys, the base layers' names)."""
    from peft.tuners.lora import LoraLayer

    for module in adapted.modules():
        if isinstance(module, LoraLayer):
            module.merge()
    return {k.replace(".base_layer", ""): v for k, v in adapted.state_dict().items() if ADAPTER not in k}
