"""Command line: parses arguments onto the config dataclasses and the runs API; maps errors to exit codes.

Bad input -> `error: <one sentence>` on stderr, exit 2. A bug -> traceback, exit 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .cli_args import build_parser
from .errors import ConfigError, DiffkitError, RankFailed


def cmd_train(a) -> None:
    import os

    from .devices import resolve_device
    from .training import distributed
    from .training.checkpoint import read_config
    from .training.launch import launch

    device = resolve_device(a.device)
    config = _check_resume_flags(a) if a.resume else _train_config(a)
    if a.nproc is not None and "WORLD_SIZE" not in os.environ:  # the launcher: start the ranks, then wait
        runtime = distributed.Runtime(device=device, world_size=a.nproc, batch_per_device=a.batch_per_device)
        runtime.micro_batches((config or read_config(a.out)).train.batch_size)  # refused here, not in N processes
        launch(a.nproc, _without_nproc(a.argv), a.out)
        return
    runtime = distributed.start(device, batch_per_device=a.batch_per_device, compile=a.compile,
                                precision=a.precision if a.resume else None, threads=a.threads if a.resume else None)
    try:
        summary = _train(a, config, runtime)
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


def _train(a, config, runtime) -> dict:
    from .runs import train_run

    if a.resume:
        return train_run(None, a.out, resume=True, steps=a.steps, progress=not a.quiet, runtime=runtime)
    return train_run(config, a.out, overwrite=a.overwrite, progress=not a.quiet, runtime=runtime)


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
    given = [f"--{k.replace('_', '-')}" for k in ("data", "batch_size", "schedule", "timesteps", "prediction",
                                                    "lr", "seed", "p_uncond", "checkpoint_every",
                                                    "keep_checkpoints") if getattr(a, k) is not None]
    given += ["--zero-terminal-snr"] if a.zero_terminal_snr else []
    given += ["--cond"] if a.cond else []
    given += ["--flip"] if a.flip else []
    given += [f"--{k.replace('_', '-')}" for k in (*NETWORK_FLAGS, "net", "dit_size", "patch_size", "latent", "text")
              if getattr(a, k) is not None]
    if given:
        raise ConfigError(f"--resume continues the run as configured in its config.json, so {', '.join(given)} "
                          "cannot be given; only --steps and how it runs (--device, --precision, --threads, --nproc, "
                          "--batch-per-device, --compile) may change")
    if a.overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; give one of them")


def _train_config(a):
    from .config import ScheduleConfig
    from .runs import default_config

    if a.p_uncond is not None and not (a.cond or a.text):
        raise ConfigError("--p-uncond is the label (or prompt) dropout of a conditional model; give --cond or --text")
    if (a.dit_size or a.patch_size) and a.net != "dit":
        raise ConfigError("--dit-size and --patch-size shape a DiT; give --net dit too")
    config = default_config(a.data or "spiral", cond=a.cond, net=a.net, dit_size=a.dit_size or "small",
                            patch_size=a.patch_size, latent=a.latent, text=a.text)
    _apply_network_flags(config, a)
    if a.schedule is not None or a.timesteps is not None or a.zero_terminal_snr:
        config.schedule = ScheduleConfig(name=a.schedule or config.schedule.name, num_timesteps=a.timesteps or 1000,
                                         zero_terminal_snr=a.zero_terminal_snr)
    if a.prediction is not None:
        config.prediction = a.prediction
    for key in ("steps", "batch_size", "lr", "seed", "p_uncond", "checkpoint_every", "keep_checkpoints", "precision",
                "threads"):
        if getattr(a, key) is not None:
            setattr(config.train, key, getattr(a, key))
    return config.validate()


NETWORK_FLAGS = {"channels": "channels", "channel_mult": "channel_mult", "res_blocks": "num_res_blocks",
                 "attention": "attention_levels", "cross_attention": "cross_attention_levels", "dropout": "dropout"}


def _apply_network_flags(config, a) -> None:
    """--flip and the U-Net flags onto an image run's config (refused for points)."""
    from .nn.unet import UNetConfig

    given = [k for k in NETWORK_FLAGS if getattr(a, k) is not None]
    if given and a.net == "dit":
        raise ConfigError(f"{', '.join('--' + k.replace('_', '-') for k in given)} shape the U-Net; a DiT takes "
                          "--dit-size and --patch-size")
    if a.net == "dit":
        config.data.flip = a.flip
        return
    if (given or a.flip) and not isinstance(config.network, UNetConfig):
        flags = [f"--{k.replace('_', '-')}" for k in given] + (["--flip"] if a.flip else [])
        raise ConfigError(f"{', '.join(flags)} shape the image U-Net; {config.data.spec} holds points")
    if a.cross_attention is not None and not a.text:
        raise ConfigError("--cross-attention places the U-Net's attention to a prompt; give --text too")
    for key in given:
        setattr(config.network, NETWORK_FLAGS[key], getattr(a, key))
    config.data.flip = a.flip


def _check_new_file(path: str, suffix: str, overwrite: bool, flag: str) -> Path:
    p = Path(path)
    if p.suffix.lower() != suffix:
        raise ConfigError(f"{flag} {path} must end in {suffix}")
    if p.exists() and not overwrite:
        raise ConfigError(f"{path} already exists; pass --overwrite to replace it")
    if not p.parent.exists():
        raise ConfigError(f"the folder of {flag} {path} does not exist")
    if p.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give a file name ending in {suffix}")
    check_writable(p.parent)
    return p


def check_writable(folder: Path) -> None:
    """Refuse up front a folder that cannot take a new file (read-only, full), before any long work."""
    import tempfile

    from .errors import StorageError

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".diffkit-probe-"):
            pass
    except OSError as e:
        raise StorageError(f"cannot write into {folder} ({e.strerror}); choose another folder") from None


GRID_MAX = 100  # images drawn in --grid and --gif (the first ones of --n)


def cmd_sample(a) -> None:
    from tqdm.auto import tqdm

    from .cli_text import prompt_grid, prompts_of
    from .devices import resolve_device
    from .runs import sample_run, to_data
    from .training.checkpoint import load_run

    if a.oracle is not None:
        from .cli_score import cmd_sample_oracle

        return cmd_sample_oracle(a)
    for flag, value in (("--schedule", a.schedule), ("--timesteps", a.timesteps)):
        if value is not None:
            raise ConfigError(f"{flag} applies to --oracle; a run samples with the schedule it was trained with")
    out = _check_new_file(a.out, ".npy", a.overwrite, "--out")
    sidecar = _check_new_file(str(out.with_suffix(".json")), ".json", a.overwrite, "--out's sidecar")
    plot = _check_new_file(a.plot, ".png", a.overwrite, "--plot") if a.plot else None
    grid = _check_new_file(a.grid, ".png", a.overwrite, "--grid") if a.grid else None
    gif = _check_new_file(a.gif, ".gif", a.overwrite, "--gif") if a.gif else None
    options = sampler_options(a)
    run = load_run(a.run, device=resolve_device(a.device))
    images = run.config.fitted.image_shape is not None
    if (grid or gif) and not images:
        raise ConfigError("--grid and --gif draw image runs; for points use --plot")
    if plot and images:
        raise ConfigError("--plot draws point runs; for images use --grid and --gif")
    frames, shown = [], min(a.n, GRID_MAX)
    seed = a.seed if a.seed is not None else fresh_seed()
    interval = "run" if a.guidance_interval is None else (a.guidance_interval or None)
    bars, taken = [], [0]  # the bar opens at the first step, so that an error before sampling prints none

    def record(step):  # progress, and the grid's images at every step for the GIF
        if not bars:
            bars.append(tqdm(desc=f"sample {a.sampler}", unit="step", disable=a.quiet, leave=False, dynamic_ncols=True))
        bars[0].update(1)
        taken[0] += 1
        if gif:  # x_t; for a latent run the decoded x0_hat (a noisy latent decodes to no picture)
            frames.append(to_data(run, (step.x0_hat if run.decoder is not None else step.x)[:shown]))

    prompts = prompts_of(a)
    if prompts and gif:
        raise ConfigError("--gif animates one batch; sample prompts with --grid (one row per prompt)")
    x = sample_run(run, a.n, a.sampler, a.steps, seed=seed, spacing=a.spacing, clip=_clip_flag(a),
                   cond=a.cls, guidance=a.guidance, callback=record, guidance_interval=interval, prompt=prompts,
                   **options)
    steps_taken = taken[0]
    if bars:
        bars[0].close()
    write_samples(out, sidecar, x, sample_record(a, run, seed, interval, steps_taken, prompts))
    print(f"wrote {len(x)} samples to {out} (seed {seed}; settings in {sidecar})")
    if plot:
        from .viz.plots import scatter

        title = f"{a.sampler} samples" + (f", class {a.cls}" if a.cls is not None else "")
        scatter(x, plot, title + (f", w = {a.guidance:g}" if a.guidance is not None else ""))
        print(f"wrote {plot}")
    if grid:
        from .viz.images import image_grid

        if prompts:
            prompt_grid(x, len(prompts), grid)
        else:
            image_grid(x[:shown], grid)
        print(f"wrote {grid}")
    if gif:
        from .viz.images import reverse_gif

        reverse_gif(frames, gif, captions=[f"step {i + 1}/{len(frames)}" for i in range(len(frames))])
        print(f"wrote {gif}")


def _clip_flag(a) -> bool | None:
    """--clip / --no-clip, or None for the run's default."""
    return True if a.clip else False if a.no_clip else None


SAMPLER_FLAGS = ("eta", "variance", "snr", "corrector_steps", "sigma_min", "sigma_max")


def sampler_options(a) -> dict:
    """The sampler-specific flags the user gave, as keyword options."""
    return {k: getattr(a, k) for k in SAMPLER_FLAGS if getattr(a, k) is not None}


def write_samples(out: Path, sidecar: Path, x: np.ndarray, record: dict) -> None:
    """Samples as float32 .npy and the settings that drew them as a JSON sidecar, each written atomically."""
    import io

    from .training.checkpoint import atomic_write

    buf = io.BytesIO()
    np.save(buf, x.astype(np.float32))
    atomic_write(out, buf.getvalue())
    atomic_write(sidecar, json.dumps(record, indent=2).encode())


def fresh_seed() -> int:
    """A seed from the OS's entropy, for sample calls that did not fix one."""
    import secrets

    return secrets.randbits(63)


def sample_record(a, run, seed: int, interval, steps_taken: int, prompts=None) -> dict:
    """What the sidecar JSON of a sample file records: enough to draw the same samples again."""
    from . import __version__

    return {"run": str(Path(a.run).resolve()), "run_step": run.step, "n": a.n, "sampler": a.sampler,
            "steps": a.steps, "steps_taken": steps_taken, "spacing": a.spacing, "seed": seed,
            "class": a.cls, "prompts": prompts, "guidance": a.guidance,
            "guidance_interval": run.config.sampling.guidance_interval if interval == "run" else interval,
            "clip": run.config.sampling.clip_x0 if _clip_flag(a) is None else _clip_flag(a),
            "options": sampler_options(a),
            "diffkit": __version__}


def cmd_eval(a) -> None:
    from .cli_eval import cmd_eval as run

    run(a)


def cmd_demo(a) -> None:
    from .data.images import IMAGE_DATASETS

    if a.data in IMAGE_DATASETS:
        from .demo_images import run_image_demo

        run_image_demo(a.out, a.data, steps=a.steps, n=a.n or 1000, progress=not a.quiet)
    elif a.data == "spiral":
        from .demo import run_demo

        run_demo(a.out, steps=a.steps, n=a.n or 4000, progress=not a.quiet)
    else:
        raise ConfigError(f"the demo runs on spiral or an image set ({', '.join(IMAGE_DATASETS)}), got {a.data!r}")


def cmd_lab(a) -> None:
    try:
        import uvicorn

        from .lab.app import create_app
    except ImportError:
        raise ConfigError("the lab needs its extra: pip install 'diffkit[lab]' (FastAPI and uvicorn)") from None
    from .devices import resolve_device

    runs = Path(a.runs)
    if runs.exists() and not runs.is_dir():
        raise ConfigError(f"--runs {a.runs} is a file; give a folder of run directories")
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        from .errors import notice

        notice(f"the lab listens on {a.host}: anyone who can reach this address can train and sample here")
    print(f"diffkit lab on http://{a.host}:{a.port}/ (runs in {runs.resolve()}); Ctrl-C stops it")
    uvicorn.run(create_app(runs, device=resolve_device(a.device)), host=a.host, port=a.port, log_level="warning")


def cmd_train_vae(a) -> None:
    from .cli_latent import cmd_train_vae as run

    run(a)


COMMANDS = {"train": cmd_train, "train-vae": cmd_train_vae, "sample": cmd_sample, "eval": cmd_eval,
            "demo": cmd_demo, "lab": cmd_lab}


def main(argv=None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        args = build_parser().parse_args(argv)
        args.argv = argv  # diffkit train --nproc hands it to the ranks
        COMMANDS[args.command](args)
    except DiffkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except OSError as e:  # the machine refused a file operation (read-only folder, disk full, ...): not a bug
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot use{where} ({e.strerror or e}); check the path and its permissions or free space",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}" if str(e) else "interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
