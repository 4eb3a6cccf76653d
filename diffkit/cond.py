"""Conditioning: what a `cond` is, its null (for classifier-free guidance and label / prompt dropout), and
batch operations on it. Below the network a cond is opaque: the Denoiser, samplers and trainer only call
these functions.

Kinds of cond:
  class ids    long [B]; the null is the learned extra class `num_classes` (Ho & Salimans 2022, sec. 3.1)
  tokens       {"tokens": float [B, L, D], "mask": bool [B, L]} (text); the null is the encoding of the empty
               prompt (as Stable Diffusion's), padded to the batch's L and broadcast over the batch
A guidance-distilled student (Meng et al. 2023) also reads the guidance scale w: it travels inside the cond, as
the entry "w" (float [B]) of a dict ({"labels": ids, "w": w} for a class run, the text dict with "w" added), so
the network's signature stays network(x_t, t, cond). with_guidance builds it; the networks read it apart with
nn.embeddings.split_guidance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import ConfigError
from .nn.embeddings import GUIDANCE_KEY
from .text.encoder import null_tokens


def cat_conds(a, b):
    """Two conds of the same kind stacked along the batch (dicts entry by entry)."""
    if isinstance(a, dict):
        return {k: torch.cat([a[k], b[k]]) for k in a}
    return torch.cat([a, b])


def slice_cond(cond, start: int, stop: int):
    """Rows start:stop of a cond (None stays None)."""
    if cond is None:
        return None
    if isinstance(cond, dict):
        return {k: v[start:stop] for k, v in cond.items()}
    return cond[start:stop]


def to_device(cond, device: torch.device):
    """A cond on `device` (None stays None)."""
    if cond is None:
        return None
    if isinstance(cond, dict):
        return {k: v.to(device, non_blocking=True) for k, v in cond.items()}
    return cond.to(device, non_blocking=True)


def index_cond(cond, index: torch.Tensor):
    """Rows `index` of a cond (None stays None)."""
    if cond is None:
        return None
    if isinstance(cond, dict):
        return {k: v[index] for k, v in cond.items()}
    return cond[index]


def with_guidance(cond, w):
    """cond with the guidance scale w (a number or float [B]) inside it, for a network that reads w."""
    rows = cond_batch_size(cond)
    w = torch.as_tensor(w, dtype=torch.float32, device=_device(cond)).reshape(-1).expand(rows)
    return {**cond, GUIDANCE_KEY: w} if isinstance(cond, dict) else {"labels": cond, GUIDANCE_KEY: w}


# a negative condition (a negative prompt or class) rides inside the cond under these keys and takes the null's
# place in guidance (Denoiser; as Stable Diffusion's negative prompts: eps_neg + w (eps_cond - eps_neg))
NEGATIVE = "negative"


def with_negative(cond, negative):
    """cond with a negative condition of the same kind and batch inside it (token sequences padded to one
    length): {"labels": ids, "negative": ids} for a class run, the text dict with "negative_tokens" and
    "negative_mask" added."""
    if cond_batch_size(negative) != cond_batch_size(cond):
        raise ConfigError(f"the negative condition has {cond_batch_size(negative)} rows for {cond_batch_size(cond)}")
    if not isinstance(cond, dict):
        return {"labels": cond, NEGATIVE: negative}
    length = max(cond["mask"].shape[1], negative["mask"].shape[1])
    cond, negative = pad_tokens(cond, length), pad_tokens(negative, length)
    return {**cond, f"{NEGATIVE}_tokens": negative["tokens"], f"{NEGATIVE}_mask": negative["mask"]}


def split_negative(cond):
    """(the cond without its negative, the negative or None): what with_negative joined."""
    if not isinstance(cond, dict):
        return cond, None
    if NEGATIVE in cond:
        rest = {k: v for k, v in cond.items() if k != NEGATIVE}
        return (rest["labels"] if len(rest) == 1 else rest), cond[NEGATIVE]
    if f"{NEGATIVE}_tokens" not in cond:
        return cond, None
    rest = {k: v for k, v in cond.items() if not k.startswith(f"{NEGATIVE}_")}
    return rest, {"tokens": cond[f"{NEGATIVE}_tokens"], "mask": cond[f"{NEGATIVE}_mask"]}


def pad_tokens(cond: dict, length: int) -> dict:
    """A token cond padded with masked-out zeros to `length` tokens."""
    extra = length - cond["mask"].shape[1]
    if extra <= 0:
        return cond
    tokens, mask = cond["tokens"], cond["mask"]
    return {**cond, "tokens": torch.cat([tokens, tokens.new_zeros(len(tokens), extra, tokens.shape[2])], 1),
            "mask": torch.cat([mask, mask.new_zeros(len(mask), extra)], 1)}


def cond_batch_size(cond) -> int:
    return len(next(iter(cond.values()))) if isinstance(cond, dict) else len(cond)


@dataclass(frozen=True)
class ClassConditioning:
    """Class ids 0..num_classes-1; id num_classes is the learned null class. A cond may also be class weights,
    float [B, num_classes + 1] (a blend of class embeddings: interpolating between classes, runs/interpolate.py)."""

    num_classes: int

    def null(self, cond: torch.Tensor) -> torch.Tensor:
        """The null condition for every row of cond (for class weights: one-hot on the null class)."""
        if cond.is_floating_point():
            return torch.nn.functional.one_hot(torch.full_like(cond[:, 0], self.num_classes, dtype=torch.long),
                                               self.num_classes + 1).to(cond.dtype)
        return torch.full_like(cond, self.num_classes)

    def drop(self, cond: torch.Tensor, dropped: torch.Tensor) -> torch.Tensor:
        """cond with the rows where `dropped` (bool [B]) is set replaced by the null."""
        return torch.where(dropped, self.null(cond), cond)


@dataclass(frozen=True)
class TokenConditioning:
    """Token embeddings with a padding mask; the null is one fixed sequence (null_tokens [L, D], null_mask [L])."""

    null_tokens: torch.Tensor
    null_mask: torch.Tensor

    def null(self, cond: dict) -> dict:
        """The null sequence for every row of cond, padded (masked-out zeros) to cond's length L."""
        B, L, D = cond["tokens"].shape
        n = min(L, len(self.null_mask))
        tokens = cond["tokens"].new_zeros(L, D)
        tokens[:n] = self.null_tokens[:n].to(tokens)
        mask = torch.zeros(L, dtype=torch.bool, device=cond["mask"].device)
        mask[:n] = self.null_mask[:n].to(mask.device)
        return {"tokens": tokens.expand(B, -1, -1), "mask": mask.expand(B, -1)}

    def drop(self, cond: dict, dropped: torch.Tensor) -> dict:
        null = self.null(cond)
        return {"tokens": torch.where(dropped[:, None, None], null["tokens"], cond["tokens"]),
                "mask": torch.where(dropped[:, None], null["mask"], cond["mask"])}


def conditioning_for(config):
    """The cond kind of a run (diffkit.config.RunConfig): token embeddings for a text run (the null from its text
    encoder), class ids for a class-conditional one, None for an unconditional one."""
    if config.data.text:
        return TokenConditioning(*null_tokens(config.data.text))
    return ClassConditioning(config.network.num_classes) if config.network.num_classes else None


def drop_conds(conditioning, cond, p: float, generator: torch.Generator):
    """Replace a share p of the rows by the null, each row independently (label / prompt dropout,
    Ho & Salimans 2022, Algorithm 1). p = 0 draws nothing."""
    if cond is None or p <= 0:
        return cond
    dropped = torch.rand(cond_batch_size(cond), generator=generator) < p
    return conditioning.drop(cond, dropped.to(_device(cond)))


def _device(cond) -> torch.device:
    return next(iter(cond.values())).device if isinstance(cond, dict) else cond.device


# --- class ids given by a user -------------------------------------------------------------------------

def class_labels(config, cond, n: int) -> torch.Tensor | None:
    """cond (None, one class id or name, or n ids) as long [n] class ids of this run, checked."""
    if cond is None:
        return None
    num_classes = config.network.num_classes
    if not num_classes:
        raise ConfigError("this run is unconditional (trained without --cond), so it cannot sample a class")
    names = list(config.fitted.class_names or [])
    valid = _valid_classes(names, num_classes)
    if isinstance(cond, str):
        cond = class_id(cond, names, num_classes)
    labels = torch.as_tensor(np.asarray(cond))
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ConfigError(f"class ids must be integers; this model has classes {valid}")
    if labels.ndim == 0:  # one class for all: kept expanded (stride 0), which a network may read as shared
        labels = labels.reshape(1).long().expand(n)
    if labels.shape != (n,):
        raise ConfigError(f"give one class for all samples or one per sample ({n}), got shape {list(labels.shape)}")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if len(bad):
        raise ConfigError(f"class {int(bad[0])} is out of range; this model has classes {valid}")
    return labels.long() if labels.stride(0) == 0 else labels.long().contiguous()


def _valid_classes(names, num_classes: int) -> str:
    return f"0..{num_classes - 1}" + (f" ({', '.join(f'{i} = {c}' for i, c in enumerate(names))})" if names else "")


def class_id(cls, names, num_classes: int, owner: str = "this model") -> int:
    """A class given by name or id (text or int) as a checked id 0..num_classes-1."""
    valid = _valid_classes(names, num_classes)
    if cls in names:
        return names.index(cls)
    try:
        c = int(cls)
    except (TypeError, ValueError):
        raise ConfigError(f"unknown class {cls!r}; {owner} has classes {valid}") from None
    if not 0 <= c < num_classes:
        raise ConfigError(f"class {c} is out of range; {owner} has classes {valid}")
    return c


# --- guards: the one place each is written ----------------------------------------------------------------

def null_untrained(config) -> bool:
    """A conditional run trained with p_uncond 0: its null condition (class or prompt) never saw training."""
    return bool(config.network.num_classes or config.data.text) and config.train.p_uncond == 0


def check_guidance_target(cond, guidance, word: str = "class", flag: str = "--class") -> None:
    """A guidance scale needs a condition to guide towards."""
    if guidance is not None and cond is None:
        raise ConfigError(f"a guidance scale needs a {word} to guide towards; give one ({flag})")


def check_null_for_sampling(config, cond, guidance) -> None:
    """Refuse sampling that uses an untrained null condition: guidance (w != 1) always, and, for a class run,
    unconditional sampling too."""
    if not null_untrained(config):
        return
    if config.data.text and guidance not in (None, 1):
        raise ConfigError("this run was trained with p_uncond 0, so its null prompt never saw training and guidance "
                          "(w != 1) would be noise; sample at w = 1, or train with --p-uncond > 0")
    if not config.data.text and (cond is None or guidance not in (None, 1)):
        raise ConfigError("this run was trained with p_uncond 0, so its null class never saw training and guidance "
                          "(w != 1) or unconditional sampling would be noise; sample a class at w = 1, or train with "
                          "--p-uncond > 0")
