"""Reflow's coupling (Liu et al. 2023, Algorithm 1): N noises and the samples the teacher's probability-flow ODE
carries them to, in the teacher's normalized coordinates, computed once and cached (safetensors under
DIFFKIT_CACHE, keyed by the teacher's weights and the settings), so an interrupted student resumes on the same
pairs. A conditional teacher is solved per class (classes cycled over the N noises) or, for a text run, per
prompt (each noise with a training caption, drawn as training draws them) at the recorded guidance."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from tqdm.auto import tqdm

from ..cond import to_device
from ..config import ParentConfig
from ..data.source import TensorSource
from ..errors import ConfigError
from ..memory import require_memory
from ..sampling import sample as run_sampler
from ..store.cache import cached_tensors
from ..store.rundir import read_config
from ..text.data import TextSource
from .captions import caption_bank, draw_captions
from .pipeline import Run, load_run
from .teachers import check_unchanged

PAIR_COPIES = 12  # the pairs, a chunk's sampling state (x, x0_hat, eps_hat, history) and the cached copy
CHUNK = 4096      # noises solved at once
MAX_PAIRS = 10_000_000


def check_pairs(n, shape) -> int:
    """Refuse, up front with the estimate, a number of pairs that is not an integer in range or does not fit."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_PAIRS:
        raise ConfigError(f"--pairs is a number of (noise, sample) pairs from 1 to {MAX_PAIRS:,}, got {n!r}")
    require_memory(n * int(np.prod(shape)) * 4 * PAIR_COPIES,
                   f"{n} pairs of shape {list(shape)} need about {{need}} GiB but {{free}} GiB are available; ask "
                   "for fewer (--pairs)")
    return n


@torch.no_grad()
def solve_pairs(teacher: Run, parent: ParentConfig, progress: bool = True) -> dict:
    """{"noise", "x0"[, "labels" | "captions"]}: parent.pairs noises (drawn on the CPU from parent.seed) and where
    the teacher's ODE takes them (parent.sampler, parent.steps; deterministic); a class-conditional teacher's
    labels, a text teacher's caption ids into runs.captions.caption_bank."""
    cfg = teacher.config
    shape, n, K = tuple(cfg.fitted.shape), parent.pairs, cfg.network.num_classes
    g = torch.Generator().manual_seed(parent.seed)
    noise = torch.randn((n, *shape), generator=g)
    labels, key = (torch.arange(n) % K, "labels") if K else (None, None)
    if cfg.data.text:
        choices, bank = caption_bank(cfg)
        labels, key = draw_captions(choices, n, parent.seed + 1), "captions"
    denoiser = teacher.denoiser if parent.guidance is None else teacher.denoiser.replace(guidance_scale=parent.guidance)
    device = next(teacher.network.parameters()).device
    out = []
    for i in tqdm(range(0, n, CHUNK), desc="reflow pairs", unit="chunk", disable=not progress, leave=False):
        cond = None if labels is None else labels[i:i + CHUNK]
        cond = {k: v[cond].to(device) for k, v in bank.items()} if key == "captions" else to_device(cond, device)
        x = run_sampler(denoiser, noise[i:i + CHUNK].to(device), parent.sampler, parent.steps, cond=cond)
        out.append(x.float().cpu())
    pairs = {"noise": noise, "x0": torch.cat(out)}
    return pairs if labels is None else {**pairs, key: labels}


def cached_pairs(parent: ParentConfig, device=None, progress: bool = True) -> dict:
    """The pairs of `parent`, from the cache or solved now; the teacher must be the one recorded (checksum)."""
    check_unchanged(parent, "reflow")
    key = hashlib.sha256(f"{parent.sha256}|{parent.pairs}|{parent.sampler}|{parent.steps}|{parent.guidance}|"
                         f"{parent.seed}".encode()).hexdigest()
    return cached_tensors(f"reflow-{key[:32]}", parent.pairs,
                          lambda: solve_pairs(load_run(parent.path, device=device, precision="fp32"), parent, progress),
                          {"teacher": parent.sha256})


def pair_source(config) -> TensorSource:
    """The student's training source: each draw is a pair stacked as [B, 2, ...] (sample, noise), with its class
    or its caption's tokens."""
    pairs = cached_pairs(config.parent)
    x = torch.stack([pairs["x0"], pairs["noise"]], 1)
    if "captions" in pairs:
        bank = caption_bank(read_config(config.parent.path))[1]  # the teacher's split (the student's seed is its own)
        return TextSource(x, pairs["captions"].reshape(-1, 1).numpy(), bank)
    return TensorSource(x, pairs.get("labels"))
