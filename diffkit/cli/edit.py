"""`diffkit edit` (img2img, inpainting), `diffkit invert` (the x_T that gives an image back) and `diffkit
interpolate` (between two noises or two conditions), each writing an .npy with a JSON sidecar and an optional
grid; the negative-condition flags of `sample` and `edit`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import ConfigError, DataError
from .common import (
    check_new_file,
    fresh_seed,
    recorded_options,
    sampler_options,
    write_samples,
)
from .flags import (
    device_arg,
    finite_float,
    int_tuple,
    non_negative_int,
    positive_int,
    sampler_args,
    seed_arg,
)

STOCHASTIC = ("ddpm", "euler-a", "dpmpp-2m-sde", "langevin", "consistency")
GRID_COLUMNS = 16  # --grid: at most this many inputs (columns)


def edit_parsers(sub) -> None:
    """The three commands' parsers."""
    e = sub.add_parser("edit", help="edit images (or points) with a run: img2img (--strength), inpainting (--mask)")
    _input_args(e)
    e.add_argument("--strength", type=finite_float("--strength", 0.0), help="img2img: the level the input is "
                   "noised to, 0 (the input back) .. 1 (pure noise); default 0.6, or 1 with --mask")
    e.add_argument("--mask", help="inpainting: a PNG or .npy of the input's size, white / 1 = regenerate, black / 0 = "
                   "keep (one for all inputs or one per input); points: a .npy or a list like 0,1 (regenerate y)")
    e.add_argument("--resample", type=non_negative_int("--resample"), default=0, help="inpainting: RePaint's jumps "
                   "back per step, harmonizing the regenerated region (ddim or ddpm; each costs a network call)")
    e.add_argument("--sampler", help="any sampler (default: the run's own)")
    e.add_argument("--steps", type=int, help="the whole grid's steps; img2img runs the last strength x steps of them")
    e.add_argument("--spacing", help="step grid (default: the run's)")
    sampler_args(e)
    _cond_args(e)
    negative_args(e)
    _output_args(e, "--grid", "images: inputs, masks and results as rows of a .png")
    i = sub.add_parser("invert", help="the noise x_T from which ddim samples an image back (DDIM inversion)")
    _input_args(i)
    i.add_argument("--steps", type=positive_int("--steps"), default=50, help="ddim steps (default 50)")
    i.add_argument("--iterations", type=non_negative_int("--iterations"), default=1, help="fixed-point "
                   "refinements per step, one network call each (default 1; 0: plain DDIM inversion)")
    i.add_argument("--sampler", default="ddim", help="the sampler inverted: ddim (eta 0), the only one")
    i.add_argument("--spacing", help="step grid (default: the run's)")
    _cond_args(i)
    _output_args(i, None, None)
    n = sub.add_parser("interpolate", help="samples between two starting noises, or two classes or prompts")
    n.add_argument("--run", required=True, help="run directory")
    n.add_argument("--out", required=True, help="output .npy of the --n samples")
    n.add_argument("--n", type=positive_int("--n", 2), default=8, help="samples along the way, ends included "
                   "(default 8)")
    n.add_argument("--seeds", type=int_tuple("--seeds"), help="A,B: between the noises of seeds A and B")
    n.add_argument("--classes", help="A,B: between two classes (ids or names) at the noise of --seed")
    n.add_argument("--prompts", nargs=2, metavar=("P1", "P2"), help="between two prompts at the noise of --seed")
    n.add_argument("--sampler", help="a sampler (default: the run's own; a deterministic one keeps the path smooth)")
    n.add_argument("--steps", type=int, help="grid steps")
    n.add_argument("--spacing", help="step grid (default: the run's)")
    _cond_args(n, inputs=False)
    _output_args(n, "--grid", "images: the samples in one row of a .png")


def negative_args(p) -> None:
    p.add_argument("--negative-prompt", help="text runs: guide away from this prompt (in the null prompt's place)")
    p.add_argument("--negative-class", help="class runs: guide away from this class (in the null class's place)")


def negative_of(a, run):
    """The negative condition asked for (a prompt of a text run, a class of a class run), or None."""
    prompt, cls = getattr(a, "negative_prompt", None), getattr(a, "negative_class", None)
    text = bool(run.config.data.text)
    if prompt is not None and not text:
        raise ConfigError("--negative-prompt applies to text runs; this run " + (
            "is class-conditional: guide away from a class with --negative-class" if run.config.network.num_classes
            else "takes no condition"))
    if cls is not None and text:
        raise ConfigError("--negative-class applies to class runs; this is a text run: give --negative-prompt")
    return prompt if prompt is not None else cls


def _input_args(p) -> None:
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--image", required=True, help="the input: a PNG / JPEG, a folder of them, or an .npy of one or N "
                   "images [N, C, H, W] (uint8 or [0, 1]); point runs: an .npy / .csv of points")
    p.add_argument("--out", required=True, help="output .npy (a sidecar .json records how it was made)")


def _cond_args(p, inputs: bool = True) -> None:
    p.add_argument("--class", dest="cls", help="class id or name (one for all" + (" inputs)" if inputs else ")"))
    p.add_argument("--prompt", help="text runs: the prompt")
    p.add_argument("--guidance", type=finite_float("--guidance", 0.0), help="classifier-free guidance scale w")
    p.add_argument("--seed", type=seed_arg, help="random seed (default: a fresh one, written to the sidecar)")


def _output_args(p, grid: str | None, grid_help: str | None) -> None:
    if grid:
        p.add_argument(grid, dest="grid", help=grid_help)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="the network calls' precision")
    device_arg(p)


# --- reading inputs -----------------------------------------------------------------------------------------------

def read_inputs(path: str, run, flag: str = "--image"):
    """The inputs at `path` as an array in the data's coordinates (images float32 in [0, 1], shaped as the run's)."""
    import numpy as np

    from ..data.images import IMAGE_SUFFIXES, read_image_files
    from ..data.points import load_file

    p = Path(path)
    images = run.config.fitted.image_shape is not None
    if not p.exists():
        raise DataError(f"{flag} {path} does not exist; give " + ("a PNG / JPEG file, a folder of them or an .npy array"
                                                               if images else "an .npy or .csv file of points"))
    if not images:
        return load_file(p)
    if p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES:
        return read_image_files(p)
    if p.suffix.lower() != ".npy":
        raise DataError(f"{flag} {path} is neither an image ({', '.join(IMAGE_SUFFIXES)}), a folder of images nor .npy")
    try:
        x = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{flag} {path} is not a readable .npy array ({e})") from None
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255
    shape = tuple(run.config.fitted.image_shape)
    if x.ndim == 2 and shape[0] == 1:  # one grayscale [H, W]
        x = x[None, None]
    elif x.ndim == 3 and tuple(x.shape) != shape and shape[0] == 1:  # a stack of grayscale [N, H, W]
        x = x[:, None]
    return x


def read_mask(text: str, run):
    """--mask: a PNG / JPEG or .npy file, or (point runs) a comma list such as 0,1."""
    import numpy as np

    p = Path(text)
    if not p.exists() and "," in text and run.config.fitted.image_shape is None:
        try:
            return np.array([float(v) for v in text.split(",")], np.float32)
        except ValueError:
            raise ConfigError(f"--mask {text} is not a list of 0s and 1s (one per coordinate)") from None
    return read_inputs(text, run, "--mask")


# --- the commands -------------------------------------------------------------------------------------------------

def _files(a) -> dict:
    out = check_new_file(a.out, ".npy", a.overwrite, "--out")
    return {"out": out, "sidecar": check_new_file(str(out.with_suffix(".json")), ".json", a.overwrite,
                                                  "--out's sidecar"),
            "grid": check_new_file(a.grid, ".png", a.overwrite, "--grid") if getattr(a, "grid", None) else None}


def _load(a):
    from ..devices import resolve_device
    from ..runs import load_run

    return load_run(a.run, device=resolve_device(a.device), precision=a.precision)


class _Bar:
    """A progress bar that opens at the first step (an error before the work prints none)."""

    def __init__(self, a, what: str, total: int | None = None):
        self.args, self.bar = (what, total, a.quiet), None

    def update(self, *_) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            what, total, quiet = self.args
            self.bar = tqdm(desc=what, total=total, unit="step", disable=quiet, leave=False, dynamic_ncols=True)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _record(a, run, seed, **extra) -> dict:
    from ..version import __version__

    return {"run": str(Path(a.run).resolve()), "run_step": run.step, "seed": seed, "class": a.cls,
            "prompt": a.prompt, "guidance": a.guidance, **extra, "diffkit": __version__}


def _sampling_record(a, run, sampler: str | None, steps: int | None) -> dict:
    """The sampler, grid steps and options a call ran with, settled as the library settles them (the run's own
    where no flag asked otherwise), for the sidecar, as `sample`'s records them."""
    from ..runs.pipeline import run_sampling
    from ..sampling import default_steps

    sampler, steps = run_sampling(run.config, sampler, steps, a.guidance)
    return {"sampler": sampler, "steps": default_steps(sampler, steps, run.denoiser.schedule.num_timesteps),
            "options": recorded_options(run.config, sampler, a)}


def cmd_edit(a) -> None:
    from ..runs.edit import edit_run, edit_sampler

    files = _files(a)
    run = _load(a)
    _check_grid(files, run)
    inputs = read_inputs(a.image, run)
    mask = None if a.mask is None else read_mask(a.mask, run)
    seed = a.seed if a.seed is not None else fresh_seed()
    bar = _Bar(a, "edit")
    x = edit_run(run, inputs, strength=a.strength, mask=mask, sampler=a.sampler, steps=a.steps, spacing=a.spacing,
                 seed=seed, cond=a.cls, prompt=a.prompt, negative=negative_of(a, run), guidance=a.guidance,
                 resample=a.resample, callback=bar.update, **sampler_options(a))
    bar.close()
    record = _record(a, run, seed, image=str(Path(a.image).resolve()), n=len(x), mask=a.mask and str(Path(a.mask)
                     .resolve() if Path(a.mask).exists() else a.mask), strength=a.strength, spacing=a.spacing,
                     negative=negative_of(a, run), resample=a.resample,
                     **_sampling_record(a, run, edit_sampler(run, a.sampler, a.resample), a.steps))
    write_samples(files["out"], files["sidecar"], x, record)
    print(f"wrote {len(x)} edited {'images' if x.ndim == 4 else 'points'} to {files['out']} (seed {seed}; settings "
          f"in {files['sidecar']})")
    if files["grid"]:
        _edit_grid(files["grid"], inputs, mask, x)


def _check_grid(files: dict, run) -> None:
    if files["grid"] and run.config.fitted.image_shape is None:
        raise ConfigError("--grid draws image runs; this run makes points")


def _edit_grid(path, inputs, mask, x) -> None:
    """Rows: the inputs, the masks (white over the darkened input), the results; at most GRID_COLUMNS columns."""
    import numpy as np

    from ..runs.edit import check_mask
    from ..viz.images import image_grid

    k = min(len(x), GRID_COLUMNS)
    inputs = np.asarray(inputs, np.float32).reshape(x.shape)[:k]
    rows = [inputs]
    if mask is not None:
        m = check_mask(mask, len(x), x.shape[1:])[:k].max(1, keepdims=True)
        rows.append(np.maximum(inputs * 0.35, m))
    rows.append(x[:k])
    image_grid(np.concatenate(rows), path, nrow=k)
    print(f"wrote {path}")


def cmd_invert(a) -> None:
    from ..runs.invert import INVERT_SAMPLER, invert_run

    if a.sampler != INVERT_SAMPLER:
        why = "is stochastic, so no noise maps to its samples" if a.sampler in STOCHASTIC else \
            "is not what inversion inverts"
        raise ConfigError(f"{a.sampler} {why}; invert runs ddim at eta 0 (--sampler ddim), and `diffkit sample "
                          "--noise` samples the result back with ddim")
    files = _files(a)
    run = _load(a)
    inputs = read_inputs(a.image, run)
    bar = _Bar(a, "invert", a.steps)
    z = invert_run(run, inputs, steps=a.steps, spacing=a.spacing, iterations=a.iterations, cond=a.cls,
                   prompt=a.prompt, guidance=a.guidance, callback=bar.update)
    bar.close()
    spacing = a.spacing or run.config.sampling.spacing
    record = _record(a, run, None, inverted=True, image=str(Path(a.image).resolve()), n=len(z),
                     sampler=INVERT_SAMPLER, steps=a.steps, spacing=spacing, iterations=a.iterations,
                     guidance_interval=run.denoiser.guidance_interval)
    write_samples(files["out"], files["sidecar"], z, record)
    print(f"wrote the noise of {len(z)} inputs to {files['out']}; `diffkit sample --run {a.run} --noise "
          f"{files['out']}` samples them back (ddim, {a.steps} steps, as {files['sidecar']} records)")


def inverted_settings(a) -> None:
    """`sample --noise NOISE.npy` where NOISE.json is invert's sidecar: its sampler, steps, spacing, condition and
    guidance, each unless given on the command line."""
    sidecar = Path(a.noise).with_suffix(".json")
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(record, dict) or record.get("inverted") is not True:
        return
    for key, flag in (("sampler", "sampler"), ("steps", "steps"), ("spacing", "spacing"), ("class", "cls"),
                      ("guidance", "guidance")):
        if getattr(a, flag, None) is None and record.get(key) is not None:
            setattr(a, flag, record[key])
    if record.get("prompt") and not a.prompt and not a.prompts:
        a.prompt = [record["prompt"]]
    if not hasattr(a, "guidance_interval") and record.get("guidance_interval", "absent") != "absent":
        a.guidance_interval = record["guidance_interval"]
    print(f"sampling the inverted noise with {sidecar}'s settings: {a.sampler}, {a.steps} steps", file=sys.stderr)


def cmd_interpolate(a) -> None:
    from ..runs.interpolate import interpolate_run, interpolation_sampler

    files = _files(a)
    run = _load(a)
    _check_grid(files, run)
    seed = a.seed if a.seed is not None else fresh_seed()
    classes = None if a.classes is None else [c.strip() for c in a.classes.split(",")]
    classes = None if classes is None else [int(c) if c.isdigit() else c for c in classes]
    bar = _Bar(a, "interpolate")
    x = interpolate_run(run, a.n, seeds=a.seeds, seed=seed, classes=classes, prompts=a.prompts, cond=a.cls,
                        prompt=a.prompt, guidance=a.guidance, sampler=a.sampler, steps=a.steps, spacing=a.spacing,
                        callback=bar.update)
    bar.close()
    record = _record(a, run, seed, n=a.n, seeds=a.seeds, classes=classes, prompts=a.prompts, spacing=a.spacing,
                     **_sampling_record(a, run, *interpolation_sampler(run, a.sampler, a.steps)))
    write_samples(files["out"], files["sidecar"], x, record)
    print(f"wrote {len(x)} interpolated samples to {files['out']}")
    if files["grid"]:
        from ..viz.images import image_grid

        image_grid(x, files["grid"], nrow=len(x))
        print(f"wrote {files['grid']}")
