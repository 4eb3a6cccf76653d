"""diffkit's cache of computed tensors (a VAE's encoded latents, caption embeddings, image judges): safetensors
files under $DIFFKIT_CACHE (default ~/.cache/diffkit), each named by a hash of what it was computed from."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .rundir import save_tensors


def cache_root() -> Path:
    return Path(os.environ.get("DIFFKIT_CACHE") or "~/.cache/diffkit").expanduser()


def cached_tensors(name: str, rows: int, compute: Callable[[], dict[str, torch.Tensor]],
                   metadata: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """The tensors cached as `name`.safetensors when they load and each holds `rows` rows; else compute() them
    and cache the result (a damaged or stale file is recomputed)."""
    path = cache_root() / f"{name}.safetensors"
    if path.exists():
        try:
            cached = load_file(path)
            if cached and all(len(v) == rows for v in cached.values()):
                return cached
        except (SafetensorError, OSError):
            pass
    tensors = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(path, tensors, metadata)
    return tensors
