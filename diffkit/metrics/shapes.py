"""Metrics of shape images (data/shapes.py: one shape in one palette colour on black): colour purity, and the
adherence checker (read_shapes: shape, colour, size and position read back from an image; adherence: the share
of samples showing what their prompts asked for).

Colour purity, per sample [3, H, W] in [0, 1]:
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

from ..data.shapes import COLOUR_NAMES, PALETTE, SIZE_FRACTIONS, SIZE_NAMES
from ..errors import DataError
from ..text.captions import position_cells

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


# --- reading a shapes image back: the adherence checker ----------------------------------------------------

ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "size", "position")


def read_shapes(samples, foreground: float = 0.5) -> dict[str, np.ndarray]:
    """The attributes of one-shape images [N, 3, H, W] in [0, 1], as int64 [N] indices (-1: no shape found):
    "shape" (into data.shapes.SHAPE_NAMES), "colour" (COLOUR_NAMES), "size" (SIZE_NAMES) and "position"
    (text.captions.POSITION_NAMES), plus "fill" (float [N]).

    The shape is the largest connected foreground region (largest channel > `foreground`); its bounding box
    gives the extent (small 10/32 of the side, large 18/32: split at the midpoint) and the centre, which for all
    three shapes is the point they were drawn around, hence the grid cell; the share of the box the region fills
    tells the shape (square 1, circle pi / 4, triangle 1 / 2: split at the midpoints); the region's mean colour,
    rounded to 0 / 1 per channel, names the colour.
    """
    from scipy import ndimage


    x = _check(samples)
    n, _, _H, W = x.shape
    out = {k: np.full(n, -1, np.int64) for k in ATTRIBUTES}
    out["fill"] = np.zeros(n)
    split = (SIZE_FRACTIONS[SIZE_NAMES[0]] + SIZE_FRACTIONS[SIZE_NAMES[1]]) / 2 * W
    for i in range(n):
        regions, count = ndimage.label(x[i].max(0) > foreground)
        if not count:
            continue
        region = regions == 1 + int(np.argmax(np.bincount(regions.ravel())[1:]))  # the largest region
        rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
        h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
        fill = region.sum() / (h * w)
        out["fill"][i] = fill
        out["shape"][i] = 1 if fill > (1 + np.pi / 4) / 2 else 0 if fill > (0.5 + np.pi / 4) / 2 else 2
        out["size"][i] = int(max(h, w) > split)
        mean = np.round(x[i][:, region].mean(1)).astype(int)
        out["colour"][i] = next((k for k, rgb in enumerate(_RGB) if (rgb == mean).all()), -1)
        centre_x, centre_y = (cols[0] + cols[-1] + 1) / 2, (rows[0] + rows[-1] + 1) / 2
        out["position"][i] = position_cells([centre_x], [centre_y], [out["size"][i]], W, margin=0)[0]
    return out


def adherence(samples, wanted: dict) -> dict[str, float]:
    """Per-attribute accuracy of samples against what each was asked for (wanted: attribute -> int [N], -1 where
    the prompt did not say), and "all": the share with every asked-for attribute right."""
    found = read_shapes(samples)
    n = len(found["shape"])
    right = np.ones(n, bool)
    out = {}
    for name in ATTRIBUTES:
        w = np.asarray(wanted.get(name, np.full(n, -1)))
        asked = w >= 0
        ok = found[name] == w
        if asked.any():
            out[name] = float(ok[asked].mean())
        right &= ok | ~asked
    out["all"] = float(right.mean()) if n else float("nan")
    return out
