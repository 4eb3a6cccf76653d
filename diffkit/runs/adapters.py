"""A LoRA run loaded: its base's weights (checked against the checksum it recorded) with its adapters merged in
(runs/finetune.py makes such runs; nn/lora.py the adapters)."""

from __future__ import annotations

import copy
from pathlib import Path

from ..config import RunConfig
from ..errors import CheckpointError
from ..nn import lora
from ..store.rundir import (
    MODEL,
    model_checksums,
    model_sha256,
    read_model,
    read_tensors,
)


def is_lora(config: RunConfig) -> bool:
    return config.parent is not None and config.parent.kind == "lora"


def check_base(config: RunConfig) -> None:
    """Refuse a LoRA run whose base is gone or no longer holds the weights it was fine-tuned from."""
    parent = config.parent
    if model_sha256(parent.path) != parent.sha256:
        raise CheckpointError(f"the base run {parent.path} is gone or changed since this LoRA run was made (its "
                              "weights' checksum differs); restore it (a LoRA run stores only its adapters)")


def read_lora(run_dir, config: RunConfig, network) -> dict:
    """Load a LoRA run into `network` (a plain network of its kind): the base's weights, checked against the
    checksum the run recorded, plus the run's adapters, merged. Returns the run's model metadata (step)."""
    parent = config.parent
    check_base(config)
    read_model(parent.path, network)
    adapted = lora.attach(copy.deepcopy(network), parent.rank, parent.targets)
    tensors, meta = read_tensors(Path(run_dir) / MODEL, *model_checksums(run_dir))
    expected = lora.adapter_state(adapted.state_dict())
    if set(tensors) != set(expected) or any(tensors[k].shape != v.shape for k, v in expected.items()):
        raise CheckpointError(f"{run_dir}/{MODEL} does not hold the adapters config.json describes; the run directory "
                              "is inconsistent")
    adapted.load_state_dict(tensors, strict=False)
    network.load_state_dict(lora.merge_in_place(adapted))  # `adapted` is this function's own copy
    return meta
