"""Distillation: a student that samples in a few network calls what its teacher needs many for. The student is an
ordinary run directory (config.json records its teacher by path and checksum, and how it was distilled); it
starts from the teacher's weights, samples without the teacher, with its own sampler and steps by default, and
resumes exactly after an interruption. Progressive distillation (Salimans & Ho 2022): training/distill.py."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from ..config import ParentConfig, RunConfig
from ..errors import ConfigError
from ..training.distributed import Runtime
from .teachers import check_teacher, teacher_sha256
from .train import train_run

METHODS = ("progressive",)
DEFAULT_STEPS = 4
FINEST = 32           # the first round's teacher takes this many steps (or twice the student's, if more)
TRAIN_SHARE = 0.5     # default training length: this share of the teacher's steps (each step calls the teacher twice)
LR_SHARE = 0.5        # the student's peak learning rate: this share of the teacher's


def rounds_for(steps: int) -> int:
    """Halvings from the first round's student (FINEST steps or fewer) down to `steps`; at least one."""
    return max(1, int(math.log2(FINEST // steps))) if steps < FINEST else 1


def distill_config(teacher, *, method: str = "progressive", steps: int = DEFAULT_STEPS, guidance: float | None = None,
                   train_steps: int | None = None, seed: int = 0) -> RunConfig:
    """The student's whole config: the teacher's data, network, fitted statistics and path; the teacher recorded
    as its parent; ddim at `steps` as its own sampler; the training split into halving rounds."""
    if method not in METHODS:
        raise ConfigError(f"unknown distillation method {method!r}; use one of: {', '.join(METHODS)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1 or steps & (steps - 1):
        raise ConfigError(f"a progressive student halves its teacher's steps, so --steps is a power of two (1, 2, 4, "
                          f"8, ...), got {steps!r}")
    t_cfg = check_teacher(teacher, "distillation", guidance)
    if t_cfg.distilled:
        raise ConfigError(f"{teacher} is already a distilled student; distill its teacher ({t_cfg.parent.path}) to "
                          "fewer steps instead")
    rounds = rounds_for(steps)
    config = RunConfig.from_dict(t_cfg.to_dict())
    t = config.train
    total = train_steps or max(rounds, round(t.steps * TRAIN_SHARE))
    if total < rounds:
        raise ConfigError(f"--train-steps {total} is fewer than the {rounds} halving rounds down to {steps} steps")
    per_round = total // rounds
    config.train = replace(t, steps=total, lr=t.lr * LR_SHARE, lr_cycles=rounds, seed=seed, ema_halflife=0.0,
                           warmup_steps=min(t.warmup_steps, max(1, per_round // 10)),
                           checkpoint_every=min(t.checkpoint_every, per_round))
    config.sampling = replace(config.sampling, sampler="ddim", steps=steps)
    config.parent = ParentConfig(kind="progressive", path=str(Path(teacher).resolve()), sha256=teacher_sha256(teacher),
                                 steps=steps, guidance=guidance, seed=seed, rounds=rounds, sampler="ddim")
    return config.validate()


def distill_run(teacher, out, *, progress: bool = True, runtime: Runtime | None = None, overwrite: bool = False,
                **settings) -> dict:
    """Distill `teacher` into the student run `out` (distill_config's settings)."""
    return train_run(distill_config(teacher, **settings), out, overwrite=overwrite, progress=progress, runtime=runtime)
