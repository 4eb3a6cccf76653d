"""`diffkit reflow` and `diffkit distill`: a student derived from a teacher run (a flow trained on the teacher's
(noise, sample) pairs; a few-step student); --resume continues the student."""

from __future__ import annotations

from ..errors import ConfigError

# each command's settings (flags that make a new student; --resume takes none of them)
SETTINGS = {"reflow": ("pairs", "sampler", "steps", "guidance", "train_steps", "seed"),
            "distill": ("method", "steps", "guidance", "guidance_range", "train_steps", "seed")}


def cmd_reflow(a) -> None:
    _derive(a, "reflow")


def cmd_distill(a) -> None:
    _derive(a, "distill")


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
        given = [f"--{k.replace('_', '-')}" for k in ("teacher", *SETTINGS[command])
                 if k != "train_steps" and getattr(a, k) is not None]
        if given:
            raise ConfigError(f"--resume continues the student as its config.json records it; drop "
                              f"{', '.join(given)} (only --train-steps must agree, and how it runs may change)")
        return train_run(None, a.out, resume=True, steps=a.train_steps, progress=not a.quiet, runtime=runtime)
    if a.teacher is None:
        what = "the run whose ODE gives the pairs" if command == "reflow" else "the run to distill"
        raise ConfigError(f"{command} needs --teacher RUN: {what}")
    settings = {k: getattr(a, k) for k in SETTINGS[command] if getattr(a, k) is not None}
    derive = reflow_run if command == "reflow" else distill_run
    return derive(a.teacher, a.out, progress=not a.quiet, runtime=runtime, overwrite=a.overwrite, **settings)


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
