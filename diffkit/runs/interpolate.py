"""Interpolation with a run: between two starting noises (spherical, as in the DDIM paper, Song et al. 2021,
sec. 5.3: a deterministic sampler maps nearby x_T to nearby samples, and slerp keeps the norm a Gaussian x_T has),
or between two conditions at one fixed noise (the class embeddings blended, cond.ClassConditioning's class
weights; a text run's token embeddings blended)."""

from __future__ import annotations

import numpy as np
import torch

from ..cond import class_labels, pad_tokens
from ..devices import randn
from ..errors import ConfigError
from ..nn import registry
from ..sampling import sample as run_sampler
from ..text.data import prompt_cond
from .pipeline import Run, deterministic_own, prepare_sampling, to_data


def slerp(a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sin((1 - w) theta) / sin(theta) a + sin(w theta) / sin(theta) b for each weight w (rows of the result),
    theta the angle between a and b (Shoemake 1985); the straight line where a and b are (anti)parallel."""
    a64, b64, w = a.double().flatten(), b.double().flatten(), weights.double()[:, None]
    cos = torch.dot(a64, b64) / (a64.norm() * b64.norm()).clamp_min(1e-30)
    theta = torch.arccos(cos.clamp(-1, 1))
    if float(torch.sin(theta)) < 1e-6:
        out = (1 - w) * a64 + w * b64
    else:
        out = (torch.sin((1 - w) * theta) * a64 + torch.sin(w * theta) * b64) / torch.sin(theta)
    return out.reshape(len(weights), *a.shape).to(a.dtype)


def start_noise(run: Run, seed: int) -> torch.Tensor:
    """The x_T of sample_run's first sample at `seed` (float32 [*shape] on the CPU)."""
    return randn((1, *run.config.fitted.shape), torch.Generator().manual_seed(seed), device="cpu")[0]


def check_pair(pair, what: str) -> tuple:
    if pair is None or len(pair) != 2:
        raise ConfigError(f"interpolation goes between two {what}; give exactly two")
    return tuple(pair)


def interpolation_sampler(run: Run, sampler: str | None, steps: int | None) -> tuple[str | None, int | None]:
    """The sampler and steps an interpolation asks for: those given, else the run's own kept deterministic
    (runs.pipeline.deterministic_own), so that nearby noises give nearby samples."""
    if sampler is None:
        sampler, own_steps = deterministic_own(run.config)
        steps = own_steps if steps is None else steps
    return sampler, steps


def interpolate_run(run: Run, n: int = 8, *, seeds=None, seed: int = 0, classes=None, prompts=None, cond=None,
                    prompt: str | None = None, guidance: float | None = None, sampler: str | None = None,
                    steps: int | None = None, spacing: str | None = None, **options) -> np.ndarray:
    """n samples along an interpolation, in the data's coordinates: between the starting noises of two seeds
    (`seeds`, at one class `cond` or `prompt`), or at the noise of `seed` between two classes (`classes`, ids or
    names) or two prompts (`prompts`). Exactly one of seeds, classes, prompts."""
    if not isinstance(run, Run):
        raise ConfigError("interpolate_run takes a loaded run (runs.load_run)")
    if sum(v is not None for v in (seeds, classes, prompts)) != 1:
        raise ConfigError("interpolate between two seeds (--seeds A,B), two classes (--classes A,B) or two prompts "
                          "(--prompts P1 P2): exactly one of them")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ConfigError(f"an interpolation needs n >= 2 samples (its two ends), got {n!r}")
    weights = torch.linspace(0, 1, n, dtype=torch.float64)
    if seeds is not None:
        a, b = (start_noise(run, int(s)) for s in check_pair(seeds, "seeds"))
        noise = slerp(a, b, weights)
    else:
        noise = start_noise(run, seed).expand(n, *run.config.fitted.shape).contiguous()
        cond, prompt = (check_pair(classes, "classes")[0], None) if classes is not None else \
            (None, check_pair(prompts, "prompts")[0])
    sampler, steps = interpolation_sampler(run, sampler, steps)
    job = prepare_sampling(run, n, sampler, steps, seed=seed, cond=cond, guidance=guidance, prompt=prompt,
                           noise=noise.numpy(), options=options)
    labels = job.cond
    if classes is not None and registry.kind_of(run.config.network).startswith("diffusers"):
        raise ConfigError("blending two classes blends their embeddings, which an imported diffusers U-Net does not "
                          "take; interpolate between two seeds (--seeds A,B) instead")
    if classes is not None:  # class weights: (1 - w) one-hot(A) + w one-hot(B)
        k = run.config.network.num_classes + 1
        ends = torch.cat([class_labels(run.config, c, 1) for c in classes])
        one_hot = torch.nn.functional.one_hot(ends, k).double()
        labels = ((1 - weights)[:, None] * one_hot[0] + weights[:, None] * one_hot[1]).float().to(job.x_T.device)
    elif prompts is not None:  # token embeddings blended, padded to one length: between the ends a token counts if
        # either prompt has it; each end keeps its own prompt's mask, so the ends are the two prompts' samples
        second = prompt_cond(run.config, [prompts[1]], n, labels["tokens"].device)
        length = max(labels["mask"].shape[1], second["mask"].shape[1])
        p, q = pad_tokens(labels, length), pad_tokens(second, length)
        w = weights.to(p["tokens"].dtype)[:, None, None].to(p["tokens"].device)
        mask = p["mask"] | q["mask"]
        mask[0], mask[-1] = p["mask"][0], q["mask"][-1]
        labels = {"tokens": (1 - w) * p["tokens"] + w * q["tokens"], "mask": mask}
    x = run_sampler(job.denoiser, job.x_T, job.sampler, job.steps, spacing or run.config.sampling.spacing,
                    generator=job.generator, cond=labels, **job.options)
    return to_data(run, x)
