"""The library's front door: train a run directory, sample from it, evaluate samples.

The CLI and the benchmarks are thin layers over these three functions.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from .config import RunConfig
from .data.normalize import Normalizer
from .data.labeled import CLASS_NAMES, LABELED_MAKERS
from .data.points import PointSource, _check_spec
from .errors import CheckpointError, ConfigError, DataError
from .metrics.points import evaluate_points
from .sampling import sample as run_sampler
from .training.checkpoint import CONFIG, MODEL, STATE_DIR, Run, load_run, read_config
from .training.trainer import LOG, Trainer

RUN_FILES = (CONFIG, MODEL, STATE_DIR, LOG)


def is_run_dir(path) -> bool:
    return any((Path(path) / f).exists() for f in RUN_FILES)


def train_run(config: RunConfig | None, out, *, resume: bool = False, overwrite: bool = False,
              steps: int | None = None, progress: bool = True, callback=None) -> dict:
    """Train into `out`. resume: continue `out` from its train_state (its config.json wins; `steps`
    may raise the total). overwrite: replace an existing run. Never silently replaces a run."""
    out = Path(out)
    if resume:
        config = read_config(out)
        if steps is not None:
            config.train.steps = steps
    else:
        config = (config or RunConfig()).validate()
        if is_run_dir(out):
            if not overwrite:
                raise CheckpointError(f"{out} already holds a run; pass --overwrite to replace it or --resume to continue it")
            for name in RUN_FILES:
                p = out / name
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    trainer = make_trainer(config, out, progress=progress, callback=callback)
    if resume:
        trainer.load_state()
    return {**trainer.train(), "run_dir": str(out), "final_step": trainer.step}


def make_trainer(config: RunConfig, out, *, progress: bool = True, callback=None) -> Trainer:
    """A Trainer on the config's data (and labels, for a conditional run), filling in what training
    derives from the data: normalizer, x0 bound, class count and names."""
    points, labels = PointSource(_check_spec(config.data.spec)).train_labeled(config.data.num_points, config.train.seed)
    labels = _conditional_labels(config, labels) if config.data.cond else None
    if config.data.normalizer is None:
        config.data.normalizer = Normalizer.fit(points).to_config()
    x0 = torch.from_numpy(Normalizer(**config.data.normalizer).apply(points))
    if config.data.x0_bound is None:
        config.data.x0_bound = float(x0.abs().max())
    return Trainer(config, x0, out, labels=labels, progress=progress, callback=callback)


def _conditional_labels(config: RunConfig, labels) -> torch.Tensor:
    """The labels as a tensor, after setting (or checking, on resume) the network's class count from them."""
    if labels is None:
        raise DataError(f"{config.data.spec} has no labels, so a conditional model cannot be trained on it; use "
                        f"{', '.join(LABELED_MAKERS)}, an .npz with x [N, 2] and y [N], or a CSV of x, y, label rows")
    num_classes = int(labels.max()) + 1
    if config.network.num_classes == 0:
        config.network.num_classes = num_classes
        config.data.class_names = list(CLASS_NAMES.get(config.data.spec, [str(c) for c in range(num_classes)]))
    elif config.network.num_classes != num_classes:
        raise DataError(f"{config.data.spec} now has {num_classes} classes but the run was trained with "
                        f"{config.network.num_classes}")
    return torch.from_numpy(labels)


def sample_run(run: Run | str | Path, n: int, sampler: str = "ddim", steps: int | None = None, *,
               seed: int = 0, spacing: str | None = None, callback=None, clip: bool = True,
               cond=None, guidance: float | None = None, **options) -> np.ndarray:
    """n samples in the data's own coordinates, float32 [n, D]; same seed => bitwise identical.

    clip: clip x0_hat to the training data's bounding box (see DataConfig.x0_bound).
    cond: for a conditional run, a class (id or name) for all n samples, or n class ids (a mixed batch);
        None samples the unconditional model (the null class).
    guidance: classifier-free guidance scale w (default 1: the plain conditional model; 0: unconditional).
    """
    if not isinstance(run, Run):
        run = load_run(run)
    labels = class_labels(run.config, cond, n)
    changes = {} if clip else {"clip_x0": None}
    if guidance is not None:
        if labels is None:
            raise ConfigError("a guidance scale needs a class to guide towards; give one (--class)")
        changes["guidance_scale"] = guidance
    denoiser = run.denoiser.replace(**changes) if changes else run.denoiser
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn((n, run.config.network.dim), generator=g)
    x = run_sampler(denoiser, x_T, sampler, steps, spacing, generator=g, callback=callback, cond=labels, **options)
    return run.normalizer.invert(x.numpy())


def class_labels(config: RunConfig, cond, n: int) -> torch.Tensor | None:
    """cond (None, one class id or name, or n ids) as long [n] class ids of this run, checked."""
    if cond is None:
        return None
    num_classes = config.network.num_classes
    if not num_classes:
        raise ConfigError("this run is unconditional (trained without --cond), so it cannot sample a class")
    names = list(config.data.class_names or [])
    valid = f"0..{num_classes - 1}" + (f" ({', '.join(f'{i} = {c}' for i, c in enumerate(names))})" if names else "")
    if isinstance(cond, str):
        if cond in names:
            cond = names.index(cond)
        else:
            try:
                cond = int(cond)
            except ValueError:
                raise ConfigError(f"unknown class {cond!r}; this model has classes {valid}") from None
    labels = torch.as_tensor(np.asarray(cond))
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ConfigError(f"class ids must be integers; this model has classes {valid}")
    if labels.ndim == 0:
        labels = labels.expand(n)
    if labels.shape != (n,):
        raise ConfigError(f"give one class for all samples or one per sample ({n}), got shape {list(labels.shape)}")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if len(bad):
        raise ConfigError(f"class {int(bad[0])} is out of range; this model has classes {valid}")
    return labels.long().contiguous()


def eval_samples(samples: np.ndarray, spec: str, *, n_reference: int = 4000, seed: int = 0) -> dict:
    """Metrics of samples against fresh data, with the data-vs-data floor beside each."""
    source = PointSource(_check_spec(spec))
    n = min(n_reference, len(samples)) if source.is_builtin else n_reference
    reference = source.fresh(n, seed)
    floor_reference = source.fresh(n, seed + (1 if source.is_builtin else 7))
    return evaluate_points(samples[:n_reference], reference, floor_reference, circle=spec == "circle")
