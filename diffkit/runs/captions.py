"""A text run's captions, encoded once: every training image's captions as token embeddings (cached under
DIFFKIT_CACHE by a hash of the encoder's files and the captions), for training (runs.sources) and for reflow's
per-prompt pairs (runs.pairs)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from ..data.images import load_images
from ..store.cache import cached_tensors
from ..text.data import training_captions
from ..text.encoder import load_encoder


def encode_captions(encoder_name: str, captions: list[str]) -> dict:
    """{"tokens" [U, L, D], "mask" [U, L]} of the captions, cached by a hash of the encoder's files and the captions."""
    encoder = load_encoder(encoder_name)
    h = hashlib.sha256(encoder.fingerprint.encode())
    h.update("\n".join(captions).encode())

    def encode():
        cond = encoder.encode(captions)
        return {"tokens": cond["tokens"], "mask": cond["mask"].to(torch.uint8)}

    cached = cached_tensors(f"text-{h.hexdigest()[:32]}", len(captions), encode)
    return {"tokens": cached["tokens"], "mask": cached["mask"].bool()}


def caption_bank(config) -> tuple[np.ndarray, dict]:
    """(choices int [N, K] into the bank, bank {"tokens" [U, L, D], "mask" [U, L]}) of a text run's training
    images that have captions: image i is drawn with one of the captions choices[i] (as TextSource draws them)."""
    data = load_images(config.data.spec, seed=config.train.seed)
    captions, choices, keep = training_captions(data)
    return choices[keep], encode_captions(config.data.text, captions)


def draw_captions(choices: np.ndarray, n: int, seed: int) -> torch.Tensor:
    """n caption ids into the bank, drawn as training draws them (an image uniformly, then one of its captions
    choices[image]), from `seed`."""
    choices = torch.from_numpy(np.ascontiguousarray(choices)).long()
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, choices.shape[0], (n,), generator=g)
    return choices[image, torch.randint(0, choices.shape[1], (n,), generator=g)]
