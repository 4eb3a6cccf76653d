"""Command line: parses arguments onto the config dataclasses and the runs API; maps errors to exit codes.

Bad input -> `error: <one sentence>` on stderr, exit 2. A bug -> traceback, exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .cli_args import finite_float, int_tuple, interval_arg, port_arg, positive_int, seed_arg
from .errors import ConfigError, DiffkitError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one sentence instead of argparse's usage dump
        raise DiffkitError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    from .data.images import IMAGE_DATASETS
    from .data.points import DATASETS
    from .prediction import PREDICTIONS
    from .sampling import SAMPLERS, SPACINGS
    from .schedule import SCHEDULE_NAMES

    from . import __version__

    p = _Parser(prog="diffkit", description="Diffusion models from first principles: train, sample, evaluate, show.")
    p.add_argument("--version", action="version", version=f"diffkit {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model on 2-D points or images into a run directory")
    t.add_argument("--data", help=f"points: {', '.join(DATASETS)} or a .npy/.npz/.csv [N, 2] file; images: "
                                  f"{', '.join(IMAGE_DATASETS)}, a folder of PNG/JPEG or an .npz of images")
    t.add_argument("--out", required=True, help="run directory to create")
    t.add_argument("--steps", type=positive_int("--steps"), help="optimizer steps (default 3000 for points, per image preset)")
    t.add_argument("--batch-size", type=positive_int("--batch-size"), help="points per step (default 1024)")
    t.add_argument("--schedule", help=f"noise schedule: {', '.join(SCHEDULE_NAMES)} (default linear for points, cosine for images)")
    t.add_argument("--timesteps", type=positive_int("--timesteps"), help="T, the number of diffusion steps (default 1000)")
    t.add_argument("--prediction", help=f"what the network predicts: {', '.join(PREDICTIONS)} (default v)")
    t.add_argument("--zero-terminal-snr", action="store_true",
                   help="rescale the schedule so alpha_bar at T-1 is 0 (needs v or x0 prediction)")
    t.add_argument("--cond", action="store_true",
                   help="class-conditional model on the data's labels (shapes3, an .npz with y, a CSV of x,y,label)")
    t.add_argument("--p-uncond", type=finite_float("--p-uncond", 0.0),
                   help="with --cond: share of labels dropped to the null class, for guidance (default 0.1)")
    t.add_argument("--flip", action="store_true", help="images: random horizontal flips (not for digits or text)")
    t.add_argument("--channels", type=positive_int("--channels"), help="images: U-Net width of the first level")
    t.add_argument("--channel-mult", type=int_tuple("--channel-mult"),
                   help="images: width multiplier per U-Net level, e.g. 1,2,2 (the resolution halves per level)")
    t.add_argument("--res-blocks", type=positive_int("--res-blocks"), help="images: residual blocks per level")
    t.add_argument("--attention", type=int_tuple("--attention", allow_empty=True),
                   help="images: U-Net levels with self-attention, e.g. 2 or 1,2 ('' for none; the middle always has it)")
    t.add_argument("--dropout", type=finite_float("--dropout", 0.0), help="images: U-Net dropout rate")
    t.add_argument("--lr", type=finite_float("--lr", 0.0))
    t.add_argument("--seed", type=int)
    t.add_argument("--checkpoint-every", type=positive_int("--checkpoint-every"),
                   help="steps between checkpoints (default 1000 for points, 500 for images; the first comes at a "
                        "tenth of it, and Ctrl-C or SIGTERM writes one before stopping)")
    t.add_argument("--keep-checkpoints", type=positive_int("--keep-checkpoints"),
                   help="resumable checkpoints kept in RUN/train_state (default 2)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="draw samples from a trained run")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run directory written by `diffkit train`")
    src.add_argument("--oracle", help="sample the exact denoiser of a Gaussian mixture instead of a model: gaussians8 "
                                      "or a mixture .json (weights, means, covariances, optional labels)")
    s.add_argument("--schedule", help=f"--oracle: its noise schedule, {', '.join(SCHEDULE_NAMES)} (default linear)")
    s.add_argument("--timesteps", type=positive_int("--timesteps"), help="--oracle: T (default 1000)")
    s.add_argument("--n", type=positive_int("--n"), default=1000, help="number of samples (default 1000)")
    s.add_argument("--out", required=True, help="output .npy file: float32 [N, 2] in the data's coordinates "
                                                "(images: [N, C, H, W] in [0, 1])")
    s.add_argument("--sampler", default="ddim", help=f"{', '.join(SAMPLERS)} (default ddim)")
    s.add_argument("--steps", type=int, help="grid steps, 1..T (default per sampler: ddpm T, ddim 50, dpmpp-2m 20, ...)")
    s.add_argument("--spacing", help=f"step grid: {', '.join(SPACINGS)} (default per sampler)")
    s.add_argument("--sigma-min", type=finite_float("--sigma-min", 0.0),
                   help="narrow the grid: lowest noise level before the final step, in data standard deviations "
                        "(default: 0.5 / steps for dpmpp-*, else the schedule's own)")
    s.add_argument("--sigma-max", type=finite_float("--sigma-max", 0.0),
                   help="narrow the grid: highest noise level, in data standard deviations "
                        "(default: 10 for dpmpp-*, else 160)")
    s.add_argument("--eta", type=finite_float("--eta", 0.0), help="noise of ddim / euler-a / dpmpp-2m-sde")
    s.add_argument("--variance", help="DDPM variance: beta or posterior")
    s.add_argument("--snr", type=finite_float("--snr", 0.0), help="langevin corrector signal-to-noise ratio")
    s.add_argument("--corrector-steps", type=int, help="langevin corrector steps per step")
    s.add_argument("--class", dest="cls", help="class id or name to sample (models trained with --cond)")
    s.add_argument("--guidance", type=finite_float("--guidance", 0.0),
                   help="classifier-free guidance scale w with --class: 0 unconditional, 1 conditional (default), >1 stronger")
    s.add_argument("--guidance-interval", type=interval_arg,
                   help="noise levels LO,HI (sigma/alpha) where guidance applies, or 'all' (default: the run's, "
                        "images 0.2,1)")
    clip = s.add_mutually_exclusive_group()
    clip.add_argument("--clip", action="store_true", help="clip x0_hat to the training data's bounding box (pixel range) "
                                                          "at every step (default: the run's; on for points)")
    clip.add_argument("--no-clip", action="store_true", help="do not clip x0_hat (the default for image presets)")
    s.add_argument("--seed", type=seed_arg, help="random seed (default: a fresh one, printed and written to the "
                                              "sidecar FILE.json, so a sample can be repeated)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--plot", help="points: also draw the samples to this .png")
    s.add_argument("--grid", help="images: also draw the first 100 samples as a grid to this .png")
    s.add_argument("--gif", help="images: also animate the reverse process of the grid to this .gif")
    s.add_argument("--overwrite", action="store_true", help="replace --out if it exists")

    e = sub.add_parser("eval", help="score samples against fresh data")
    e.add_argument("--samples", help=".npy/.npz/.csv file of [N, 2] samples (images: .npy [N, C, H, W])")
    e.add_argument("--nll", action="store_true", help="instead of samples: the likelihood of held-out --data under "
                   "--run (probability-flow ODE and ELBO; nats per point, bits/dim for images)")
    e.add_argument("--run", help="--nll: the run directory to score")
    e.add_argument("--n", type=positive_int("--n"), help="--nll: held-out points or test images (default 2000 / 500)")
    e.add_argument("--tol", type=finite_float("--tol", 0.0), default=1e-5, help="--nll: ODE solver tolerance (default 1e-5)")
    e.add_argument("--probes", type=positive_int("--probes"),
                   help="--nll: Hutchinson probes of the ODE's divergence (default: exact for points, 1 for images)")
    e.add_argument("--elbo-strata", type=positive_int("--elbo-strata"),
                   help="--nll: ELBO timesteps per point, one per stratum (default T - 1 for points, 100 for images)")
    e.add_argument("--data", help=f"built-in dataset ({', '.join(DATASETS + IMAGE_DATASETS)}), "
                                                 "a data file or an image folder")
    e.add_argument("--class", dest="cls", help="images: the class the samples were drawn for (reports class accuracy)")
    e.add_argument("--n-ref", type=positive_int("--n-ref"), default=4000, help="reference points (default 4000)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")

    d = sub.add_parser("demo", help="train on the spiral (or an image set), sample, print a table and draw pictures")
    d.add_argument("--out", default="demo_out", help="output directory (its previous demo output is replaced)")
    d.add_argument("--data", default="spiral", help=f"spiral (default) or an image set: {', '.join(IMAGE_DATASETS)}")
    d.add_argument("--steps", type=positive_int("--steps"), help=argparse.SUPPRESS)
    d.add_argument("--n", type=positive_int("--n"), help=argparse.SUPPRESS)
    d.add_argument("--quiet", action="store_true", help="no progress bar")

    lb = sub.add_parser("lab", help="the interactive page: forward, schedules, reverse, guidance, train, samplers")
    lb.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    lb.add_argument("--port", type=port_arg, default=8765, help="port (default 8765)")
    lb.add_argument("--runs", default="runs", help="folder of run directories the lab lists and trains into (default runs)")
    return p


def cmd_train(a) -> None:
    from .config import ScheduleConfig
    from .runs import default_config, train_run

    if a.resume:
        given = [f"--{k.replace('_', '-')}" for k in ("data", "batch_size", "schedule", "timesteps", "prediction",
                                                        "lr", "seed", "p_uncond", "checkpoint_every",
                                                        "keep_checkpoints") if getattr(a, k) is not None]
        given += ["--zero-terminal-snr"] if a.zero_terminal_snr else []
        given += ["--cond"] if a.cond else []
        given += ["--flip"] if a.flip else []
        given += [f"--{k.replace('_', '-')}" for k in NETWORK_FLAGS if getattr(a, k) is not None]
        if given:
            raise ConfigError(f"--resume continues the run as configured in its config.json, so {', '.join(given)} "
                              "cannot be given; only --steps may change")
        if a.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; give one of them")
        summary = train_run(None, a.out, resume=True, steps=a.steps, progress=not a.quiet)
    else:
        if a.p_uncond is not None and not a.cond:
            raise ConfigError("--p-uncond is the label dropout of a conditional model; give --cond too")
        config = default_config(a.data or "spiral", cond=a.cond)
        _apply_network_flags(config, a)
        if a.schedule is not None or a.timesteps is not None or a.zero_terminal_snr:
            config.schedule = ScheduleConfig(name=a.schedule or config.schedule.name, num_timesteps=a.timesteps or 1000,
                                             zero_terminal_snr=a.zero_terminal_snr)
        if a.prediction is not None:
            config.prediction = a.prediction
        for key in ("steps", "batch_size", "lr", "seed", "p_uncond", "checkpoint_every", "keep_checkpoints"):
            if getattr(a, key) is not None:
                setattr(config.train, key, getattr(a, key))
        summary = train_run(config, a.out, overwrite=a.overwrite, progress=not a.quiet)
    print(f"trained {summary['steps']} steps in {summary['seconds']:.1f} s -> {a.out} (step {summary['final_step']})")


NETWORK_FLAGS = {"channels": "channels", "channel_mult": "channel_mult", "res_blocks": "num_res_blocks",
                 "attention": "attention_levels", "dropout": "dropout"}


def _apply_network_flags(config, a) -> None:
    """--flip and the U-Net flags onto an image run's config (refused for points)."""
    from .nn.unet import UNetConfig

    given = [k for k in NETWORK_FLAGS if getattr(a, k) is not None]
    if (given or a.flip) and not isinstance(config.network, UNetConfig):
        flags = [f"--{k.replace('_', '-')}" for k in given] + (["--flip"] if a.flip else [])
        raise ConfigError(f"{', '.join(flags)} shape the image U-Net; {config.data.spec} holds points")
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

    from .runs import sample_run, to_data
    from .training.checkpoint import atomic_write, load_run

    if a.oracle is not None:
        return cmd_sample_oracle(a)
    for flag, value in (("--schedule", a.schedule), ("--timesteps", a.timesteps)):
        if value is not None:
            raise ConfigError(f"{flag} applies to --oracle; a run samples with the schedule it was trained with")
    out = _check_new_file(a.out, ".npy", a.overwrite, "--out")
    sidecar = _check_new_file(str(out.with_suffix(".json")), ".json", a.overwrite, "--out's sidecar")
    plot = _check_new_file(a.plot, ".png", a.overwrite, "--plot") if a.plot else None
    grid = _check_new_file(a.grid, ".png", a.overwrite, "--grid") if a.grid else None
    gif = _check_new_file(a.gif, ".gif", a.overwrite, "--gif") if a.gif else None
    options = {k: getattr(a, k) for k in ("eta", "variance", "snr", "corrector_steps", "sigma_min", "sigma_max")
               if getattr(a, k) is not None}
    run = load_run(a.run)
    images = run.config.fitted.kind == "images"
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
        if gif:
            frames.append(to_data(run, step.x[:shown]))

    x = sample_run(run, a.n, a.sampler, a.steps, seed=seed, spacing=a.spacing, clip=_clip_flag(a),
                   cond=a.cls, guidance=a.guidance, callback=record, guidance_interval=interval, **options)
    steps_taken = taken[0]
    if bars:
        bars[0].close()
    import io

    buf = io.BytesIO()
    np.save(buf, x.astype(np.float32))
    atomic_write(out, buf.getvalue())
    atomic_write(sidecar, json.dumps(sample_record(a, run, seed, interval, steps_taken), indent=2).encode())
    print(f"wrote {len(x)} samples to {out} (seed {seed}; settings in {sidecar})")
    if plot:
        from .viz.plots import scatter

        title = f"{a.sampler} samples" + (f", class {a.cls}" if a.cls is not None else "")
        scatter(x, plot, title + (f", w = {a.guidance:g}" if a.guidance is not None else ""))
        print(f"wrote {plot}")
    if grid:
        from .viz.images import image_grid

        image_grid(x[:shown], grid)
        print(f"wrote {grid}")
    if gif:
        from .viz.images import reverse_gif

        reverse_gif(frames, gif, captions=[f"step {i + 1}/{len(frames)}" for i in range(len(frames))])
        print(f"wrote {gif}")


def cmd_sample_oracle(a) -> None:
    from . import __version__
    from .score_view import sample_oracle
    from .training.checkpoint import atomic_write
    from .viz.plots import scatter

    for flag, value in (("--grid", a.grid), ("--gif", a.gif), ("--guidance-interval", a.guidance_interval)):
        if value is not None:
            raise ConfigError(f"{flag} does not apply to --oracle (points of a mixture, guided at every level)")
    out = _check_new_file(a.out, ".npy", a.overwrite, "--out")
    sidecar = _check_new_file(str(out.with_suffix(".json")), ".json", a.overwrite, "--out's sidecar")
    plot = _check_new_file(a.plot, ".png", a.overwrite, "--plot") if a.plot else None
    options = {k: getattr(a, k) for k in ("eta", "variance", "snr", "corrector_steps", "sigma_min", "sigma_max")
               if getattr(a, k) is not None}
    seed = a.seed if a.seed is not None else fresh_seed()
    x = sample_oracle(a.oracle, a.n, a.sampler, a.steps, schedule=a.schedule or "linear",
                      num_timesteps=a.timesteps or 1000, seed=seed, spacing=a.spacing, cls=a.cls,
                      guidance=a.guidance, **options)
    import io

    buf = io.BytesIO()
    np.save(buf, x.astype(np.float32))
    atomic_write(out, buf.getvalue())
    record = {"oracle": a.oracle if a.oracle == "gaussians8" else str(Path(a.oracle).resolve()), "n": a.n,
              "sampler": a.sampler, "steps": a.steps, "spacing": a.spacing, "schedule": a.schedule or "linear",
              "timesteps": a.timesteps or 1000, "seed": seed, "class": a.cls, "guidance": a.guidance,
              "options": options, "diffkit": __version__}
    atomic_write(sidecar, json.dumps(record, indent=2).encode())
    print(f"wrote {len(x)} samples of the {a.oracle} oracle to {out} (seed {seed}; settings in {sidecar})")
    if plot:
        if x.shape[1] != 2:
            raise ConfigError(f"--plot draws 2-D points; this mixture has {x.shape[1]} dimensions (the samples are saved)")
        scatter(x, plot, f"{a.sampler} on the exact {a.oracle} denoiser")
        print(f"wrote {plot}")


def _clip_flag(a) -> bool | None:
    """--clip / --no-clip, or None for the run's default."""
    return True if a.clip else False if a.no_clip else None


def fresh_seed() -> int:
    """A seed from the OS's entropy, for sample calls that did not fix one."""
    import secrets

    return secrets.randbits(63)


def sample_record(a, run, seed: int, interval, steps_taken: int) -> dict:
    """What the sidecar JSON of a sample file records: enough to draw the same samples again."""
    from . import __version__

    return {"run": str(Path(a.run).resolve()), "run_step": run.step, "n": a.n, "sampler": a.sampler,
            "steps": a.steps, "steps_taken": steps_taken, "spacing": a.spacing, "seed": seed,
            "class": a.cls, "guidance": a.guidance,
            "guidance_interval": run.config.sampling.guidance_interval if interval == "run" else interval,
            "clip": run.config.sampling.clip_x0 if _clip_flag(a) is None else _clip_flag(a), "options": {k: getattr(a, k) for k in ("eta", "variance", "snr", "corrector_steps",
                                                                          "sigma_min", "sigma_max")
                                               if getattr(a, k) is not None},
            "diffkit": __version__}


def cmd_eval(a) -> None:
    from .data.images import is_image_spec
    from .data.points import load_file
    from .runs import eval_image_samples, eval_samples

    if a.nll:
        return cmd_eval_nll(a)
    for flag, value in (("--run", a.run), ("--n", a.n), ("--elbo-strata", a.elbo_strata), ("--probes", a.probes)):
        if value is not None:
            raise ConfigError(f"{flag} belongs to --nll; scoring samples takes --samples and --data")
    if a.samples is None or a.data is None:
        raise ConfigError("eval needs --samples FILE and --data NAME (or --nll --run RUN for a likelihood)")

    if is_image_spec(a.data):
        m = eval_image_samples(a.samples, a.data, cls=a.cls, seed=a.seed)
        if a.json:
            print(json.dumps(m, indent=2))
            return
        _print_metrics(m, ("fd", "precision", "recall"), 16, 4)
        if "class_accuracy" in m:
            print(f"{'class accuracy':<16} {m['class_accuracy']:>10.4f} {m['judge_accuracy']:>11.4f}  (floor: the judge's test accuracy)")
        print("fd: Frechet distance on the judge CNN's penultimate features (a classifier-feature FD, not Inception FID); "
              "floor: train vs test images")
        return
    if a.cls is not None:
        raise ConfigError("--class applies to image samples; point samples are scored against the whole data set")
    x = load_file(a.samples)
    m = eval_samples(x, a.data, n_reference=a.n_ref, seed=a.seed)
    if a.json:
        print(json.dumps(m, indent=2))
        return
    _print_metrics(m, ("energy", "mmd", "swd"), 10, 5)
    if "radius_mean" in m:
        print(f"radius mean {m['radius_mean']:.4f}  std {m['radius_std']:.4f}")


def cmd_eval_nll(a) -> None:
    from tqdm.auto import tqdm

    from .score_view import nll_run
    from .training.checkpoint import load_run

    if a.run is None:
        raise ConfigError("--nll scores a trained model: give --run RUN (and optionally --data for other held-out data)")
    if a.samples is not None or a.cls is not None:
        raise ConfigError("--nll scores held-out data under --run; it takes no --samples or --class")
    if not 0 < a.tol <= 0.1:
        raise ConfigError(f"--tol must be in (0, 0.1], got {a.tol}")
    run = load_run(a.run)
    n = a.n or (500 if run.config.fitted.kind == "images" else 2000)
    bar = tqdm(total=200, desc="likelihood", unit="%", disable=not sys.stderr.isatty(), leave=False)

    def progress(stage, fraction):  # the ODE fills the first half of the bar, the ELBO the second
        bar.update(max(0, int(100 * fraction) + (100 if stage == "elbo" else 0) - bar.n))

    m = nll_run(run, a.data, n=n, seed=a.seed, rtol=a.tol, atol=a.tol, hutchinson=a.probes, strata=a.elbo_strata,
                progress=progress)
    bar.close()
    if a.json:
        print(json.dumps({k: m[k] for k in ("nll_ode", "nll_ode_se", "nll_elbo", "nll_elbo_se", "unit", "n", "nfe",
                                            "probes", "elbo_strata", "elbo_terms", "elbo_t")}))
        return
    print(f"{'likelihood of':<22} {m['n']} held-out {'test images' if m['unit'] == 'bits/dim' else 'points'} "
          f"({m['unit']}, lower is better)")
    div = "exact divergence" if m["probes"] is None else f"Hutchinson divergence, {m['probes']} probe(s)"
    print(f"{'probability-flow ODE':<22} {m['nll_ode']:>10.4f} +- {m['nll_ode_se']:.4f}  ({m['nfe']} network evaluations, "
          f"tolerance {a.tol:g}, {div})")
    print(f"{'negative ELBO':<22} {m['nll_elbo']:>10.4f} +- {m['nll_elbo_se']:.4f}  (an upper bound on the NLL)")


def _print_metrics(m: dict, names, width: int, digits: int) -> None:
    """A table of metrics beside their data-vs-data floors."""
    spread = any(name + "_floor_std" in m for name in names)
    print(f"{'metric':<{width}} {'samples':>10} {'data floor':>11}" + (f"  (mean +- sd of {m['floor_draws']} draws of real data)" if spread else ""))
    for name in names:
        sd = f" +- {m[name + '_floor_std']:.{digits}f}" if name + "_floor_std" in m else ""
        print(f"{name:<{width}} {m[name]:>10.{digits}f} {m[name + '_floor']:>11.{digits}f}{sd}")


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
    runs = Path(a.runs)
    if runs.exists() and not runs.is_dir():
        raise ConfigError(f"--runs {a.runs} is a file; give a folder of run directories")
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        from .errors import notice

        notice(f"the lab listens on {a.host}: anyone who can reach this address can train and sample here")
    print(f"diffkit lab on http://{a.host}:{a.port}/ (runs in {runs.resolve()}); Ctrl-C stops it")
    uvicorn.run(create_app(runs), host=a.host, port=a.port, log_level="warning")


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval, "demo": cmd_demo, "lab": cmd_lab}


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        COMMANDS[args.command](args)
    except DiffkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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
