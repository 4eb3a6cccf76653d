"""Pictures of image diffusion: sample grids, reverse-process GIFs and strips, the forward process, guidance.

Images are float [N, C, H, W] in [0, 1] with C = 1 (grayscale) or 3 (RGB). Grids and GIFs are Pillow only;
figures with captions and axes use matplotlib on Agg (`plots.plt`). Small images (8x8 digits) are upscaled
with nearest neighbour so a tile is at least MIN_TILE pixels, and tiles are separated by BORDER grey pixels.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DiffkitError
from .plots import plt, save

MIN_TILE = 48  # px: the smallest side of an upscaled tile
BORDER = 2  # px between tiles and around the grid
BORDER_VALUE = 128  # mid grey: visible on black-background digits and on white-background images


def _pil():
    """PIL.Image, or the viz-extra error when Pillow is missing."""
    try:
        from PIL import Image
    except ImportError:
        raise DiffkitError("image pictures need Pillow; install it with `pip install 'diffkit[viz]'`") from None
    return Image


def _as_images(images, what: str = "images") -> np.ndarray:
    """Validate a batch [N, C, H, W] (numpy or torch) with C in {1, 3}; float32 clipped to [0, 1]."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[0] == 0:
        raise DiffkitError(f"{what} must be a non-empty array [N, C, H, W] with C = 1 or 3, got shape {x.shape}")
    return np.clip(np.nan_to_num(x, nan=0.0), 0.0, 1.0)


def _auto_scale(h: int, w: int) -> int:
    return max(1, math.ceil(MIN_TILE / min(h, w)))


def to_uint8_tiles(images, scale: int | None = None) -> np.ndarray:
    """[N, C, H, W] in [0, 1] -> [N, H * scale, W * scale, 3] uint8, nearest-neighbour upscaled."""
    x = _as_images(images)
    scale = _auto_scale(*x.shape[2:]) if scale is None else int(scale)
    if scale < 1:
        raise DiffkitError(f"the upscaling factor must be an integer >= 1, got {scale}")
    u8 = np.rint(x * 255.0).astype(np.uint8).transpose(0, 2, 3, 1)  # [N, H, W, C]
    if u8.shape[-1] == 1:
        u8 = np.repeat(u8, 3, axis=-1)
    return np.repeat(np.repeat(u8, scale, axis=1), scale, axis=2)


def _tile_grid(tiles: np.ndarray, ncol: int, nrows: int | None = None) -> np.ndarray:
    """Lay out tiles [N, h, w, 3] row by row in ncol columns with BORDER px between; empty slots are grey."""
    n, h, w, _ = tiles.shape
    nrows = nrows or math.ceil(n / ncol)
    out = np.full((nrows * (h + BORDER) + BORDER, ncol * (w + BORDER) + BORDER, 3), BORDER_VALUE, np.uint8)
    for k in range(min(n, nrows * ncol)):
        r, c = divmod(k, ncol)
        y, x = BORDER + r * (h + BORDER), BORDER + c * (w + BORDER)
        out[y:y + h, x:x + w] = tiles[k]
    return out


def _ncol(n: int, nrow: int | None) -> int:
    """Images per row: nrow if given (torchvision's convention), else a square-ish ceil(sqrt(N))."""
    if nrow is None:
        return math.ceil(math.sqrt(n))
    if int(nrow) < 1:
        raise DiffkitError(f"nrow (images per row) must be an integer >= 1, got {nrow}")
    return int(nrow)


def grid_array(images, nrow: int | None = None, scale: int | None = None) -> np.ndarray:
    """The grid of `images` as uint8 [H', W', 3]; nrow = images per row."""
    tiles = to_uint8_tiles(images, scale)
    return _tile_grid(tiles, _ncol(len(tiles), nrow))


def grid_image(images, nrow: int | None = None, scale: int | None = None):
    """The grid of `images` as a PIL RGB image (e.g. one GIF frame)."""
    return _pil().fromarray(grid_array(images, nrow, scale))


def _atomic_save(image, path, **kw) -> Path:
    """Save a PIL image through a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        image.save(tmp, **kw)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def image_grid(images, path, nrow: int | None = None, scale: int | None = None) -> Path:
    """Write a PNG grid of `images` [N, C, H, W] (square-ish unless nrow = images per row is given)."""
    return _atomic_save(grid_image(images, nrow, scale), path, format="PNG")


def _captioned(frame, caption: str, width: int, strip: int):
    """Put `frame` under a white caption strip on a canvas `width` px wide (grid centred)."""
    from PIL import ImageDraw

    Image = _pil()
    canvas = Image.new("RGB", (width, frame.height + strip), (255, 255, 255))
    canvas.paste(frame, ((width - frame.width) // 2, strip))
    ImageDraw.Draw(canvas).text((4, 2), caption, fill=(0, 0, 0))
    return canvas


def reverse_gif(frames: list, path, nrow: int | None = None, duration_ms: int = 80, hold_last: int = 12,
                captions: list[str] | None = None) -> Path:
    """Animated GIF of a grid evolving over the sampler steps.

    frames: one image batch [N, C, H, W] in [0, 1] per step, all of one shape; nrow: images per row;
    duration_ms: time per frame; hold_last: the last frame stays for (1 + hold_last) frame times;
    captions: one line per frame (e.g. "step 3/20, t = 612") drawn in a strip above the grid.
    """
    if not frames:
        raise DiffkitError("a GIF needs at least one frame")
    if captions is not None and len(captions) != len(frames):
        raise DiffkitError(f"got {len(captions)} captions for {len(frames)} frames; give one per frame or none")
    shapes = {np.shape(f) for f in frames}
    if len(shapes) != 1:
        raise DiffkitError(f"every GIF frame must have the same shape, got {sorted(shapes)}")
    Image = _pil()
    images = [grid_image(f, nrow) for f in frames]
    if captions is not None:
        from PIL import ImageDraw

        measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        width = max(images[0].width, max(int(measure.textlength(c)) for c in captions) + 8)
        images = [_captioned(im, c, width, strip=16) for im, c in zip(images, captions)]
    images = [im.convert("P", palette=Image.ADAPTIVE) for im in images]
    # holding the last frame is its duration: Pillow merges repeated identical frames anyway
    durations = [int(duration_ms)] * (len(images) - 1) + [int(duration_ms) * (1 + int(hold_last))]
    return _atomic_save(images[0], path, format="GIF", save_all=True, append_images=images[1:],
                        duration=durations, loop=0)


def _show(ax, tile: np.ndarray, title: str | None = None) -> None:
    """One image tile [h, w, 3] uint8 on a bare axis."""
    ax.imshow(tile, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=8)


def reverse_strip(frames: list, labels: list[str], path, title: str) -> Path:
    """Rows = the images of a batch, columns = chosen sampler steps (frames[k] [N, C, H, W]), labels above."""
    if not frames or len(labels) != len(frames):
        raise DiffkitError(f"got {len(labels)} labels for {len(frames)} frames; give one label per frame")
    tiles = [to_uint8_tiles(f, scale=1) for f in frames]  # each [N, H, W, 3]
    n, k = len(tiles[0]), len(tiles)
    fig, axes = plt().subplots(n, k, figsize=(1.2 * k, 1.2 * n + 0.5), squeeze=False)
    for j, (col, label) in enumerate(zip(tiles, labels)):
        for i in range(n):
            _show(axes[i, j], col[i], label if i == 0 else None)
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


def forward_cells(image, schedule, ts: list[int], eps: torch.Tensor) -> np.ndarray:
    """x_t of ONE image [C, H, W] in [0, 1] at every t in ts with the same eps -> [len(ts), C, H, W] in [0, 1].

    Pixels map [0, 1] -> [-1, 1] for the noising (Ho et al. 2020, eq. 4 via schedule.q_sample) and back,
    clipped, for display. t = -1 is x_0 itself (the schedule's convention).
    """
    x0 = torch.as_tensor(_as_images(np.asarray(image)[None], "image")[0], dtype=torch.float64) * 2 - 1
    t = torch.as_tensor(list(ts), dtype=torch.long)  # [K]
    x0k = x0.expand(len(t), *x0.shape)  # [K, C, H, W]
    x_t = schedule.q_sample(x0k, t, eps.to(torch.float64).expand_as(x0k))
    return ((x_t + 1) / 2).clamp(0, 1).numpy().astype(np.float32)


def _cell_title(schedule, t: int) -> str:
    if t < 0:
        return "x_0 (clean)"
    return f"t = {t}\nSNR {float(schedule.snr_db[t]):.1f} dB"


def forward_strip(image, schedules: dict, ts: list[int], path, seed: int = 0) -> Path:
    """The forward process of one image [C, H, W]: rows = schedules (by name), columns = t, one fixed eps."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise DiffkitError(f"forward_strip takes one image [C, H, W], got shape {image.shape}")
    for name, s in schedules.items():
        if not ts or min(ts) < -1 or max(ts) >= s.num_timesteps:
            raise DiffkitError(f"t must lie in -1..{s.num_timesteps - 1} for schedule {name!r}, got {list(ts)}")
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(image.shape, generator=g, dtype=torch.float64)  # [C, H, W], shared by every cell
    fig, axes = plt().subplots(len(schedules), len(ts), figsize=(1.3 * len(ts), 1.6 * len(schedules) + 0.3),
                               squeeze=False)
    for i, (name, s) in enumerate(schedules.items()):
        tiles = to_uint8_tiles(forward_cells(image, s, ts, eps), scale=1)
        for j, t in enumerate(ts):
            _show(axes[i, j], tiles[j], _cell_title(s, t))
        axes[i, 0].set_ylabel(name, fontsize=9)
    fig.suptitle(r"forward process $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$", fontsize=10)
    return save(fig, path)


def _row_name(i: int, class_names) -> str:
    return str(class_names[i]) if class_names is not None else str(i)


def guidance_sweep(panels: dict, path, class_names=None, title: str = "guidance") -> Path:
    """Columns = guidance scales w (sorted), rows = the N images of each panel (same noise in every column).

    panels[w]: images [N, C, H, W] sampled at scale w (eps_uncond + w (eps_cond - eps_uncond));
    class_names: one row label per image (e.g. the class each row was conditioned on).
    """
    if not panels:
        raise DiffkitError("a guidance sweep needs at least one guidance scale")
    scales = sorted(panels)
    tiles = {w: to_uint8_tiles(panels[w], scale=1) for w in scales}
    shapes = {t.shape for t in tiles.values()}
    if len(shapes) != 1:
        raise DiffkitError(f"every guidance scale needs images of one shape, got {sorted(shapes)}")
    n = len(tiles[scales[0]])
    if class_names is not None and len(class_names) < n:
        raise DiffkitError(f"got {len(class_names)} class names for {n} rows; give one per row")
    fig, axes = plt().subplots(n, len(scales), figsize=(1.2 * len(scales) + 0.6, 1.2 * n + 0.5), squeeze=False)
    for j, w in enumerate(scales):
        for i in range(n):
            _show(axes[i, j], tiles[w][i], f"w = {w:g}" if i == 0 else None)
    for i in range(n):
        axes[i, 0].set_ylabel(_row_name(i, class_names), fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


def class_grid(images, labels, path, class_names=None, per_class: int = 8) -> Path:
    """One row per class present in `labels` [N]: its first per_class images, labelled with the class name."""
    x = _as_images(images)
    labels = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    if len(labels) != len(x):
        raise DiffkitError(f"got {len(labels)} labels for {len(x)} images; give one label per image")
    if per_class < 1:
        raise DiffkitError(f"per_class must be >= 1, got {per_class}")
    classes = np.unique(labels)
    rows = [_tile_grid(to_uint8_tiles(x[labels == c][:per_class]), per_class, 1) for c in classes]
    h, w = rows[0].shape[:2]
    fig, axes = plt().subplots(len(rows), 1, figsize=(w / 80 + 0.8, len(rows) * h / 80 + 0.3), squeeze=False)
    for ax, c, row in zip(axes[:, 0], classes, rows):
        _show(ax, row)
        ax.set_ylabel(_row_name(int(c), class_names), fontsize=9, rotation=0, ha="right", va="center")
    return save(fig, path)
