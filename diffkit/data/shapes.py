"""Procedural shape images: one filled circle, square or triangle on black, with known attributes.

Every image shows one shape in one palette colour (a pure RGB primary or a pair of them) at one of two
sizes, centred uniformly where it fits entirely. Edges are hard: a pixel is exactly its palette colour or
exactly black, so colour purity and attribute recovery are measurable. A pixel belongs to the shape when
its centre (i + 0.5, j + 0.5) lies inside; x is the column axis, y the row axis, both in pixels.
"""

from __future__ import annotations

import numpy as np

from ..errors import choice_error

SHAPE_NAMES: tuple[str, ...] = ("circle", "square", "triangle")
COLOUR_NAMES: tuple[str, ...] = ("red", "green", "blue", "yellow", "magenta", "cyan")
SIZE_NAMES: tuple[str, ...] = ("small", "large")
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1),
    "yellow": (1, 1, 0), "magenta": (1, 0, 1), "cyan": (0, 1, 1),
}
SIZE_FRACTIONS: dict[str, float] = {"small": 10 / 32, "large": 18 / 32}  # extent across / image side

_RGB = np.array([PALETTE[c] for c in COLOUR_NAMES], dtype=np.float32)  # [6, 3]
_FRACTIONS = np.array([SIZE_FRACTIONS[s] for s in SIZE_NAMES])  # [2]


def size_pixels(size, image_size: int = 32) -> float:
    """The extent across (diameter, side, triangle base and height) of a size name or index, in pixels."""
    return float(_FRACTIONS[_index(size, SIZE_NAMES, "shape size")] * image_size)


def _index(value, names: tuple[str, ...], what: str) -> int:
    """The index of a name (or an index already), else the standard unknown-name error."""
    if isinstance(value, (int, np.integer)) and 0 <= value < len(names):
        return int(value)
    if value in names:
        return names.index(value)
    raise choice_error(what, value, names)


def _masks(shape: np.ndarray, extent: np.ndarray, x: np.ndarray, y: np.ndarray, image_size: int) -> np.ndarray:
    """bool [n, H, W]: which pixel centres lie inside each shape (shape ids, extents and centres [n])."""
    grid = np.arange(image_size, dtype=np.float32) + 0.5
    dx = grid[None, None, :] - x.astype(np.float32)[:, None, None]  # [n, 1, W]
    dy = grid[None, :, None] - y.astype(np.float32)[:, None, None]  # [n, H, 1]
    half = (extent.astype(np.float32) / 2)[:, None, None]
    mask = np.zeros((len(shape), image_size, image_size), dtype=bool)
    for k, name in enumerate(SHAPE_NAMES):
        i = np.flatnonzero(shape == k)
        if not len(i):
            continue
        ddx, ddy, h = dx[i], dy[i], half[i]
        if name == "circle":
            mask[i] = ddx**2 + ddy**2 <= h**2
        elif name == "square":
            mask[i] = (np.abs(ddx) <= h) & (np.abs(ddy) <= h)
        else:  # apex up at (x, y - h), base from (x - h, y + h) to (x + h, y + h): half-width (dy + h) / 2
            mask[i] = (ddy <= h) & (np.abs(ddx) <= (ddy + h) / 2)
    return mask


def _paint(mask: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """float32 [n, 3, H, W]: each mask filled with its palette colour on black."""
    return mask[:, None, :, :] * _RGB[colour][:, :, None, None]


def render_shape(shape, colour, size, x: float, y: float, image_size: int = 32) -> np.ndarray:
    """One image, float32 [3, H, W] in {0, 1}, from attribute names (or indices) and a centre in pixels."""
    s = _index(shape, SHAPE_NAMES, "shape")
    c = _index(colour, COLOUR_NAMES, "colour")
    extent = size_pixels(size, image_size)
    mask = _masks(np.array([s]), np.array([extent]), np.array([x]), np.array([y]), image_size)
    return _paint(mask, np.array([c]))[0]


def make_shapes(n: int, seed: int, image_size: int = 32) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """n shape images drawn from seed.

    Returns images float32 [n, 3, H, W] in {0, 1}, labels int64 [n] (the shape index), and attributes:
    "shape", "colour", "size" (int64 indices into SHAPE_NAMES, COLOUR_NAMES, SIZE_NAMES) and "x", "y"
    (float64 centres in pixels). Shape, colour and size are uniform; the centre is uniform over the
    positions where the whole shape lies inside the image.
    """
    rng = np.random.default_rng(seed)
    shape = rng.integers(len(SHAPE_NAMES), size=n)
    colour = rng.integers(len(COLOUR_NAMES), size=n)
    size = rng.integers(len(SIZE_NAMES), size=n)
    extent = _FRACTIONS[size] * image_size
    x = rng.uniform(extent / 2, image_size - extent / 2)
    y = rng.uniform(extent / 2, image_size - extent / 2)
    images = np.empty((n, 3, image_size, image_size), dtype=np.float32)
    for start in range(0, n, 2048):  # bounded temporaries
        sl = slice(start, start + 2048)
        images[sl] = _paint(_masks(shape[sl], extent[sl], x[sl], y[sl], image_size), colour[sl])
    attributes = {"shape": shape, "colour": colour, "size": size, "x": x, "y": y}
    return images, shape.astype(np.int64), attributes
