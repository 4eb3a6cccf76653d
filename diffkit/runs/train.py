"""Train a run directory: a new run, a resumed one, or one that replaces an old run only once it has its first
checkpoint. Only rank 0 writes; the other ranks train alongside it."""

from __future__ import annotations

import os
import shutil
from contextlib import nullcontext
from pathlib import Path

from ..config import RunConfig
from ..data.fingerprint import absolute_spec
from ..errors import (
    CheckpointError,
    ConfigError,
    StorageError,
    TrainingInterrupted,
    notice,
)
from ..store.lock import RunLock
from ..store.rundir import (
    CONFIG,
    MODEL,
    STATE_DIR,
    checkpoint_steps,
    model_checksums,
    read_config,
    read_tensors,
)
from ..training.distributed import Runtime
from ..training.trainer import LOG, Trainer
from .adapters import check_base, is_lora
from .sources import BUILTIN, make_source
from .teachers import distill_objective

RUN_FILES = (CONFIG, MODEL, STATE_DIR, LOG)


def is_run_dir(path) -> bool:
    return any((Path(path) / f).exists() for f in RUN_FILES)


def refuse_existing(out: Path) -> None:
    """A new run (without --overwrite) into `out`, which holds a run: one sentence saying which flag to add."""
    if not checkpoint_steps(out) and not (out / MODEL).exists():
        raise CheckpointError(f"{out} holds a run that stopped before its first checkpoint; pass --resume to "
                              "start it again from step 0 or --overwrite to replace it")
    raise CheckpointError(f"{out} already holds a run; pass --overwrite to replace it or --resume to continue it")


def train_run(config: RunConfig | None, out, *, resume: bool = False, overwrite: bool = False,
              steps: int | None = None, progress: bool = True, callback=None, runtime: Runtime | None = None,
              steps_flag: str = "--steps") -> dict:
    """Train into `out`. resume: continue `out` from its newest checkpoint, to the steps its config.json set
    (`steps`, when given, must agree; steps_flag: how the caller's command names them, for its refusals). overwrite: train into a new folder beside `out` and swap it in at its
    first checkpoint (the old run survives an interruption before that). Never silently replaces a run.
    runtime: device, micro-batching, compile and this process's rank (training.distributed.start); only rank 0
    writes, the other ranks train alongside it."""
    out, runtime = Path(out), runtime or Runtime()
    if out.exists() and not out.is_dir():
        raise StorageError(f"{out} is a file, not a folder; give --out a folder name (new, or a run to resume)")
    if resume:
        return _resume(out, steps, progress, callback, runtime, steps_flag)
    config = (config or RunConfig()).validate()
    config.data.spec = absolute_spec(config.data.spec, BUILTIN)
    if not is_run_dir(out):
        trainer = make_trainer(config, out, progress=progress, callback=callback, runtime=runtime)
        return {**trainer.train(), "run_dir": str(out), "final_step": trainer.step}
    if not overwrite:
        refuse_existing(out)
    if not runtime.is_main:  # rank 0 swaps the new run in; the others only train beside it
        trainer = make_trainer(config, out, progress=progress, callback=callback, runtime=runtime)
        return {**trainer.train(), "run_dir": str(out), "final_step": trainer.step}
    return _overwrite(config, out, progress, callback, runtime)


def _resume(out: Path, steps, progress, callback, runtime: Runtime, steps_flag: str) -> dict:
    # read_config says what is wrong with a missing run; only rank 0 locks (and writes)
    with RunLock(out) if out.is_dir() and runtime.is_main else nullcontext():
        config = read_config(out)
        trainer = make_trainer(config, out, progress=progress, callback=callback, runtime=runtime)
        trainer.lock_held = True
        return _continue(trainer, out, steps, steps_flag)


def _continue(trainer: Trainer, out: Path, steps, flag: str = "--steps") -> dict:
    total = trainer.cfg.steps
    if not trainer.load_state():
        notice(f"{out} stopped before its first checkpoint; training starts again from step 0")
    if steps is not None and steps != total:
        raise ConfigError(f"--resume continues this run to its {total} steps (its learning-rate schedule ends "
                          f"there; it has done {trainer.step}); {flag} {steps} would make it a different run, so "
                          f"start a new run with {flag} instead")
    if trainer.step >= total:
        raise ConfigError(f"{out} already finished its {total} steps; sample it, or start a new run with more {flag}")
    return {**trainer.train(), "run_dir": str(out), "final_step": trainer.step}


def _overwrite(config: RunConfig, out: Path, progress, callback, runtime: Runtime) -> dict:
    """Train into .OUT.new-PID beside `out`; at the first checkpoint the new folder takes out's place."""
    with RunLock(out):  # nobody may be training in the run being replaced
        new = out.parent / f".{out.name}.new-{os.getpid()}"
        shutil.rmtree(new, ignore_errors=True)
        trainer = make_trainer(config, new, progress=progress, callback=callback, runtime=runtime)
        swapped = []

        def swap(step: int) -> None:
            if swapped:
                return
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            try:
                os.rename(out, old)
                os.rename(new, out)
            except OSError as e:
                raise StorageError(f"could not put the new run in place of {out} ({e.strerror}); it is in {new}") from None
            trainer.run_dir = out
            swapped.append(step)
            shutil.rmtree(old, ignore_errors=True)

        trainer.checkpointed = swap
        try:
            summary = trainer.train()
        except KeyboardInterrupt:
            if not swapped:
                raise TrainingInterrupted(f"stopped before the first checkpoint; {out} still holds the previous run") from None
            raise
        finally:
            if not swapped:
                shutil.rmtree(new, ignore_errors=True)
    return {**summary, "run_dir": str(out), "final_step": trainer.step}


def make_trainer(config: RunConfig, out, *, progress: bool = True, callback=None,
                 runtime: Runtime | None = None) -> Trainer:
    """A Trainer on the config's data (and labels, for a conditional run), filling in what training
    measures on the data (config.fitted: kind, shape, normalizer, x0 bound, class names). A derived run starts
    from its parent's weights."""
    init = None
    objective = distill_objective(config, (runtime or Runtime()).device) if config.distilled else None
    if is_lora(config):
        check_base(config)
    if config.parent is not None:
        init, _ = read_tensors(Path(config.parent.path) / MODEL, *model_checksums(config.parent.path))
    return Trainer(config, make_source(config), out, progress=progress, callback=callback, runtime=runtime,
                   init_weights=init, objective=objective)
