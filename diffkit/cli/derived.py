"""`diffkit reflow`, `diffkit distill` and `diffkit finetune`: a run derived from another (a flow trained on the
teacher's (noise, sample) pairs; a few-step student; LoRA adapters on a base run, trained on new data); --resume
continues it. `diffkit merge`: a LoRA run's adapters merged into a full run."""

from __future__ import annotations

from ..errors import ConfigError

# each command's settings (flags that make a new student; --resume takes none of them)
SETTINGS = {"reflow": ("pairs", "sampler", "steps", "guidance", "train_steps", "seed"),
            "distill": ("method", "steps", "guidance", "guidance_range", "train_steps", "levels", "lr", "seed"),
            "finetune": ("data", "rank", "targets", "full", "train_steps", "lr", "seed")}
PARENT = {"reflow": "teacher", "distill": "teacher", "finetune": "run"}  # the flag naming the parent run


def cmd_reflow(a) -> None:
    _derive(a, "reflow")


def cmd_distill(a) -> None:
    _derive(a, "distill")


def cmd_finetune(a) -> None:
    _derive(a, "finetune")


def cmd_merge(a) -> None:
    from ..runs.finetune import merge_run

    merge_run(a.run, a.out)
    print(f"merged {a.run}'s adapters into its base -> {a.out} (a full run of its own)")


def _derive(a, command: str) -> None:
    from ..devices import resolve_device
    from ..training import distributed

    runtime = distributed.start(resolve_device(a.device), precision=a.precision if a.resume else None,
                                threads=a.threads if a.resume else None)
    try:
        summary = _train(a, command, runtime)
        distributed.barrier(runtime)  # every rank done before any leaves the group (as in `diffkit train`)
        if runtime.is_main:  # one report per job, from rank 0
            _report(a, command, summary)
    finally:
        distributed.stop()


def _train(a, command: str, runtime) -> dict:
    from ..runs import distill_run, reflow_run, train_run

    if a.resume:
        if a.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; give one of them")
        given = [f"--{k.replace('_', '-')}" for k in (PARENT[command], *SETTINGS[command])
                 if k != "train_steps" and getattr(a, k) is not None]
        if given:
            raise ConfigError(f"--resume continues the student as its config.json records it; drop "
                              f"{', '.join(given)} (only --train-steps must agree, and how it runs may change)")
        return train_run(None, a.out, resume=True, steps=a.train_steps, progress=not a.quiet, runtime=runtime,
                         steps_flag="--train-steps")  # (a student's --steps are its sampling steps)
    parent = getattr(a, PARENT[command])
    if parent is None:
        what = {"reflow": "the run whose ODE gives the pairs", "distill": "the run to distill",
                "finetune": "the base run to adapt"}[command]
        raise ConfigError(f"{command} needs --{PARENT[command]} RUN: {what}")
    settings = {k: getattr(a, k) for k in SETTINGS[command] if getattr(a, k) is not None}
    if command == "finetune":
        from ..runs.finetune import finetune_run

        if a.data is None:
            raise ConfigError("finetune needs --data: the images (or points) to adapt the base run to")
        if a.full and (a.rank is not None or a.targets is not None):
            raise ConfigError("--full trains every weight, without adapters; drop --lora-rank and --lora-targets")
        return finetune_run(parent, settings.pop("data"), a.out, progress=not a.quiet, runtime=runtime,
                            overwrite=a.overwrite, **settings)
    derive = reflow_run if command == "reflow" else distill_run
    return derive(parent, a.out, progress=not a.quiet, runtime=runtime, overwrite=a.overwrite, **settings)


def _report(a, command: str, summary: dict) -> None:
    from ..runs import straightness_run

    print(f"trained {summary['steps']} steps in {summary['seconds']:.1f} s -> {a.out} (step {summary['final_step']})")
    if command == "reflow" and a.teacher is not None:
        from ..store.rundir import read_config

        n = 100 if read_config(a.out).fitted.image_shape is not None else 500  # an image ODE costs more per call
        before, after = (straightness_run(path, n)["straightness"] for path in (a.teacher, a.out))
        print(f"straightness S ({n} trajectories, ddim 100 steps): teacher {before:.4f}, student {after:.4f}")
    if command == "distill":
        print(f"sample it with `diffkit sample --run {a.out}` (its own sampler and steps)")
    if command == "finetune":
        print(f"sample it with `diffkit sample --run {a.out}` (the base with its adapters; `diffkit merge` writes a "
              "full run)")
