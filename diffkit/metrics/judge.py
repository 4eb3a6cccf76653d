"""The judge: a small CNN classifier of a labelled image data set, trained once on its train split.

Its logits say which class a sample looks like (class adherence); its penultimate features are the space
where image metrics measure distances (the classifier-feature Frechet distance, precision / recall), like
the "Frechet LeNet distance" of small-image papers. It is not Inception: numbers are comparable only
between models judged by the same judge (same data set, same fingerprint).

- Network: four conv blocks (3x3 conv, BatchNorm, ReLU) with a 2x2 max-pool (ceil mode) before each
  block after the first while the maps are larger than 4x4 (28 -> 14 -> 7 -> 4, 8 -> 4 -> 4 -> 4; any
  H, W >= 4 work), global average pooling to the `widths[-1]` = 128 features (`features`), a linear head.
  The features are pooled conv maps, as Inception's pool3 is for FID, not a fully connected layer: such
  a layer (or a conv on 1x1 maps) folds away what the classes do not need, and measured on digits it put
  uniform noise inside the real images' k-NN balls (precision 0.6, against 0.1 here).
- Training: AdamW with a one-cycle learning rate, label smoothing 0.1, random shifts of up to
  max(1, round(H / 14)) pixels (zero padding + crop; no flips: digits are not mirror-symmetric). Every
  draw comes from one seeded torch generator: a seed and a data set give the same judge on one machine.
- Cache: `judge-<spec>-<fingerprint[:16]>.safetensors` (weights + JSON metadata) under `DIFFKIT_CACHE`
  or ~/.cache/diffkit; a file whose metadata does not match the data, or that does not load, is retrained.
- Unlabelled data has no judge: `load_or_train_judge` raises a DataError (image metrics need labels).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError, notice
from ..store.cache import cache_root
from ..store.manifest import atomic_write

FORMAT = "diffkit-judge-1"


class ImageJudge(nn.Module):
    """A CNN classifier of [B, C, H, W] images in [0, 1]: forward -> logits [B, K], features -> [B, F]."""

    def __init__(self, in_channels: int, num_classes: int, widths=(16, 32, 64, 128)):
        super().__init__()
        self.config = {"in_channels": int(in_channels), "num_classes": int(num_classes),
                       "widths": [int(w) for w in widths]}
        sides = [in_channels, *widths]
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU())
            for a, b in itertools.pairwise(sides))
        self.head = nn.Linear(widths[-1], num_classes)
        self.test_accuracy: float | None = None  # set by load_or_train_judge: the ceiling of class adherence
        self.train_seconds: float | None = None  # how long training took (kept in the cache)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = 2 * x - 1
        for i, block in enumerate(self.blocks):
            if i and min(h.shape[-2:]) > 4:  # halve down to about 4x4 (28 -> 14 -> 7 -> 4; 8 -> 4), then keep
                h = F.max_pool2d(h, 2, ceil_mode=True)
            h = block(h)
        return h.mean((2, 3))  # [B, widths[-1]]: global average pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # [B, K]

    @torch.no_grad()
    def _map(self, fn, x, batch: int) -> torch.Tensor:
        """fn over x in eval mode and batches, on the judge's device; x is an array or tensor [N, C, H, W]."""
        was_training, device = self.training, next(self.parameters()).device
        self.eval()
        try:
            x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
            return torch.cat([fn(x[i:i + batch].to(device, torch.float32)).cpu()
                              for i in range(0, len(x), batch)]) if len(x) else torch.empty(0)
        finally:
            self.train(was_training)

    def predict(self, x, batch: int = 512) -> np.ndarray:
        """The class the judge assigns to each image, int64 [N]."""
        return self._map(lambda b: self(b).argmax(1), x, batch).numpy().astype(np.int64)

    def embed(self, x, batch: int = 512) -> np.ndarray:
        """Penultimate features of each image, float64 [N, F]."""
        return self._map(self.features, x, batch).numpy().astype(np.float64)

    def accuracy(self, x, y) -> float:
        """Share of labelled images (e.g. the test split) the judge classifies right."""
        return float((self.predict(x) == np.asarray(y)).mean())


def _shift(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by its own random (dy, dx) in [-pad, pad]^2, zero filled."""
    B, _, H, W = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2, B, 1), generator=generator)
    rows = (torch.arange(H) + dy)[:, :, None]  # [B, H, 1]
    cols = (torch.arange(W) + dx)[:, None, :]  # [B, 1, W]
    return padded[torch.arange(B)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)  # [B, C, H, W]


def default_epochs(n: int) -> int:
    """About 128k image visits, 8 to 40 epochs (digits 40, mnist5k 32, shapes 14)."""
    return int(min(40, max(8, math.ceil(128_000 / max(n, 1)))))


def train_judge(images, labels, *, seed: int = 0, epochs: int | None = None, progress: bool = False,
                batch_size: int = 64, lr: float = 3e-3) -> ImageJudge:
    """Train a judge on labelled images float [N, C, H, W] in [0, 1] and labels int [N] (CPU, seeded).

    `epochs` defaults to `default_epochs(N)`; shifts are up to max(1, round(H / 14)) pixels.
    """
    x = torch.as_tensor(np.asarray(images, np.float32))
    y = torch.as_tensor(np.asarray(labels, np.int64))
    if x.ndim != 4 or min(x.shape[2:]) < 4 or len(y) != len(x):
        raise DataError(f"the judge trains on images [N, C, H, W] with H, W >= 4 and one label each; "
                        f"got images {tuple(x.shape)} and {tuple(y.shape)} labels")
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # the initial weights from the seed, leaving the global RNG as it was
        torch.manual_seed(seed)
        judge = ImageJudge(x.shape[1], int(y.max()) + 1)
    epochs = default_epochs(len(x)) if epochs is None else int(epochs)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    optimizer = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
    pad = max(1, round(x.shape[2] / 14))
    bar = _bar(epochs * steps_per_epoch, progress, "training the judge")
    judge.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(judge(_shift(x[idx], pad, generator)), y[idx], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
    bar.close()
    return judge.eval()


def _bar(total: int, progress: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, leave=False)


def cache_path(data, cache_dir=None) -> Path:
    """Where the judge of `data` is cached: <cache_dir>/judge-<spec>-<fingerprint[:16]>.safetensors."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(data.spec)).strip("._")[:48] or "data"
    return root / f"judge-{name}-{data.fingerprint()[:16]}.safetensors"


def _expected(data, seed: int, epochs: int | None) -> dict:
    """The metadata a cached judge of `data` must carry to be used."""
    return {"format": FORMAT, "fingerprint": data.fingerprint(), "shape": list(data.shape),
            "num_classes": int(data.num_classes), "seed": int(seed),
            "epochs": default_epochs(len(data.train)) if epochs is None else int(epochs)}


def _metadata(data, judge: ImageJudge, seed: int, epochs: int | None) -> dict:
    return {**_expected(data, seed, epochs), "spec": str(data.spec), "config": judge.config,
            "test_accuracy": judge.test_accuracy, "train_seconds": judge.train_seconds}


def save_judge(judge: ImageJudge, data, path, *, seed: int = 0, epochs: int | None = None) -> None:
    """Write the judge's weights and metadata to `path` atomically (temp file, fsync, rename)."""
    from safetensors.torch import save

    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in judge.state_dict().items()}
    blob = save(state, metadata={"judge": json.dumps(_metadata(data, judge, seed, epochs))})
    atomic_write(path, blob)


def _load_cached(path: Path, data, seed: int, epochs: int | None) -> ImageJudge:
    """The cached judge at `path`; raises ValueError (or the loader's error) when it is not data's judge."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("judge", "null"))
        state = {k: f.get_tensor(k) for k in f.keys()}
    expected = _expected(data, seed, epochs)
    if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in expected.items()):
        raise ValueError("its metadata does not match the data set")
    config = meta["config"]
    judge = ImageJudge(config["in_channels"], config["num_classes"], config["widths"])
    judge.load_state_dict(state, strict=True)
    judge.test_accuracy, judge.train_seconds = float(meta["test_accuracy"]), meta.get("train_seconds")
    return judge.eval()


def load_or_train_judge(data, *, cache_dir=None, progress: bool = True, seed: int = 0,
                        epochs: int | None = None) -> ImageJudge:
    """The judge of an ImageData: loaded from the cache when it matches, else trained, scored and cached.

    A cached file is used only when its metadata matches the data (fingerprint, shape, classes) and the
    training settings (seed, epochs); anything else, a truncated or foreign file included, is retrained.

    Raises DataError for data without labels (image metrics need a labelled data set).
    """
    if data.train_labels is None or data.test_labels is None:
        raise DataError(f"image metrics need a labelled data set to train their judge classifier, "
                        f"and {data.spec!r} has no labels")
    path = cache_path(data, cache_dir)
    if path.exists():
        try:
            return _load_cached(path, data, seed, epochs)
        except Exception as e:  # truncated, tampered, foreign: never trusted, retrained
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            notice(f"ignoring the cached judge {path} ({reason}); training it again")
    start = time.perf_counter()
    judge = train_judge(data.train, data.train_labels, seed=seed, epochs=epochs, progress=progress)
    judge.test_accuracy = judge.accuracy(data.test, data.test_labels)
    judge.train_seconds = time.perf_counter() - start
    save_judge(judge, data, path, seed=seed, epochs=epochs)
    return judge
