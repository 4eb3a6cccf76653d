"""Colour metrics of shape images (data/shapes.py: one shape in one palette colour on black).

Definitions, per sample [3, H, W] in [0, 1]:
- foreground: the pixels whose largest channel exceeds `foreground` (0.5), i.e. clearly above black;
- a foreground pixel matches palette colour c when every channel lies within `tol` (0.15) of c's
  (max-abs distance; palette colours are 1 apart, so a pixel matches at most one);
- dominant colour: the palette colour most foreground pixels match (ties to the lower index), or -1 when
  the foreground is empty or no pixel matches any colour;
- pure: the foreground is not empty and at least `share` (90%) of its pixels match the dominant colour.
Real shapes images are pure; noise, blends and two-coloured images are not.
"""

from __future__ import annotations

import numpy as np

from ..data.shapes import COLOUR_NAMES, PALETTE
from ..errors import DataError

_RGB = np.array([PALETTE[c] for c in COLOUR_NAMES], dtype=np.float32)  # [P, 3], index = attributes["colour"]


def _check(samples) -> np.ndarray:
    x = np.asarray(samples.detach().cpu() if hasattr(samples, "detach") else samples, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != 3:
        raise DataError(f"colour metrics need RGB images [N, 3, H, W]; got shape {list(x.shape)}")
    return x


def _colour_counts(samples, tol: float, foreground: float) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: foreground pixel count int [N] and matching pixel count per palette colour int [N, P]."""
    x = _check(samples)
    fg = x.max(1) > foreground  # [N, H, W]
    near = np.stack([(np.abs(x - rgb[None, :, None, None]).max(1) <= tol) & fg for rgb in _RGB], 1)  # [N, P, H, W]
    return fg.sum((1, 2)), near.sum((2, 3))


def dominant_colour(samples, tol: float = 0.15, foreground: float = 0.5) -> np.ndarray:
    """The palette index (into data.shapes.COLOUR_NAMES) of each sample's foreground, int64 [N]; -1 if none."""
    n_fg, counts = _colour_counts(samples, tol, foreground)
    return np.where((n_fg > 0) & (counts.max(1) > 0), counts.argmax(1), -1).astype(np.int64)


def colour_purity(samples, tol: float = 0.15, foreground: float = 0.5, share: float = 0.9) -> float:
    """Share of samples whose non-empty foreground is at least `share` one palette colour (module doc)."""
    n_fg, counts = _colour_counts(samples, tol, foreground)
    if not len(n_fg):
        raise DataError("colour_purity needs at least one sample; got none")
    return float(((n_fg > 0) & (counts.max(1) >= share * n_fg)).mean())
