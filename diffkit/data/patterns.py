"""The `patterns` image set: procedural 16x16 grey patterns for the lab's playground, small enough that a model
learns them in about a minute on a laptop CPU.

Three classes, each drawn with its size and phase varied:
    checkerboard  squares of side 2, 3, 4 or 5 pixels, shifted by a random phase on each axis
    circle        a filled disc of radius 3-6.5 at a jittered centre, anti-aliased edge
    stripes       horizontal, vertical or diagonal bars of period 3-8 and random phase, half of each period lit
Pixels are in [0, 1]; a fixed seed makes the set the same everywhere.
"""

from __future__ import annotations

import numpy as np

PATTERN_NAMES = ("checkerboard", "circle", "stripes")
PATTERNS_COUNT, PATTERNS_SEED, PATTERNS_SIDE = 6000, 0, 16


def make_patterns(n: int = PATTERNS_COUNT, seed: int = PATTERNS_SEED, side: int = PATTERNS_SIDE,
                  kinds=None) -> tuple[np.ndarray, np.ndarray]:
    """n patterns, float32 [n, 1, side, side] in [0, 1], and their classes (int64 [n], PATTERN_NAMES' order);
    kinds: the class of each (default: cycled)."""
    rng = np.random.default_rng(seed)
    kinds = np.arange(n) % len(PATTERN_NAMES) if kinds is None else np.asarray(kinds, np.int64)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) + 0.5
    out = np.empty((n, 1, side, side), np.float32)
    for i, k in enumerate(kinds):
        out[i, 0] = (checkerboard, circle, stripes)[k](rng, xx, yy, side)
    return out, kinds.astype(np.int64)


def checkerboard(rng, xx, yy, side):
    cell = rng.integers(2, 6)
    px, py = rng.integers(0, cell, size=2)
    return (((xx + px) // cell + (yy + py) // cell) % 2).astype(np.float32)


def circle(rng, xx, yy, side):
    r = rng.uniform(3.0, 6.5)
    cx, cy = side / 2 + rng.uniform(-2.0, 2.0, size=2)
    d = np.hypot(xx - cx, yy - cy)
    return np.clip(r + 0.5 - d, 0.0, 1.0).astype(np.float32)  # one pixel of anti-aliased edge


def stripes(rng, xx, yy, side):
    period = rng.integers(3, 9)
    phase = rng.uniform(0, period)
    axis = rng.integers(0, 3)
    u = (yy, xx, (xx + yy) / np.sqrt(2.0))[axis]
    return (((u + phase) % period) < period / 2).astype(np.float32)
