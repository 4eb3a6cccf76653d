"""A loaded run, ready to sample (like a diffusers pipeline object): its network, schedule and Denoiser, its
conditioning (class names, prompts through the run's text encoder, guidance defaults), the VAE decoder of a
latent run, and the map back to the data's coordinates. The CLI, the lab, the demos and the benchmarks sample
through here; none builds its own Denoiser."""

from __future__ import annotations

import copy
import dataclasses
import enum
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..cond import (
    check_guidance_target,
    check_null_for_sampling,
    class_labels,
    conditioning_for,
    to_device,
    with_negative,
)
from ..config import RunConfig
from ..data.normalize import Normalizer
from ..denoiser import Denoiser, Interval, check_guidance_interval
from ..devices import module_device, randn
from ..errors import CheckpointError, ConfigError
from ..memory import require_memory
from ..nn import lora, registry
from ..nn.precision import sampling_precision
from ..sampling import STOCHASTIC
from ..sampling import sample as run_sampler
from ..store.folder import check_folder
from ..store.rundir import read_config, read_model
from ..text.data import null_cond, prompt_cond
from .adapters import is_lora, read_lora
from .vae import LatentDecoder, check_vae, load_vae


class Default(enum.Enum):
    """A setting left to the run: what its config.json says (resolved once, in sample_run)."""
    RUN = "the run's default"


RUN_DEFAULT = Default.RUN


@dataclass
class Run:
    """A loaded run: its config, EMA network, Denoiser, the data normalizer and (latent runs) the VAE decoder."""

    config: RunConfig
    network: torch.nn.Module
    denoiser: Denoiser
    normalizer: Normalizer
    step: int
    decoder: object = None  # latent runs: latents -> pixels (LatentDecoder)
    precision: str = "fp32"  # what the Denoiser's network calls run in (nn.precision.sampling_precision)
    precision_why: str = "as asked"

    def sample(self, n: int, sampler: str = "ddim", steps: int | None = None, **options) -> np.ndarray:
        """sample_run(self, ...): n samples in the data's coordinates."""
        return sample_run(self, n, sampler, steps, **options)

    def to_data(self, x: torch.Tensor) -> np.ndarray:
        return to_data(self, x)


def load_run(run_dir, guidance_scale: float = 1.0, fast: bool = True, device=None, precision: str = "auto") -> Run:
    """Everything `sample` needs, from the run directory alone.

    fast: the Denoiser calls the network kind's sampling fast path (e.g. the folded MLP) in its sampling
    chunks; False calls the plain network in one piece (the reference the fast path is tested against).
    device: where the network lives (default the CPU; devices.resolve_device turns 'auto' into one).
    precision: the network calls' precision while sampling: auto (bf16 for a U-Net on a CPU with native bf16,
    else fp32; nn.precision), fp32 or bf16."""
    config = read_config(run_dir)
    if registry.kind_of(config.network) == "vae":
        raise CheckpointError(f"{run_dir} is a VAE run (an autoencoder, not a diffusion model); train a diffusion "
                              f"model on its latents with `diffkit train --latent {run_dir} ...` and sample that")
    if config.fitted.normalizer is None:
        raise CheckpointError(f"{run_dir}/config.json has no fitted normalizer; the run never trained")
    if config.parent is not None and config.parent.reads:  # an imported pipeline: the parts it reads, unchanged
        check_folder(run_dir, config.parent.path, config.parent.reads)
    network = registry.build_network(config.network)
    precision, why = sampling_precision(precision, registry.kind_of(config.network), torch.device(device or "cpu"))
    meta = read_lora(run_dir, config, network) if is_lora(config) else read_model(run_dir, network)
    if device is not None:
        network.to(device)
    denoiser = make_denoiser(config, network, guidance_scale=guidance_scale, fast=fast, precision=precision)
    decoder = None
    if config.data.latent is not None:  # a latent run samples through the VAE it was trained with
        _, vae = load_vae(config.data.latent, device)
        check_vae(config.data.latent, config.fitted.vae_sha256, run_dir)
        decoder = LatentDecoder(vae, config.fitted.latent_scale)
    return Run(config, network, denoiser, Normalizer(**config.fitted.normalizer), int(meta.get("step", 0)), decoder,
               precision, why)


def snapshot_run(trainer) -> Run:
    """A Run of a run in training: a copy of its EMA weights so far, sampled as a loaded run would be (plain
    network, no fast path)."""
    network = copy.deepcopy(trainer.network)
    network.load_state_dict(trainer.ema.state_dict(trainer.network))
    if trainer.lora:  # the adapters merged into a plain network of the kind
        network = lora.merged(network, registry.build_network(trainer.config.network))
    network.eval()
    config = trainer.config
    return Run(config, network, make_denoiser(config, network, fast=False), Normalizer(**config.fitted.normalizer),
               trainer.step)


def make_denoiser(config: RunConfig, network: torch.nn.Module, *, guidance_scale: float = 1.0,
                  fast: bool = True, precision: str = "fp32") -> Denoiser:
    """The Denoiser of a run's config around `network` (the trained one, or a live copy during training);
    precision: fp32 or bf16 (autocast around the network's calls)."""
    sampling_net, chunk = registry.for_sampling(network, fast, precision, config.fitted.shape)
    boundary = config.parent.boundary if config.parent is not None and config.parent.kind == "consistency" else None
    reads_w = getattr(config.network, "guidance_embed", False)
    interval = None if reads_w else config.sampling.guidance_interval
    # a student that reads w learned where its teacher guides (training/guided.py): each of its jumps takes w,
    # whatever level it starts from (a 4-step digits student starts at sigma 160, 2.4, 1.0 and 0.4, none inside the
    # teacher's (4, 80]); students distilled before this rule recorded the teacher's interval, read as None here
    return Denoiser(sampling_net, config.path(), config.prediction, conditioning=conditioning_for(config),
                    guidance_scale=guidance_scale, guidance_interval=interval,
                    clip_x0=config.x0_clip(), chunk=chunk if fast else None, boundary=boundary, guidance_input=reads_w)


def conditioning(config: RunConfig, cond, prompt, n: int, guidance, device, negative=None) -> tuple:
    """(the cond of n samples, the sample count): class ids for a class run (cond: one class id or name, or n
    ids; None: the null class), token embeddings for a text run (prompt: one or a list, n samples of each;
    None: the null prompt). negative: a negative class (class runs) or prompt (text runs) that takes the null's
    place in guidance (cond.with_negative). Refuses guidance without a target and uses of a null that never
    trained."""
    if config.data.text or prompt is not None:
        if cond is not None:
            raise ConfigError("this is a text run; give it a prompt (--prompt), not a class")
        check_guidance_target(prompt, guidance, "prompt", "--prompt")
        if prompt is None:
            labels = null_cond(config, n, device)
        else:
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            if config.data.text:  # (a class run given a prompt is refused by prompt_cond, by name)
                check_null_for_sampling(config, prompts, guidance)
            labels, n = prompt_cond(config, prompts, n, device), n * len(prompts)
    else:
        labels = class_labels(config, cond, n)
        check_null_for_sampling(config, labels, guidance)
        check_guidance_target(labels, guidance)
    if negative is None:
        return labels, n
    return with_negative(labels, negative_cond(config, negative, labels, n, guidance, device)), n


def negative_cond(config: RunConfig, negative, labels, n: int, guidance, device):
    """The negative condition of n samples: a class (id or name) of a class run, a prompt of a text run."""
    text = bool(config.data.text)
    if (text and not isinstance(negative, str)) or (not text and not config.network.num_classes):
        kind = "text" if text else "class-conditional" if config.network.num_classes else "unconditional"
        takes = {"text": "a negative prompt (--negative-prompt)", "class-conditional": "a negative class "
                 "(--negative-class)", "unconditional": "no negative condition"}[kind]
        raise ConfigError(f"this run is {kind}, so it takes {takes}")
    if labels is None or guidance in (None, 1):
        raise ConfigError("a negative condition acts through guidance, in the null's place: give a class or prompt "
                          "to guide towards and --guidance other than 1")
    if text:
        return prompt_cond(config, [negative], n, device)
    return class_labels(config, negative, n)


def sample_run(run: Run | str | Path, n: int, sampler: str | None = None, steps: int | None = None, *,
               seed: int = 0, spacing: str | None = None, callback=None, clip: bool | None = None,
               cond=None, guidance: float | None = None, guidance_interval: Interval | Default = RUN_DEFAULT,
               device=None, precision: str | None = None, noise=None,
               prompt=None, negative=None, **options) -> np.ndarray:
    """n samples in the data's own coordinates, float32 [n, D] (points) or [n, C, H, W] in [0, 1] (images);
    same seed => bitwise identical on one device, and the same noise on every device (drawn on the CPU).

    clip: clip x0_hat to the training data's bounding box (see FittedStats.x0_bound; images: the pixel range);
        None: the run's default (config.sampling.clip_x0).
    callback: receives each sampler step's StepRecord (normalized coordinates) and may stop the loop.
    cond: for a conditional run, a class (id or name) for all n samples, or n class ids (a mixed batch);
        None samples the unconditional model (the null class).
    guidance: classifier-free guidance scale w (default 1: the plain conditional model; 0: unconditional).
    guidance_interval: (sigma_lo, sigma_hi) where guidance applies, None for every level; RUN_DEFAULT: the run's
        (config.sampling.guidance_interval).
    device: where to sample a run given by its path (a loaded Run samples where its network is).
    precision: the network calls' precision (load_run's: auto, fp32 or bf16); None: a loaded Run's own, auto
        for a path.
    prompt: for a text run, a prompt or a list of prompts: n samples of each (prompt 0's first); None samples
        the unconditional model (the null prompt).
    negative: a negative prompt (text runs) or class (class runs): guidance pushes away from it instead of from
        the null condition (needs guidance != 1).
    noise: x_T itself (as a diffusers pipeline's `latents`): float32 [samples, *shape] in the network's space
        (normalized data; a latent run's latents), the same start on any device; None: drawn from seed. The
        seed still draws a stochastic sampler's noise.
    sampler, steps: None: the run's own (run_sampling: image runs dpmpp-2m at 20 (shapes: dpmpp-2m-sde, with the
        run's own options, own_options), a student its own, else ddim at its default steps).
    """
    job = prepare_sampling(run, n, sampler, steps, seed=seed, clip=clip, cond=cond, guidance=guidance,
                           guidance_interval=guidance_interval, device=device, precision=precision, prompt=prompt,
                           negative=negative, noise=noise, options=options)
    spacing = spacing or job.run.config.sampling.spacing
    x = run_sampler(job.denoiser, job.x_T, job.sampler, job.steps, spacing, generator=job.generator, callback=callback,
                    cond=job.cond, **job.options)
    return to_data(job.run, x)


@dataclass
class Job:
    """A sampling call made ready: the run, its Denoiser with the asked changes, the sampler and steps, the cond
    of every sample, the generator and x_T (given, or drawn from the generator on the CPU and moved to the run's
    device)."""

    run: Run
    denoiser: Denoiser
    sampler: str
    steps: int | None
    cond: object
    generator: torch.Generator
    x_T: torch.Tensor
    options: dict = dataclasses.field(default_factory=dict)  # the sampler's options (own_options: the run's + given)


def prepare_sampling(run: Run | str | Path, n: int, sampler: str | None, steps: int | None, *, seed: int = 0,
                     clip: bool | None = None, cond=None, guidance: float | None = None,
                     guidance_interval: Interval | Default = RUN_DEFAULT, device=None, precision: str | None = None,
                     prompt=None, negative=None, noise=None, options: dict | None = None) -> Job:
    """Everything sample_run (and editing, runs/edit.py) settles before the sampler runs: see sample_run."""
    if not isinstance(run, Run):
        run = load_run(run, device=device, precision=precision or "auto")
    elif precision is not None:
        run = with_precision(run, precision)
    guidance = student_guidance(run.config, guidance, cond is not None or prompt is not None)
    sampler, steps = run_sampling(run.config, sampler, steps, guidance)
    device = module_device(run.network)
    labels, n = conditioning(run.config, cond, prompt, n, guidance, device, negative)
    changes = {} if clip is None else {"clip_x0": run.config.x0_clip(clip)}
    if guidance is not None:
        changes["guidance_scale"] = guidance
    if guidance_interval is not RUN_DEFAULT:
        changes["guidance_interval"] = check_guidance_interval(guidance_interval)
    denoiser = run.denoiser.replace(**changes) if changes else run.denoiser
    shape = tuple(run.config.fitted.shape)
    check_sample_memory(n, shape)
    g = torch.Generator().manual_seed(seed)  # on the CPU: the same x_T and noise on every device
    x_T = randn((n, *shape), g, device=device) if noise is None else given_noise(noise, (n, *shape), device)
    return Job(run, denoiser, sampler, steps, to_device(labels, device), g, x_T,
               own_options(run.config, sampler, options))


def given_noise(noise, shape: tuple, device) -> torch.Tensor:
    """x_T given by the caller, checked: a float32 array or tensor of exactly `shape`, finite."""
    x = torch.from_numpy(noise) if isinstance(noise, np.ndarray) else noise
    if not isinstance(x, torch.Tensor):
        raise ConfigError(f"the noise must be a float32 array, got {type(noise).__name__}")
    if x.dtype != torch.float32:
        raise ConfigError(f"the noise must be float32, got {str(x.dtype).removeprefix('torch.')}")
    if tuple(x.shape) != shape:
        raise ConfigError(f"the noise has shape {list(x.shape)} but this sampling starts from {shape[0]} samples of "
                          f"shape {list(shape[1:])}: {list(shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ConfigError("the noise has non-finite values (nan or inf)")
    return x.to(device)


def with_precision(run: Run, precision: str) -> Run:
    """The run sampling at another precision (auto, fp32 or bf16): the same network, a new Denoiser (on the same
    path, fast or plain, with the fast path's chunk for that precision)."""
    precision, why = sampling_precision(precision, registry.kind_of(run.config.network), module_device(run.network))
    if precision == run.precision:
        return run
    fast = run.denoiser.chunk is not None  # make_denoiser: the fast path, and only it, calls in chunks
    network, chunk = registry.for_sampling(run.network, fast, precision, run.config.fitted.shape)
    return dataclasses.replace(run, denoiser=run.denoiser.replace(network=network, chunk=chunk if fast else None),
                               precision=precision, precision_why=why)


def run_sampling(config: RunConfig, sampler: str | None, steps: int | None, guidance=None) -> tuple[str, int | None]:
    """The sampler and steps a run samples with: those asked for, else the run's own (config.sampling; a distilled
    student's are the ones it was distilled for). A progressive student refuses more steps than it learned and
    a second guidance on top of the one folded into it."""
    own = config.sampling.sampler or "ddim"
    sampler = sampler or own
    if steps is None and sampler == own:
        steps = config.sampling.steps
    parent = config.parent
    if config.distilled:
        if parent.kind == "progressive" and steps is not None and steps > parent.steps:
            raise ConfigError(f"this student was distilled for {parent.steps} steps; sample it with --steps "
                              f"{parent.steps} or fewer (more steps would leave the levels it learned)")
        if parent.guidance not in (None, 1) and guidance not in (None, 1) and not parent.guidance_range:
            raise ConfigError(f"this student has guidance w = {parent.guidance:g} folded in, so it samples at w = 1; "
                              "drop --guidance")
    return sampler, steps


def own_options(config: RunConfig, sampler: str, given: dict | None = None) -> dict:
    """The sampler options a call runs with: those the run records for its own sampler (config.sampling.options)
    when `sampler` is that sampler, overridden one by one by those `given` with the call."""
    recorded = config.sampling.options if sampler == (config.sampling.sampler or "ddim") else {}
    return {**recorded, **(given or {})}


def deterministic_own(config: RunConfig) -> tuple[str | None, int | None]:
    """The run's own sampler and steps, but dpmpp-2m at the same steps where the own one draws fresh noise and the run
    is not a student (shapes' dpmpp-2m-sde): what an interpolation, an exported plan and a reflowed run take, which
    need one path per x_T. (None, None): the run records none."""
    own, steps = config.sampling.sampler, config.sampling.steps
    return ("dpmpp-2m", steps) if own in STOCHASTIC and not config.distilled else (own, steps)


def student_guidance(config: RunConfig, guidance, conditioned: bool):
    """The guidance scale to sample at: as asked, but a student that reads w (distilled with a guidance range)
    takes a w within its range, and none asked (a class or prompt given) its range's midpoint."""
    span = config.parent.guidance_range if config.parent is not None else None
    if not span:
        return guidance
    lo, hi = span
    if guidance is None:
        return (lo + hi) / 2 if conditioned else None
    if not lo <= guidance <= hi:
        raise ConfigError(f"this student learned guidance scales w from {lo:g} to {hi:g}; give --guidance within "
                          f"them, got {guidance:g}")
    return guidance


def to_data(run: Run, x: torch.Tensor) -> np.ndarray:
    """Normalized samples back in the data's coordinates (images: pixels clipped to [0, 1]; latents: decoded
    by the run's VAE into pixels)."""
    if run.decoder is not None:
        return run.decoder(x.detach())
    out = run.normalizer.invert(x.detach().cpu().numpy())
    return np.clip(out, 0.0, 1.0) if run.config.fitted.is_images else out


# sampling holds about this many copies of the batch at once (x_T, x, x0_hat, eps_hat, the multistep history,
# the result in the data's coordinates)
SAMPLE_COPIES = 8


def check_sample_memory(n: int, shape) -> None:
    """Refuse, before any work, a sample count whose arrays would not fit in the memory available now."""
    require_memory(n * int(np.prod(shape)) * 4 * SAMPLE_COPIES,
                   f"{n} samples of shape {list(shape)} need about {{need}} GiB but {{free}} GiB are available; "
                   "ask for fewer (--n) or sample in parts")
