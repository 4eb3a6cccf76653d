"""Conditioning: what a `cond` is, its null (for classifier-free guidance and label / prompt dropout), and
batch operations on it. Below the network a cond is opaque: the Denoiser, samplers and trainer only call
these functions.

Kinds of cond:
  class ids    long [B]; the null is the learned extra class `num_classes` (Ho & Salimans 2022, sec. 3.1)
  tokens       {"tokens": float [B, L, D], "mask": bool [B, L]} (text); the null is a given token sequence
               (e.g. the encoding of the empty prompt), broadcast over the batch
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

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


def cond_batch_size(cond) -> int:
    return len(next(iter(cond.values()))) if isinstance(cond, dict) else len(cond)


@dataclass(frozen=True)
class ClassConditioning:
    """Class ids 0..num_classes-1; id num_classes is the learned null class."""

    num_classes: int

    def null(self, cond: torch.Tensor) -> torch.Tensor:
        """The null condition for every row of cond."""
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
        B = cond["tokens"].shape[0]
        tokens = self.null_tokens.to(cond["tokens"]).expand(B, -1, -1)
        return {"tokens": tokens, "mask": self.null_mask.to(cond["mask"].device).expand(B, -1)}

    def drop(self, cond: dict, dropped: torch.Tensor) -> dict:
        null = self.null(cond)
        return {"tokens": torch.where(dropped[:, None, None], null["tokens"], cond["tokens"]),
                "mask": torch.where(dropped[:, None], null["mask"], cond["mask"])}


def drop_conds(conditioning, cond, p: float, generator: torch.Generator):
    """Replace a share p of the rows by the null, each row independently (label / prompt dropout,
    Ho & Salimans 2022, Algorithm 1). p = 0 draws nothing."""
    if cond is None or p <= 0:
        return cond
    dropped = torch.rand(cond_batch_size(cond), generator=generator) < p
    return conditioning.drop(cond, dropped.to(_device(cond)))


def _device(cond) -> torch.device:
    return next(iter(cond.values())).device if isinstance(cond, dict) else cond.device
