"""Animated GIF of a point cloud changing over time (Pillow frames rendered with matplotlib)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..errors import DiffkitError
from .plots import limits, plt, scatter_on


def gif(frames: list[tuple[str, np.ndarray]], path, lims=None, duration_ms: int = 80, hold_last: int = 12) -> Path:
    """Write a GIF of scatter plots; `frames` is a list of (caption, points [N, 2])."""
    try:
        from PIL import Image
    except ImportError:
        raise DiffkitError("animations need Pillow; install it with `pip install 'diffkit[viz]'`") from None
    p = plt()
    lims = lims or limits(frames[-1][1])
    images = []
    fig, ax = p.subplots(figsize=(3.6, 3.6), dpi=80)
    for caption, x in frames:
        ax.clear()
        scatter_on(ax, x, lims, caption, color="C3", s=3)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        buf.seek(0)
        images.append(Image.open(buf).convert("P", palette=Image.ADAPTIVE))
    p.close(fig)
    images += [images[-1]] * hold_last
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return path
