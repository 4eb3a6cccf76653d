"""Text-conditional data: every training image with the captions it may be drawn with (TextSource; the captions'
token embeddings are encoded once and cached by runs.sources), prompts files, and prompts turned into a cond for
sampling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.captions import folder_captions
from ..data.source import TensorSource
from ..errors import ConfigError, DataError
from .captions import digits_captions, shapes_captions
from .encoder import load_encoder, null_tokens

CAPTIONED = ("shapes", "shapes64", "mnist5k", "digits")  # built-ins with generated captions


def training_captions(data) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(captions, choices int [N, K] into captions, keep bool [N]) for the train split of ImageData `data`."""
    spec = data.spec
    if spec in ("shapes", "shapes64"):
        return shapes_captions(data.attributes["train"], data.shape[-1])
    if spec in ("digits", "mnist5k"):
        return digits_captions(data.train_labels)
    parts = data.attributes or {}
    if "file" not in parts.get("train", {}):
        raise DataError(f"{spec} has no captions; text-to-image needs {', '.join(CAPTIONED)} or a folder of images "
                        "with a captions.csv (file,caption) or a .txt caption beside each image")
    train = list(parts["train"]["file"])
    captions = folder_captions(spec, train + list(parts["test"]["file"]))[:len(train)]  # checked for every image
    return captions, np.arange(len(captions)).reshape(-1, 1), np.ones(len(captions), bool)


class TextSource(TensorSource):
    """Training images with captions: draw(B, g) -> (x0 [B, ...], {"tokens" [B, L, D], "mask" [B, L]}); each drawn
    image takes one of its K captions uniformly (templates and synonyms vary from step to step)."""

    def __init__(self, x0: torch.Tensor, choices: np.ndarray, cond: dict):
        super().__init__(x0)
        self.choices = torch.from_numpy(np.ascontiguousarray(choices)).long()  # [N, K]
        self.tokens, self.mask = cond["tokens"], cond["mask"]

    def draw(self, batch_size: int, generator: torch.Generator):
        idx = torch.randint(0, len(self), (batch_size,), generator=generator)
        k = torch.randint(0, self.choices.shape[1], (batch_size,), generator=generator)
        ids = self.choices[idx, k]
        return self.x0[idx], {"tokens": self.tokens[ids], "mask": self.mask[ids]}


def prompt_cond(config, prompts: list[str], n: int, device=None) -> dict:
    """The cond of n samples per prompt (prompt 0's n first), encoded by the run's text encoder."""
    if not config.data.text:
        what = "class-conditional (sample a class with --class)" if config.network.num_classes else \
            "unconditional (trained without --text)"
        raise ConfigError(f"this run is {what}, so it cannot follow a prompt; train a text run with --text")
    if not prompts:
        raise ConfigError("give at least one prompt (--prompt or --prompts FILE)")
    cond = load_encoder(config.data.text).encode(list(prompts))
    index = torch.arange(len(prompts)).repeat_interleave(n)
    return {k: v[index].to(device) if device is not None else v[index] for k, v in cond.items()}


def null_cond(config, n: int, device=None) -> dict:
    """The null prompt for n samples: what a text run samples when no prompt is given (unconditional)."""
    tokens, mask = null_tokens(config.data.text)
    out = {"tokens": tokens.expand(n, -1, -1), "mask": mask.expand(n, -1)}
    return {k: v.to(device) for k, v in out.items()} if device is not None else out


def read_prompts(path) -> list[str]:
    """The prompts of a prompts file: one per line; blank lines and lines starting with # are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"prompts file {path} does not exist; give a text file with one prompt per line") from None
    except (UnicodeDecodeError, IsADirectoryError):
        raise DataError(f"{path} is not a UTF-8 text file; give a text file with one prompt per line") from None
    prompts = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise DataError(f"{path} holds no prompts; write one prompt per line")
    return prompts
