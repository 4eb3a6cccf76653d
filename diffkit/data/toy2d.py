"""Built-in 2-D point clouds. Each maker is (n, rng: numpy Generator) -> float32 [n, 2]."""

from __future__ import annotations

import numpy as np


def _sk():
    from sklearn import datasets  # imported on use: it is slow to import

    return datasets


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def spiral(n, rng):
    """theta ~ U(0, 4 pi), r = theta / (2 pi), x = r (cos, sin) + N(0, 0.05^2)."""
    theta = rng.uniform(0, 4 * np.pi, n)
    r = theta / (2 * np.pi)
    x = np.stack([r * np.cos(theta), r * np.sin(theta)], 1)
    return x + rng.normal(0, 0.05, (n, 2))


def circle(n, rng):
    """Exactly on the unit circle, theta ~ U(0, 2 pi)."""
    theta = rng.uniform(0, 2 * np.pi, n)
    return np.stack([np.cos(theta), np.sin(theta)], 1)


def moons(n, rng):
    return _sk().make_moons(n, noise=0.05, random_state=_seed(rng))[0]


def circles(n, rng):
    """Two concentric rings (radius 1 and 0.5)."""
    return _sk().make_circles(n, noise=0.03, factor=0.5, random_state=_seed(rng))[0]


def swissroll(n, rng):
    x = _sk().make_swiss_roll(n, noise=0.3, random_state=_seed(rng))[0]
    return x[:, [0, 2]] / 10.0


def gaussians8(n, rng):
    """8 equal-weight Gaussians, means at radius 2 and angles k pi / 4, std 0.1."""
    k = rng.integers(0, 8, n)
    means = 2.0 * np.stack([np.cos(k * np.pi / 4), np.sin(k * np.pi / 4)], 1)
    return means + rng.normal(0, 0.1, (n, 2))


def checkerboard(n, rng):
    """Uniform on the 8 dark squares of a 4x4 board on [-2, 2]^2."""
    x1 = rng.uniform(-2, 2, n)
    x2 = rng.uniform(0, 1, n) + rng.integers(0, 2, n) * 2 - 2  # in [-2,-1) or [0,1)
    x2 = x2 + (np.floor(x1) % 2)  # shift odd columns up by one square
    return np.stack([x1, x2], 1)


MAKERS = {f.__name__: f for f in (spiral, circle, moons, circles, swissroll, gaussians8, checkerboard)}
