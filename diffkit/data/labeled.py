"""Labeled 2-D point clouds: each maker is (n, rng) -> (float [n, 2] points, int64 [n] labels)."""

from __future__ import annotations

import numpy as np

from .toy2d import moons, spiral

# shapes3's classes and their share of the points (unequal, so a sampler's class mix is a real test)
SHAPES3_CLASSES = ("spiral", "circles", "moons")
SHAPES3_WEIGHTS = (0.4, 0.35, 0.25)


def _rings(k, rng):
    """Half the points on each of two rings (radius 0.8 and 0.4), noise as thick as the spiral's (0.05)."""
    theta = rng.uniform(0, 2 * np.pi, k)
    radius = np.where(np.arange(k) % 2 == 0, 0.8, 0.4)
    ring = radius[:, None] * np.stack([np.cos(theta), np.sin(theta)], 1)
    return ring + rng.normal(0, 0.05, (k, 2)) + [1.2, 1.0]


def _moons(k, rng):
    m = moons(k, rng) - [0.5, 0.25]  # centered
    return np.stack([m[:, 1], -m[:, 0]], 1) + [-1.0, -0.8]  # turned a quarter clockwise


def shapes3(n, rng):
    """Three shapes that cross each other: 0 = spiral (radius up to 2, at the origin), 1 = two rings
    (radius 0.8 and 0.4, centered at (1.2, 1.0), over the spiral's arms), 2 = two moons turned upright
    (centered at (-1, -0.8), across the spiral's arms). About 5% of the points lie where another class
    is as likely, so position alone cannot tell every class and guidance has work to do."""
    y = rng.choice(len(SHAPES3_CLASSES), size=n, p=SHAPES3_WEIGHTS)
    x = np.empty((n, 2))
    for c, make in enumerate((spiral, _rings, _moons)):
        k = int((y == c).sum())
        if k:
            x[y == c] = make(k, rng)
    return x, y.astype(np.int64)


LABELED_MAKERS = {"shapes3": shapes3}
CLASS_NAMES = {"shapes3": SHAPES3_CLASSES}
