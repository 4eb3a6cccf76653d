"""`diffkit train` and `diffkit train-vae`: flags onto a run's config, then training (resume, overwrite, several
processes); train-vae ends with the autoencoder's reconstruction report."""

from __future__ import annotations

import json

from ..errors import ConfigError, RankFailed


def cmd_train(a) -> None:
    import dataclasses
    import os

    from ..devices import resolve_device
    from ..store.rundir import read_config
    from ..training import distributed
    from ..training.launch import launch

    device = resolve_device(a.device)
    launcher = a.nproc is not None and "WORLD_SIZE" not in os.environ
    _settle_latent(a, device, may_train="WORLD_SIZE" not in os.environ)
    config = _check_resume_flags(a) if a.resume else _train_config(a)
    if launcher:  # start the ranks, then wait
        runtime = distributed.Runtime(device=device, world_size=a.nproc, batch_per_device=a.batch_per_device)
        runtime.micro_batches((config or read_config(a.out)).train.batch_size)  # refused here, not in N processes
        launch(a.nproc, _without_nproc(a.argv), a.out)
        return
    why = _compile(a, config or read_config(a.out), device)
    runtime = distributed.start(device, batch_per_device=a.batch_per_device, compile=why is not None,
                                precision=a.precision if a.resume else None, threads=a.threads if a.resume else None)
    runtime = dataclasses.replace(runtime, compile_why=why if a.compile is None else None)
    try:
        summary = _train(a, config, runtime)
        distributed.barrier(runtime)  # every rank done before any leaves the group (a rank leaving early can abort
        # a peer still tearing down its gloo threads: "terminate called without an active exception")
    except Exception as e:
        if not (runtime.distributed and distributed.peer_lost(e)):
            raise
        lost = RankFailed(f"rank {runtime.rank} lost contact with another rank of the job ({str(e).splitlines()[0]})")
        lost.exit_code = distributed.PEER_LOST
        raise lost from None
    finally:
        distributed.stop()
    if runtime.is_main:
        print(f"trained {summary['steps']} steps in {summary['seconds']:.1f} s -> {a.out} (step {summary['final_step']})")


def _compile(a, config, device) -> str | None:
    """Why this run compiles, or None: --compile / --no-compile as given; neither: where autotune.auto_compile's
    measurements say it pays (the trainer says so with its precision and threads)."""
    from ..training.autotune import auto_compile

    if a.compile is not None:
        return "--compile" if a.compile else None
    precision = a.precision if a.resume and a.precision else config.train.precision
    return auto_compile(config, a.steps or config.train.steps, precision, device)


def _train(a, config, runtime) -> dict:
    from ..runs import train_run

    if a.resume:
        return train_run(None, a.out, resume=True, steps=a.steps, progress=not a.quiet, runtime=runtime)
    return train_run(config, a.out, overwrite=a.overwrite, progress=not a.quiet, runtime=runtime)


def _settle_latent(a, device, may_train: bool) -> None:
    """--latent auto (asked for, or the data's default: presets.TEXT_LATENT) -> the VAE run beside --out, trained
    first where it is not there yet, in this one process (the launcher's, before any rank starts); --resume
    only names it (the run recorded it, and the resume check compares)."""
    from pathlib import Path

    from ..runs import train_config
    from ..runs.presets import default_latent
    from ..runs.recipes import check_pixel
    from ..runs.sources import image_spec
    from ..runs.train import is_run_dir, refuse_existing
    from ..runs.vae_beside import AUTO, prepare_vae, vae_beside
    from ..training.distributed import Runtime

    if not a.resume and a.latent is None and not a.pixel and default_latent(a.data, text=a.text is not None):
        a.latent = AUTO
    if a.latent != AUTO:
        return
    if a.resume:
        a.latent = str(vae_beside(a.out))
        return
    # what would refuse the run refuses it before its VAE trains: the other flags, an --out that holds a run
    check_pixel(vars(a))
    image_spec(a.data or "spiral")
    train_config({**vars(a), "latent": None})
    if is_run_dir(a.out) and not a.overwrite:
        refuse_existing(Path(a.out))
    a.latent = prepare_vae(a.data or "spiral", a.out, how={"precision": a.precision, "threads": a.threads},
                           progress=not a.quiet, runtime=Runtime(device=device), may_train=may_train)


def _without_nproc(argv: list[str]) -> list[str]:
    """The train command line for the ranks: everything but --nproc N."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def _check_resume_flags(a) -> None:
    """--resume continues the run as its config.json says: the flags a user gives must agree with it (the same
    command with --resume appended continues the run); a differing flag is refused by name with both values."""
    from ..runs import resume_conflicts
    from ..store.rundir import read_config

    if a.overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; give one of them")
    _refuse_conflicts(resume_conflicts(vars(a), read_config(a.out)), "")


def _refuse_conflicts(conflicts: list[str], what: str) -> None:
    if conflicts:
        raise ConfigError(f"--resume continues the {what}run as configured in its config.json, and "
                          f"{'; '.join(conflicts)}; drop the flag (only --steps and how it runs, such as --device, "
                          "--precision, --threads, may change) or train a new run")


def _train_config(a):
    from ..runs import train_config

    return train_config(vars(a))


def cmd_train_vae(a) -> None:
    from ..devices import resolve_device
    from ..runs import resume_conflicts, train_run, vae_report, vae_train_config
    from ..store.rundir import read_config
    from ..training.distributed import Runtime

    runtime = Runtime(device=resolve_device(a.device), precision=a.precision if a.resume else None,
                      threads=a.threads if a.resume else None)
    if a.resume:
        _refuse_conflicts(resume_conflicts(vars(a), read_config(a.out), vae=True), "VAE ")
        summary = train_run(None, a.out, resume=True, steps=a.steps, progress=not a.quiet, runtime=runtime)
    else:
        summary = train_run(vae_train_config(vars(a)), a.out, overwrite=a.overwrite, progress=not a.quiet,
                            runtime=runtime)
    print(f"trained {summary['steps']} steps in {summary['seconds']:.1f} s -> {a.out} (step {summary['final_step']})")
    _print_vae_report(vae_report(a.out, progress=not a.quiet, device=runtime.device), a.json)


def _print_vae_report(report: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report))
        return
    line = f"test split: PSNR {report['psnr']:.2f} dB, latents {report['latent_shape']} (factor {report['factor']})"
    if "fd" in report:
        line += (f"; reconstructions: FD {report['fd']:.3f} (floor {report['fd_floor']:.3f}), judge accuracy "
                 f"{report['accuracy']:.1%} (on the originals {report['judge_accuracy']:.1%})")
    print(line)
