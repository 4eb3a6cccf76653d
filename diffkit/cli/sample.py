"""`diffkit sample --run RUN`: draw samples from a trained run (points, images, prompts), with a sidecar that
records how, and optional pictures (`--oracle` lives in score.py)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .common import check_new_file, clip_flag, fresh_seed, sampler_options, write_samples


GRID_MAX = 100  # images drawn in --grid and --gif (the first ones of --n)


def cmd_sample(a) -> None:
    from tqdm.auto import tqdm

    from .text import prompt_grid, prompts_of
    from ..devices import resolve_device
    from ..runs import sample_run, to_data
    from ..training.checkpoint import load_run

    if a.oracle is not None:
        from .score import cmd_sample_oracle

        return cmd_sample_oracle(a)
    for flag, value in (("--schedule", a.schedule), ("--timesteps", a.timesteps)):
        if value is not None:
            raise ConfigError(f"{flag} applies to --oracle; a run samples with the schedule it was trained with")
    out = check_new_file(a.out, ".npy", a.overwrite, "--out")
    sidecar = check_new_file(str(out.with_suffix(".json")), ".json", a.overwrite, "--out's sidecar")
    plot = check_new_file(a.plot, ".png", a.overwrite, "--plot") if a.plot else None
    grid = check_new_file(a.grid, ".png", a.overwrite, "--grid") if a.grid else None
    gif = check_new_file(a.gif, ".gif", a.overwrite, "--gif") if a.gif else None
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
    x = sample_run(run, a.n, a.sampler, a.steps, seed=seed, spacing=a.spacing, clip=clip_flag(a),
                   cond=a.cls, guidance=a.guidance, callback=record, guidance_interval=interval, prompt=prompts,
                   **options)
    steps_taken = taken[0]
    if bars:
        bars[0].close()
    write_samples(out, sidecar, x, sample_record(a, run, seed, interval, steps_taken, prompts))
    print(f"wrote {len(x)} samples to {out} (seed {seed}; settings in {sidecar})")
    if plot:
        from ..viz.plots import scatter

        title = f"{a.sampler} samples" + (f", class {a.cls}" if a.cls is not None else "")
        scatter(x, plot, title + (f", w = {a.guidance:g}" if a.guidance is not None else ""))
        print(f"wrote {plot}")
    if grid:
        from ..viz.images import image_grid

        if prompts:
            prompt_grid(x, len(prompts), grid)
        else:
            image_grid(x[:shown], grid)
        print(f"wrote {grid}")
    if gif:
        from ..viz.images import reverse_gif

        reverse_gif(frames, gif, captions=[f"step {i + 1}/{len(frames)}" for i in range(len(frames))])
        print(f"wrote {gif}")


def sample_record(a, run, seed: int, interval, steps_taken: int, prompts=None) -> dict:
    """What the sidecar JSON of a sample file records: enough to draw the same samples again."""
    from .. import __version__

    return {"run": str(Path(a.run).resolve()), "run_step": run.step, "n": a.n, "sampler": a.sampler,
            "steps": a.steps, "steps_taken": steps_taken, "spacing": a.spacing, "seed": seed,
            "class": a.cls, "prompts": prompts, "guidance": a.guidance,
            "guidance_interval": run.config.sampling.guidance_interval if interval == "run" else interval,
            "clip": run.config.sampling.clip_x0 if clip_flag(a) is None else clip_flag(a),
            "options": sampler_options(a),
            "diffkit": __version__}
