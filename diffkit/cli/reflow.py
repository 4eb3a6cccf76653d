"""`diffkit reflow`: a flow trained on a teacher's (noise, sample) pairs; --resume continues the student."""

from __future__ import annotations

from ..errors import ConfigError


def cmd_reflow(a) -> None:
    from ..devices import resolve_device
    from ..training import distributed

    runtime = distributed.start(resolve_device(a.device), precision=a.precision if a.resume else None,
                                threads=a.threads if a.resume else None)
    try:
        _reflow(a, runtime)
    finally:
        distributed.stop()


def _reflow(a, runtime) -> None:
    from ..runs import reflow_run, straightness_run, train_run

    if a.resume:
        if a.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; give one of them")
        given = [f"--{k.replace('_', '-')}" for k in ("teacher", "pairs", "sampler", "steps", "guidance", "seed")
                 if getattr(a, k) is not None]
        if given:
            raise ConfigError(f"--resume continues the student as its config.json records it; drop "
                              f"{', '.join(given)} (only --train-steps must agree, and how it runs may change)")
        summary = train_run(None, a.out, resume=True, steps=a.train_steps, progress=not a.quiet, runtime=runtime)
    else:
        if a.teacher is None:
            raise ConfigError("reflow needs --teacher RUN: the run whose ODE gives the pairs")
        settings = {k: getattr(a, k) for k in ("pairs", "sampler", "steps", "guidance", "train_steps", "seed")
                    if getattr(a, k) is not None}
        summary = reflow_run(a.teacher, a.out, progress=not a.quiet, runtime=runtime, overwrite=a.overwrite, **settings)
    if not runtime.is_main:  # one report per job, from rank 0
        return
    print(f"trained {summary['steps']} steps in {summary['seconds']:.1f} s -> {a.out} (step {summary['final_step']})")
    if a.teacher is not None:
        before, after = (straightness_run(path, 500)["straightness"] for path in (a.teacher, a.out))
        print(f"straightness S (500 trajectories, ddim 100 steps): teacher {before:.4f}, student {after:.4f}")
