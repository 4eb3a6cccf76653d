"""LoRA fine-tuning: a base run adapted to new data through low-rank adapters (nn/lora.py). The LoRA run is a
derived run: its config is the base's (network, path, conditioning, fitted statistics) with the new data, its
parent the base by path and checksum, and its model.safetensors holds only the adapters. Loading it reads the
base, attaches and loads the adapters and merges them, so sampling runs a plain network of the base's kind (with
its fast paths); `merge_run` writes that as a full run of its own."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ..config import ParentConfig, RunConfig
from ..data.images import is_image_spec, load_images
from ..errors import ConfigError
from ..nn import lora
from ..store.manifest import atomic_dir, manifest_bytes, sha256
from ..store.rundir import CONFIG, MANIFEST, MODEL, tensor_bytes
from .adapters import is_lora
from .pipeline import load_run
from .teachers import check_teacher, teacher_sha256
from .train import train_run

DEFAULT_RANK = 8
# default training length and learning rate (benchmarks/lora.py, docs/edit.md: mnist5k's default run adapted to
# digits upscaled to 28x28 from 100 images, rank 8 on attention+embed, 300 steps: FD 7.21x the floor at the base's
# learning rate (2e-3), 4.36x at 3x, 3.99x at 6x, 3.88x at 10x, against 3.33x for a full fine-tune at equal time)
DEFAULT_STEPS = 300
LR_SHARE = 10.0


def finetune_config(base, data: str, *, rank: int = DEFAULT_RANK, targets: str = lora.DEFAULT_TARGETS,
                    train_steps: int | None = None, lr: float | None = None, seed: int = 0,
                    full: bool = False) -> RunConfig:
    """The LoRA run's whole config: the base's, trained on `data` (of the base's shape and conditioning). full:
    every weight trains instead (a full fine-tune, kind "finetune", storing the whole network)."""
    b = check_teacher(base, "fine-tuning", None)
    if is_lora(b):
        raise ConfigError(f"{base} is a LoRA run itself; merge it first (`diffkit merge --run {base} --out RUN`) and "
                          "fine-tune the merged run")
    if b.parent is not None and b.parent.reads:
        raise ConfigError(f"{base} is an imported Stable Diffusion pipeline; LoRA fine-tuning takes diffkit's own "
                          "runs and imported diffusers U-Nets")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"--lora-rank is a whole number >= 1, got {rank!r}")
    if targets not in lora.TARGETS:
        raise ConfigError(f"unknown --lora-targets {targets!r}; use one of: {', '.join(lora.TARGETS)}")
    if train_steps is not None and (isinstance(train_steps, bool) or not isinstance(train_steps, int) or
                                    train_steps < 1):
        raise ConfigError(f"--train-steps is a whole number >= 1, got {train_steps!r}")
    _check_data_shape(b, data)
    config = RunConfig.from_dict(b.to_dict())
    config.data = replace(config.data, spec=data)
    config.fitted.data_sha256 = None  # the new data's, measured when training starts
    t = config.train
    steps = train_steps or DEFAULT_STEPS
    config.train = replace(t, steps=steps, lr=lr or t.lr * (1.0 if full else LR_SHARE), seed=seed,
                           warmup_steps=min(t.warmup_steps, max(1, steps // 10)),
                           checkpoint_every=min(t.checkpoint_every, steps))
    config.parent = ParentConfig(kind="finetune" if full else "lora", path=str(Path(base).resolve()),
                                 sha256=teacher_sha256(base), rank=0 if full else rank, targets=None if full else targets)
    return config.validate()


def _check_data_shape(base: RunConfig, data: str) -> None:
    """Refuse, before training, data of another kind or shape than the base was trained on."""
    images = base.fitted.image_shape is not None
    if images != is_image_spec(data):
        raise ConfigError(f"the base run was trained on {'images' if images else 'points'}, but {data} holds "
                          f"{'points' if images else 'images'}; fine-tune on data of the base's kind")
    if images:
        shape = list(load_images(data).shape)
        if shape != list(base.fitted.image_shape):
            raise ConfigError(f"{data} holds images of shape {shape} but the base run makes {base.fitted.image_shape}; "
                              "fine-tune on images of the base's shape")


def finetune_run(base, data: str, out, *, progress: bool = True, overwrite: bool = False, runtime=None,
                 **settings) -> dict:
    """Fine-tune `base` on `data` into the LoRA run `out` (finetune_config's settings)."""
    return train_run(finetune_config(base, data, **settings), out, overwrite=overwrite, progress=progress,
                     runtime=runtime)


def merge_run(run_dir, out) -> RunConfig:
    """Write run directory `out` (new): the LoRA run's adapters merged into its base, a full run of its own (its
    parent: none; it samples, fine-tunes and exports as any trained run)."""
    out = Path(out)
    if out.exists():
        raise ConfigError(f"{out} already exists; merge into a new run directory")
    run = load_run(run_dir, fast=False, precision="fp32")
    if not is_lora(run.config):
        raise ConfigError(f"{run_dir} is not a LoRA run (made by `diffkit finetune`); there is nothing to merge")
    config = RunConfig.from_dict(run.config.to_dict())
    config.parent = None
    config_bytes = json.dumps(config.to_dict(), indent=2).encode()
    model = tensor_bytes({k: v.detach().cpu().contiguous() for k, v in run.network.state_dict().items()},
                         {"step": str(run.step)})
    atomic_dir(out, {CONFIG: config_bytes, MODEL: model,
                     MANIFEST: manifest_bytes({CONFIG: sha256(config_bytes), MODEL: sha256(model)}, step=run.step)})
    return config
