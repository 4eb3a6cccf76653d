"""`diffkit sample --run RUN`: draw samples from a trained run (points, images, prompts), with a sidecar that
records how, and optional pictures (`--oracle` lives in score.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import ConfigError
from .common import (
    check_new_file,
    clip_flag,
    fresh_seed,
    recorded_options,
    sampler_options,
    write_samples,
)
from .edit import inverted_settings, negative_of
from .text import prompt_grid, prompts_of

GRID_MAX = 100  # images drawn in --grid and --gif (the first ones of --n)


def cmd_sample(a) -> None:
    from ..devices import resolve_device
    from ..runs import RUN_DEFAULT, load_run, run_sampling, student_guidance

    if a.oracle is not None:
        from .score import cmd_sample_oracle

        a.sampler, a.n = a.sampler or "ddim", a.n or 1000
        if a.noise is not None:
            raise ConfigError("--noise applies to --run; the oracle draws its own start from --seed")
        return cmd_sample_oracle(a)
    for flag, value in (("--schedule", a.schedule), ("--timesteps", a.timesteps), ("--objective", a.objective),
                        ("--shift", a.shift)):
        if value is not None:
            raise ConfigError(f"{flag} applies to --oracle; a run samples on the path it was trained on")
    files = _output_files(a)
    if a.noise is not None:  # invert's noise: its sidecar's settings, unless given here
        inverted_settings(a)
    noise = _noise(a, len(prompts_of(a) or ()) or 1)
    run = load_run(a.run, device=resolve_device(a.device), precision=a.precision)
    a.guidance = student_guidance(run.config, a.guidance, a.cls is not None or bool(prompts_of(a)))
    a.sampler, a.steps = run_sampling(run.config, a.sampler, a.steps, a.guidance)  # the run's own unless asked
    images = run.config.fitted.image_shape is not None
    if (files["grid"] or files["gif"]) and not images:
        raise ConfigError("--grid and --gif draw image runs; for points use --plot")
    if files["plot"] and images:
        raise ConfigError("--plot draws point runs; for images use --grid and --gif")
    prompts = prompts_of(a)
    if prompts and files["gif"]:
        raise ConfigError("--gif animates one batch; sample prompts with --grid (one row per prompt)")
    seed = a.seed if a.seed is not None else fresh_seed()
    interval = getattr(a, "guidance_interval", RUN_DEFAULT)  # absent: the run's
    x, frames, steps_taken = _draw(a, run, seed, interval, prompts, noise, animate=files["gif"] is not None)
    if interval is RUN_DEFAULT:
        interval = run.denoiser.guidance_interval  # the run's, as its Denoiser reads it (a student reading w: none)
    write_samples(files["out"], files["sidecar"], x, sample_record(a, run, seed, interval, steps_taken, prompts))
    print(f"wrote {len(x)} samples to {files['out']} (seed {seed}; settings in {files['sidecar']})")
    _pictures(a, files, x, frames, prompts)


def _output_files(a) -> dict:
    """Every file the command will write, checked before any work."""
    out = check_new_file(a.out, ".npy", a.overwrite, "--out")
    return {"out": out, "sidecar": check_new_file(str(out.with_suffix(".json")), ".json", a.overwrite, "--out's sidecar"),
            "plot": check_new_file(a.plot, ".png", a.overwrite, "--plot") if a.plot else None,
            "grid": check_new_file(a.grid, ".png", a.overwrite, "--grid") if a.grid else None,
            "gif": check_new_file(a.gif, ".gif", a.overwrite, "--gif") if a.gif else None}


def _noise(a, groups: int):
    """--noise's array (float32, read without unpickling), setting --n from its rows (n per prompt); None without."""
    import numpy as np

    if a.noise is None:
        a.n = a.n or 1000
        return None
    try:
        noise = np.load(a.noise, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ConfigError(f"--noise {a.noise} is not a readable .npy array ({e})") from None
    rows = len(noise) if noise.ndim else 0
    each = f" for each of {groups} prompts" if groups > 1 else ""
    if a.n is not None and a.n * groups != rows:
        raise ConfigError(f"--noise has {rows} rows but --n {a.n}{each} needs {a.n * groups} rows")
    if not rows or rows % groups:
        raise ConfigError(f"--noise has {rows} rows; it needs one per sample (a multiple of {groups}{each})")
    a.n = rows // groups
    return noise


def _draw(a, run, seed: int, interval, prompts, noise, animate: bool):
    """(samples, the GIF's frames, steps taken), with a progress bar that opens at the first step (so that an
    error before sampling prints none)."""
    from tqdm.auto import tqdm

    from ..runs import sample_run, to_data

    frames, shown, bars, taken = [], min(a.n, GRID_MAX), [], [0]

    def record(step):  # progress, and the grid's images at every step for the GIF
        if not bars:  # the first step: every check has passed
            if not a.quiet and (run.precision != "fp32" or a.precision != "auto"):
                print(f"precision: {run.precision} ({run.precision_why})", file=sys.stderr)
            bars.append(tqdm(desc=f"sample {a.sampler}", unit="step", disable=a.quiet, leave=False, dynamic_ncols=True))
        bars[0].update(1)
        taken[0] += 1
        if animate:  # x_t; for a latent run the decoded x0_hat (a noisy latent decodes to no picture)
            frames.append(to_data(run, (step.x0_hat if run.decoder is not None else step.x)[:shown]))

    x = sample_run(run, a.n, a.sampler, a.steps, seed=seed, spacing=a.spacing, clip=clip_flag(a),
                   cond=a.cls, guidance=a.guidance, callback=record, guidance_interval=interval, prompt=prompts,
                   noise=noise, negative=negative_of(a, run), **sampler_options(a))
    if bars:
        bars[0].close()
    return x, frames, taken[0]


def _pictures(a, files: dict, x, frames, prompts) -> None:
    """--plot (points), --grid and --gif (images)."""
    if files["plot"]:
        from ..viz.plots import scatter

        title = f"{a.sampler} samples" + (f", class {a.cls}" if a.cls is not None else "")
        scatter(x, files["plot"], title + (f", w = {a.guidance:g}" if a.guidance is not None else ""))
        print(f"wrote {files['plot']}")
    if files["grid"]:
        from ..viz.images import image_grid

        if prompts:
            prompt_grid(x, len(prompts), files["grid"])
        else:
            image_grid(x[:min(a.n, GRID_MAX)], files["grid"])
        print(f"wrote {files['grid']}")
    if files["gif"]:
        from ..viz.images import reverse_gif

        reverse_gif(frames, files["gif"], captions=[f"step {i + 1}/{len(frames)}" for i in range(len(frames))])
        print(f"wrote {files['gif']}")


def sample_record(a, run, seed: int, interval, steps_taken: int, prompts=None) -> dict:
    """What the sidecar JSON of a sample file records: enough to draw the same samples again."""
    from ..version import __version__

    return {"run": str(Path(a.run).resolve()), "run_step": run.step, "n": a.n, "sampler": a.sampler,
            "steps": a.steps, "steps_taken": steps_taken, "spacing": a.spacing, "seed": seed,
            "class": a.cls, "prompts": prompts, "guidance": a.guidance, "negative": negative_of(a, run),
            "guidance_interval": interval,
            "clip": run.config.sampling.clip_x0 if clip_flag(a) is None else clip_flag(a),
            "options": recorded_options(run.config, a.sampler, a),
            "precision": run.precision,
            "noise": str(Path(a.noise).resolve()) if a.noise else None,
            "diffkit": __version__}
