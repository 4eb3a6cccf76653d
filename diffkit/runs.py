"""The library's front door: train a run directory, sample from it, evaluate samples.

The CLI and the benchmarks are thin layers over these three functions.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import torch

from .config import RunConfig
from .data.normalize import Normalizer
from .data.points import PointSource, _check_spec
from .errors import CheckpointError
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
    source = PointSource(_check_spec(config.data.spec))
    points = source.train(config.data.num_points, config.train.seed)
    if config.data.normalizer is None:
        config.data.normalizer = Normalizer.fit(points).to_config()
    x0 = torch.from_numpy(Normalizer(**config.data.normalizer).apply(points))
    if config.data.x0_bound is None:
        config.data.x0_bound = float(x0.abs().max())
    trainer = Trainer(config, x0, out, progress=progress, callback=callback)
    if resume:
        trainer.load_state()
    return {**trainer.train(), "run_dir": str(out), "final_step": trainer.step}


def sample_run(run: Run | str | Path, n: int, sampler: str = "ddim", steps: int | None = None, *,
               seed: int = 0, spacing: str | None = None, callback=None, clip: bool = True, **options) -> np.ndarray:
    """n samples in the data's own coordinates, float32 [n, D]; same seed => bitwise identical.

    clip: clip x0_hat to the training data's bounding box (see DataConfig.x0_bound)."""
    if not isinstance(run, Run):
        run = load_run(run)
    denoiser = run.denoiser
    if not clip:
        denoiser = copy.copy(denoiser)
        denoiser.clip_x0 = None
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn((n, run.config.network.dim), generator=g)
    x = run_sampler(denoiser, x_T, sampler, steps, spacing, generator=g, callback=callback, **options)
    return run.normalizer.invert(x.numpy())


def eval_samples(samples: np.ndarray, spec: str, *, n_reference: int = 4000, seed: int = 0) -> dict:
    """Metrics of samples against fresh data, with the data-vs-data floor beside each."""
    source = PointSource(_check_spec(spec))
    n = min(n_reference, len(samples)) if source.is_builtin else n_reference
    reference = source.fresh(n, seed)
    floor_reference = source.fresh(n, seed + (1 if source.is_builtin else 7))
    return evaluate_points(samples[:n_reference], reference, floor_reference, circle=spec == "circle")
