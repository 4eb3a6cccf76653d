"""Run directories: config.json + model.safetensors (EMA weights) + manifest.json (their checksums) +
train_state/step-NNNNNNNN/ (the last few resumable states, each a folder with its own manifest).

Never pickle: loading must not run code. Every write is atomic (temp file, fsync, rename, folder fsync); a
checkpoint folder appears all at once. Each file read is checked against its manifest.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..config import RunConfig
from ..errors import CheckpointError
from .manifest import (
    MANIFEST,
    atomic_dir,
    atomic_write,
    manifest_bytes,
    read_manifest,
    sha256,
    verify,
)

CONFIG, MODEL, STATE_DIR, STATE = "config.json", "model.safetensors", "train_state", "state.safetensors"
STEP_DIR = re.compile(r"step-(\d{8})")


def save_config(run_dir, config: RunConfig) -> None:
    atomic_write(Path(run_dir) / CONFIG, json.dumps(config.to_dict(), indent=2).encode())


def tensor_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """A safetensors file's bytes; our metadata is one JSON entry so the bytes are deterministic."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    meta = json.dumps({"format": "diffkit", **(metadata or {})}, sort_keys=True)
    return st_save(tensors, metadata={"diffkit": meta})


def save_tensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    atomic_write(Path(path), tensor_bytes(tensors, metadata))


def _read_bytes(path: Path, missing: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(missing) from None
    except OSError as e:
        raise CheckpointError(f"cannot read {path} ({e.strerror})") from None


def read_tensors(path, *checksums: str | None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A diffkit safetensors file, refused unless its sha256 is one of `checksums` (when any are given)."""
    path = Path(path)
    data = _read_bytes(path, f"{path} is missing; the run directory holds no trained model")
    verify(path, data, *checksums)
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_len]).get("__metadata__", {}) or {}
        metadata = json.loads(header["diffkit"]) if "diffkit" in header else {}
    except (SafetensorError, ValueError, OSError, json.JSONDecodeError):
        raise CheckpointError(f"{path} is truncated or not a safetensors file; retrain or restore the run") from None
    if not isinstance(metadata, dict) or metadata.get("format") != "diffkit":
        raise CheckpointError(f"{path} was not written by diffkit; expected a diffkit run's {path.name}")
    return tensors, metadata


def save_model(run_dir, state: dict[str, torch.Tensor], step: int) -> None:
    """A bare model.safetensors (EMA weights), for snapshots written outside a training run."""
    save_tensors(Path(run_dir) / MODEL, state, {"step": str(step)})


def step_dir(run_dir, step: int) -> Path:
    return Path(run_dir) / STATE_DIR / f"step-{step:08d}"


def checkpoint_steps(run_dir) -> list[int]:
    """Steps of the complete checkpoint folders in train_state/, oldest first (temp folders are ignored)."""
    folder = Path(run_dir) / STATE_DIR
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := STEP_DIR.fullmatch(p.name)) and p.is_dir())


def save_checkpoint(run_dir, step: int, model: dict[str, torch.Tensor], state: dict[str, torch.Tensor],
                    state_meta: dict[str, str], keep: int) -> None:
    """One checkpoint: the resumable state as a new folder train_state/step-N/ (with a manifest that also
    records the model's checksum), then model.safetensors, then manifest.json; older folders beyond the
    last `keep` are removed. An interruption at any point leaves a loadable run (see runs.pipeline.load_run)."""
    run_dir = Path(run_dir)
    model_bytes = tensor_bytes(model, {"step": str(step)})
    state_bytes = tensor_bytes(state, {"step": str(step), **state_meta})
    folder = step_dir(run_dir, step)
    if not folder.exists():  # a second save at the same step (e.g. Ctrl-C right after one) holds the same state
        atomic_dir(folder, {STATE: state_bytes, MANIFEST: manifest_bytes(
            {STATE: sha256(state_bytes), MODEL: sha256(model_bytes)}, step=step)})
    atomic_write(run_dir / MODEL, model_bytes)
    config_sha = sha256((run_dir / CONFIG).read_bytes())
    atomic_write(run_dir / MANIFEST, manifest_bytes({CONFIG: config_sha, MODEL: sha256(model_bytes)}, step=step))
    for old in checkpoint_steps(run_dir)[:-keep]:
        shutil.rmtree(step_dir(run_dir, old), ignore_errors=True)


def read_state(run_dir) -> tuple[dict[str, torch.Tensor], dict[str, str], Path] | None:
    """The newest checkpoint's state tensors, metadata and path (checked against its manifest); None when the
    run never reached a checkpoint."""
    steps = checkpoint_steps(run_dir)
    if not steps:
        legacy = Path(run_dir) / STATE_DIR / STATE  # runs written before checkpoint folders
        return (*read_tensors(legacy), legacy) if legacy.exists() else None
    folder = step_dir(run_dir, steps[-1])
    manifest = read_manifest(folder)
    if manifest is None:
        raise CheckpointError(f"{folder} has no {MANIFEST}; the checkpoint is incomplete")
    path = folder / STATE
    tensors, meta = read_tensors(path, manifest["files"].get(STATE) or "missing")
    if meta.get("step") != str(steps[-1]):
        raise CheckpointError(f"{path} holds step {meta.get('step')}, not the {steps[-1]} its folder names; "
                              "it was swapped with another checkpoint")
    return tensors, meta, path


def read_config(run_dir) -> RunConfig:
    path = Path(run_dir) / CONFIG
    if Path(run_dir).exists() and not Path(run_dir).is_dir():
        raise CheckpointError(f"{run_dir} is a file, not a diffkit run directory (a folder that `diffkit train --out "
                              "DIR` wrote)")
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist; train one with `diffkit train --out DIR`")
    data = _read_bytes(path, f"{run_dir} holds no config.json; it is not a diffkit run directory")
    manifest = read_manifest(run_dir)
    if manifest is not None:
        verify(path, data, manifest["files"].get(CONFIG) or "missing")
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path} is truncated or not JSON; expected a diffkit run config") from None
    return RunConfig.from_dict(raw)


def model_checksums(run_dir) -> tuple[str | None, ...]:
    """The checksums model.safetensors may have: the run manifest's, and the newest checkpoint's (a run
    interrupted between writing the model and its manifest); empty for runs from before manifests."""
    manifest = read_manifest(run_dir)
    if manifest is None:
        return ()
    steps = checkpoint_steps(run_dir)
    newest = read_manifest(step_dir(run_dir, steps[-1])) if steps else None
    return manifest["files"].get(MODEL) or "missing", (newest or {}).get("files", {}).get(MODEL)


def load_weights(network: torch.nn.Module, tensors: dict[str, torch.Tensor], path, new: tuple[str, ...] = ()) -> None:
    """tensors into network, every one matching; parameters under the prefixes `new` may be absent (they keep the
    network's own initialisation: a student's guidance embedding, absent from its teacher)."""
    expected = network.state_dict()
    tensors = {**{k: v for k, v in expected.items() if k.startswith(new) and k not in tensors}, **tensors} \
        if new else tensors
    if set(tensors) != set(expected) or any(tensors[k].shape != v.shape for k, v in expected.items()):
        raise CheckpointError(f"{path} does not match the network in config.json; the run directory is inconsistent")
    network.load_state_dict(tensors)


def model_sha256(run_dir) -> str | None:
    """The sha256 of a run's model.safetensors (what a derived run records of its parent); None if it has none."""
    path = Path(run_dir) / MODEL
    return sha256(path.read_bytes()) if path.is_file() else None


def read_model(run_dir, network: torch.nn.Module) -> dict[str, str]:
    """Load a run's model.safetensors (checked against its manifest) into `network`; its metadata (step)."""
    path = Path(run_dir) / MODEL
    tensors, meta = read_tensors(path, *model_checksums(run_dir))
    load_weights(network, tensors, path)
    return meta
