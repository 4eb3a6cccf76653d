"""Editing with a run: img2img (SDEdit) and inpainting (the known region re-imposed after every step, RePaint),
from inputs in the data's own coordinates (images in [0, 1], points as the data's).

    img2img     the input noised to the level `strength` names (the first of the last round(strength x K) grid
                times; Meng et al. 2022, 'SDEdit', sec. 4), then sampled from there by any sampler; 0: the input
                back, 1: pure noise, as plain sampling.
    inpainting  a mask (1 / white: regenerate, 0 / black: keep); after each step the kept region is replaced by
                the input noised to the step's new level, alpha' x0 + sigma' z with the z of x_T (Lugmayr et al.
                2022, 'RePaint', eq. 8, with one noise draw as diffusers' inpainting does for any scheduler), and at
                the end by the input itself. A latent run inpaints latents under the mask max-pooled to the latent
                grid (a latent cell is regenerated if any of its pixels is), then pastes the kept pixels back.
"""

from __future__ import annotations

import numpy as np
import torch

from ..devices import randn_like
from ..errors import ConfigError
from ..sampling import StepRecord, sampler_grid
from ..sampling import sample as run_sampler
from ..sampling.ddim import ddim_step
from ..sampling.grids import check_strength, part_way
from .pipeline import RUN_DEFAULT, Run, prepare_sampling, to_data

# img2img's strength when none is given: SDEdit's edits keep the input's layout up to t0 ~ 0.5-0.6 (Meng et al.
# 2022, fig. 4); inpainting starts from pure noise (1), its kept region carrying the input
IMG2IMG_STRENGTH = 0.6


def data_shape(run: Run) -> tuple:
    """The shape of one input in the data's coordinates: [C, H, W] pixels (a latent run's too) or [D]."""
    fitted = run.config.fitted
    return tuple(fitted.image_shape or fitted.shape)


def check_inputs(run: Run, inputs) -> np.ndarray:
    """float32 [N, *data_shape]: one input of the run's shape, or a batch of them; images in [0, 1]."""
    x = np.asarray(inputs)
    shape = data_shape(run)
    if x.dtype.kind not in "biuf":
        raise ConfigError(f"the input holds {x.dtype} values; expected numbers")
    x = x.astype(np.float32)
    if tuple(x.shape) == shape:
        x = x[None]
    images = run.config.fitted.image_shape is not None
    what = "images of shape [C, H, W] = " if images else "points of dimension "
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape or not len(x):
        raise ConfigError(f"the input has shape {list(x.shape)} but this run makes {what}{list(shape)}; give one "
                          f"or a batch [N, {', '.join(map(str, shape))}]")
    if not np.isfinite(x).all():
        raise ConfigError("the input has non-finite values (nan or inf)")
    if images and (x.min() < 0 or x.max() > 1):
        raise ConfigError(f"the input's pixels span [{x.min():g}, {x.max():g}]; expected [0, 1]")
    return x


def check_mask(mask, n: int, shape: tuple) -> np.ndarray:
    """float32 [n, *shape] of 0 (keep) and 1 (regenerate) from a mask of the inputs' shape, one per input, or
    (images) one [H, W] / [1, H, W] plane for every channel."""
    m = np.asarray(mask)
    if m.dtype.kind not in "biuf":
        raise ConfigError(f"the mask holds {m.dtype} values; expected 0 (keep) and 1 (regenerate)")
    m = m.astype(np.float32)
    if len(shape) == 3 and m.ndim in (2, 3) and tuple(m.shape[-2:]) == shape[1:] and (m.ndim == 2 or
                                                                                       m.shape[0] in (1, n)):
        m = m[:, None] if m.ndim == 3 and m.shape[0] == n and n > 1 else m.reshape(1, *m.shape[-2:])
    while m.ndim < len(shape) + 1:
        m = m[None]
    try:
        m = np.broadcast_to(m, (n, *shape))
    except ValueError:
        planes = " ([H, W] or [1, H, W] for every channel)" if len(shape) == 3 else ""
        raise ConfigError(f"the mask has shape {list(np.shape(mask))} but the inputs are {n} of shape {list(shape)}; "
                          f"give one mask of their shape{planes} or one per input") from None
    if not np.isin(m, (0.0, 1.0)).all():
        odd = m[~np.isin(m, (0.0, 1.0))].flat[0]
        raise ConfigError(f"the mask must be binary, 0 / black to keep and 1 / white to regenerate; it holds {odd:g}")
    return np.ascontiguousarray(m)


def to_model_space(run: Run, inputs: np.ndarray) -> torch.Tensor:
    """Inputs in the data's coordinates -> the space the network samples in (normalized data; a latent run's
    scaled latents, encoded by its VAE), float32 on the run's device."""
    device = next(run.network.parameters()).device
    if run.decoder is not None:
        return run.decoder.encode(inputs).to(device)
    return torch.from_numpy(run.normalizer.apply(inputs).astype(np.float32)).to(device)


def latent_mask(mask: np.ndarray, latent_shape: tuple) -> torch.Tensor:
    """A pixel mask [n, C, H, W] on a latent grid [c, h, w]: a cell is regenerated if any pixel of its patch is."""
    m = torch.from_numpy(mask).amax(1, keepdim=True)
    factor = m.shape[-1] // latent_shape[-1]
    return torch.nn.functional.max_pool2d(m, factor).expand(-1, latent_shape[0], -1, -1).contiguous()


def known_region(schedule, x0: torch.Tensor, keep: torch.Tensor, noise: torch.Tensor):
    """The inpainting hook: after a step to time t (-1: the data), the kept region becomes x0 noised to t."""

    def hook(t: float, x: torch.Tensor) -> torch.Tensor:
        ab = float(schedule.alpha_bar_at([t])[0])
        known = x0 if ab >= 1.0 else ab**0.5 * x0 + (1 - ab) ** 0.5 * noise
        return torch.lerp(x, known, keep)  # x where keep = 0, known where keep = 1

    return hook


@torch.no_grad()
def resampled(denoiser, x, grid, *, hook, jumps: int, eta: float, generator, cond=None, callback=None):
    """RePaint's loop (Lugmayr et al. 2022, Algorithm 1) on a grid: each step from t to t' (a DDIM step with this
    eta; 1: DDPM's posterior), the kept region re-imposed at t', then `jumps` times back to t by the forward
    process, x_t = sqrt(ab / ab') x_t' + sqrt(1 - ab / ab') z, and the step again, so the regenerated region
    harmonizes with the kept one. Network calls: (jumps + 1) per step."""
    ts = [float(t) for t in grid] + [-1.0]
    schedule = denoiser.schedule
    for i in range(len(grid)):
        ab, ab_next = (float(v) for v in schedule.alpha_bar_at([ts[i], ts[i + 1]]))
        for jump in range(jumps + 1):
            eps_hat, x0_hat = denoiser(x, ts[i], cond)
            x_next = hook(ts[i + 1], ddim_step(x0_hat, eps_hat, ab, ab_next, eta, generator))
            if jump == jumps or ts[i + 1] < 0:
                break
            x = (ab / ab_next) ** 0.5 * x_next + (1 - ab / ab_next) ** 0.5 * randn_like(x_next, generator)
        x = x_next
        if callback is not None and callback(StepRecord(i, ts[i], x, x0_hat, eps_hat)):
            break
    return x


RESAMPLERS = {"ddim": None, "ddpm": 1.0}  # the samplers --resample runs as (ddpm: ddim at eta 1)


def edit_sampler(run: Run, sampler: str | None, resample: int) -> str | None:
    """The sampler an edit asks for: the one given, else ddim where resampling jumps are asked (RePaint's loop is
    one of ddim's or ddpm's steps, whatever the run's own sampler; a student's own steps are its training's: it is
    refused by name unless one is given), else None (the run's own)."""
    return "ddim" if resample and sampler is None and not run.config.distilled else sampler


def edit_run(run: Run, inputs, *, strength: float | None = None, mask=None, sampler: str | None = None,
             steps: int | None = None, seed: int = 0, spacing: str | None = None, callback=None,
             clip: bool | None = None, cond=None, prompt: str | None = None, negative=None,
             guidance: float | None = None, guidance_interval=RUN_DEFAULT, resample: int = 0,
             **options) -> np.ndarray:
    """The inputs edited, in the data's coordinates (as sample_run returns them), one result per input.

    strength: img2img's start level in [0, 1]; None: IMG2IMG_STRENGTH, or 1 with a mask.
    mask: inpainting's mask (1 regenerate, 0 keep; check_mask's shapes); None: img2img only.
    resample: inpainting's RePaint jumps back per step (`resampled`; ddim or ddpm only, ddim where no sampler is
        asked for); 0: none.
    cond / prompt / negative / guidance / guidance_interval / sampler / steps / clip / seed: as sample_run's
    (cond: one class or one per input; prompt: one prompt for every input). The seed draws z (x_T's noise, the
    one the input is noised with) and a stochastic sampler's noise: strength 1 without a mask is sample_run's
    sample at that seed."""
    if not isinstance(run, Run):
        raise ConfigError("edit_run takes a loaded run (runs.load_run)")
    if prompt is not None and not isinstance(prompt, str):
        raise ConfigError("editing follows one prompt for every input; give a single prompt")
    strength = check_strength((1.0 if mask is not None else IMG2IMG_STRENGTH) if strength is None else strength)
    if isinstance(resample, bool) or not isinstance(resample, int) or resample < 0:
        raise ConfigError(f"resample is a whole number of jumps back per step, >= 0, got {resample!r}")
    if resample and mask is None:
        raise ConfigError("resampling jumps harmonize an inpainted region with the kept one; give a mask")
    inputs = check_inputs(run, inputs)
    keep_pixels = None if mask is None else 1.0 - check_mask(mask, len(inputs), data_shape(run))
    sampler = edit_sampler(run, sampler, resample)
    job = prepare_sampling(run, len(inputs), sampler, steps, seed=seed, clip=clip, cond=cond, guidance=guidance,
                           guidance_interval=guidance_interval, prompt=prompt, negative=negative, options=options)
    options = dict(job.options)  # the run's own sampler's options and those given (grid options popped below)
    schedule, noise = job.denoiser.schedule, job.x_T
    if strength == 0.0 and run.decoder is not None:
        return inputs.copy()  # nothing to sample; the VAE's round trip would change the input
    x0 = to_model_space(run, inputs)
    grid = part_way(sampler_grid(schedule, job.sampler, job.steps, spacing or run.config.sampling.spacing,
                                 sigma_min=options.pop("sigma_min", None), sigma_max=options.pop("sigma_max", None)),
                    strength)
    hook = None
    if keep_pixels is not None:
        keep = (torch.from_numpy(keep_pixels) if run.decoder is None else
                1.0 - latent_mask(1.0 - keep_pixels, tuple(x0.shape[1:]))).to(x0.device)
        hook = known_region(schedule, x0, keep, noise)
    if not len(grid):
        x = x0
    else:
        ab = float(schedule.alpha_bar_at([float(grid[0])])[0])
        x = noise if strength == 1.0 else ab**0.5 * x0 + (1 - ab) ** 0.5 * noise
        x = x if hook is None else hook(float(grid[0]), x)
        if resample:
            if job.sampler not in RESAMPLERS:
                raise ConfigError(f"resampling jumps run RePaint's loop of ddim or ddpm steps; sample with one of them "
                                  f"(--sampler ddim or ddpm), not {job.sampler}")
            eta = RESAMPLERS[job.sampler] if RESAMPLERS[job.sampler] is not None else options.pop("eta", 0.0)
            if options:  # RePaint's loop takes only ddim's eta: anything else would be recorded but not run
                raise ConfigError(f"resampling jumps run RePaint's loop of {job.sampler} steps, which takes no "
                                  f"{', '.join(sorted(options))}; drop {'it' if len(options) == 1 else 'them'} or "
                                  "--resample")
            x = resampled(job.denoiser, x, grid, hook=hook, jumps=resample, eta=eta, generator=job.generator,
                          cond=job.cond, callback=callback)
        else:
            x = run_sampler(job.denoiser, x, job.sampler, grid=grid, generator=job.generator, callback=callback,
                            hook=hook, cond=job.cond, **options)
    out = to_data(run, x)
    if keep_pixels is not None and run.decoder is not None:  # the kept pixels back, exactly
        out = keep_pixels * inputs + (1.0 - keep_pixels) * out
    return out
