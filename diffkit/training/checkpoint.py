"""Run directories: config.json + model.safetensors (EMA weights) + train_state/ for resume.

Never pickle: loading must not run code. Every write is atomic (temp file, fsync, rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..cond import ClassConditioning
from ..config import RunConfig
from ..data.normalize import Normalizer
from ..denoiser import Denoiser
from ..errors import CheckpointError
from ..nn import registry

CONFIG, MODEL, STATE_DIR, STATE = "config.json", "model.safetensors", "train_state", "state.safetensors"


def atomic_write(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; the file gets what open() would give it
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_config(run_dir, config: RunConfig) -> None:
    atomic_write(Path(run_dir) / CONFIG, json.dumps(config.to_dict(), indent=2).encode())


def save_tensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file; our metadata is one JSON entry so the bytes are deterministic."""
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    meta = json.dumps({"format": "diffkit", **(metadata or {})}, sort_keys=True)
    atomic_write(Path(path), st_save(tensors, metadata={"diffkit": meta}))


def read_tensors(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    try:
        data = path.read_bytes()
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_len]).get("__metadata__", {}) or {}
        metadata = json.loads(header["diffkit"]) if "diffkit" in header else {}
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; the run directory holds no trained model") from None
    except (SafetensorError, ValueError, OSError, json.JSONDecodeError):
        raise CheckpointError(f"{path} is truncated or not a safetensors file; retrain or restore the run") from None
    if not isinstance(metadata, dict) or metadata.get("format") != "diffkit":
        raise CheckpointError(f"{path} was not written by diffkit; expected a diffkit run's {path.name}")
    return tensors, metadata


def save_model(run_dir, state: dict[str, torch.Tensor], step: int) -> None:
    save_tensors(Path(run_dir) / MODEL, state, {"step": str(step)})


def read_config(run_dir) -> RunConfig:
    path = Path(run_dir) / CONFIG
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist; train one with `diffkit train --out DIR`")
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{run_dir} holds no config.json; it is not a diffkit run directory") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path} is truncated or not JSON; expected a diffkit run config") from None
    return RunConfig.from_dict(raw)


def build_network(config: RunConfig) -> torch.nn.Module:
    return registry.build_network(config.network)


def load_weights(network: torch.nn.Module, tensors: dict[str, torch.Tensor], path) -> None:
    expected = network.state_dict()
    if set(tensors) != set(expected) or any(tensors[k].shape != v.shape for k, v in expected.items()):
        raise CheckpointError(f"{path} does not match the network in config.json; the run directory is inconsistent")
    network.load_state_dict(tensors)


@dataclass
class Run:
    """A loaded run: its config, EMA network, Denoiser and the data normalizer."""

    config: RunConfig
    network: torch.nn.Module
    denoiser: Denoiser
    normalizer: Normalizer
    step: int


def load_run(run_dir, guidance_scale: float = 1.0, fast: bool = True) -> Run:
    """Everything `sample` needs, from the run directory alone.

    fast: the Denoiser calls the network kind's sampling fast path (e.g. the folded MLP) in its sampling
    chunks; False calls the plain network in one piece (the reference the fast path is tested against)."""
    config = read_config(run_dir)
    if config.fitted.normalizer is None:
        raise CheckpointError(f"{run_dir}/config.json has no fitted normalizer; the run never trained")
    network = build_network(config)
    tensors, meta = read_tensors(Path(run_dir) / MODEL)
    load_weights(network, tensors, Path(run_dir) / MODEL)
    sampling_net, chunk = registry.for_sampling(network, fast)
    num_classes = config.network.num_classes
    denoiser = Denoiser(sampling_net, config.schedule.build(), config.prediction,
                        conditioning=ClassConditioning(num_classes) if num_classes else None,
                        guidance_scale=guidance_scale, guidance_interval=config.sampling.guidance_interval,
                        clip_x0=config.fitted.x0_bound, chunk=chunk if fast else None)
    return Run(config, network, denoiser, Normalizer(**config.fitted.normalizer), int(meta.get("step", 0)))
