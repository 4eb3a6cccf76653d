"""Point-cloud metrics: energy distance, MMD, sliced Wasserstein, radius stats, evaluate_points."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from diffkit.errors import DiffkitError
from diffkit.metrics import (
    energy_distance,
    evaluate_points,
    mmd_rbf,
    projected_energy_distance,
    radius_stats,
    sliced_wasserstein,
)
from diffkit.runs import eval_samples

METRICS = {"energy": energy_distance, "mmd": mmd_rbf, "swd": sliced_wasserstein}


def gauss(n, mu=(0.0, 0.0), seed=0):
    return np.random.default_rng(seed).normal(size=(n, 2)) + np.asarray(mu)


def test_energy_distance_of_identical_samples_is_tiny():
    x = gauss(2000)
    d = energy_distance(x, x)
    # exactly -2 E|X - X'| / n with the unbiased within-sample terms
    assert abs(d) < 5 * 2 * 1.8 / 2000
    # two independent draws of the same law: O(1/n), far below a 0.25 shift
    same = energy_distance(gauss(2000, seed=1), gauss(2000, seed=2))
    shifted = energy_distance(gauss(2000, seed=1), gauss(2000, mu=(0.25, 0.0), seed=2))
    assert abs(same) < 0.01 < shifted


def test_energy_distance_point_masses():
    a, b = np.array([1.0, 2.0]), np.array([4.0, -2.0])  # |a - b| = 5
    x, y = np.tile(a, (30, 1)), np.tile(b, (40, 1))
    assert energy_distance(x, y) == pytest.approx(2 * 5.0, rel=1e-12)


def test_energy_distance_closed_form_for_gaussians():
    """For N(0, I) vs N(mu, I) in 1-D, D^2 = 2 E|X - Y| - 2 E|X - X'| with X - Y ~ N(mu, 2), X - X' ~ N(0, 2)."""
    rng = np.random.default_rng(5)
    mu, n = 1.0, 3000
    x, y = rng.normal(size=(n, 1)), rng.normal(size=(n, 1)) + mu
    s = math.sqrt(2)
    e_abs = s * math.sqrt(2 / math.pi) * math.exp(-mu**2 / (2 * s**2)) + mu * math.erf(mu / (s * math.sqrt(2)))
    expected = 2 * e_abs - 2 * s * math.sqrt(2 / math.pi)
    assert energy_distance(x, y) == pytest.approx(expected, abs=0.03)


@pytest.mark.parametrize("shift", [0.0, 0.1, 1.0])
def test_projected_energy_distance_matches_pairwise_in_2d(shift):
    x, y = gauss(1500, seed=3), gauss(1200, mu=(shift, -shift / 2), seed=4) * np.array([1.0, 1.3])
    assert projected_energy_distance(x, y) == pytest.approx(energy_distance(x, y), abs=1e-6)


def test_projected_energy_distance_1d_is_exact_and_3d_close():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(700, 1)), rng.normal(size=(500, 1)) * 1.5 + 0.2
    assert projected_energy_distance(x, y) == pytest.approx(energy_distance(x, y), rel=1e-10)
    # random directions in 3-D: a Monte Carlo mean over u, unbiased but not exact
    x3, y3 = rng.normal(size=(800, 3)), rng.normal(size=(800, 3)) + np.array([0.5, 0.0, 0.0])
    exact = energy_distance(x3, y3)
    assert projected_energy_distance(x3, y3, n_projections=2048) == pytest.approx(exact, rel=0.05)


def test_projected_energy_distance_rejects_mismatched_dimensions():
    with pytest.raises(DiffkitError, match="same dimension"):
        projected_energy_distance(gauss(10), np.zeros((10, 3)))


@pytest.mark.parametrize("name", list(METRICS))
def test_larger_shift_larger_distance(name):
    fn = METRICS[name]
    ref = gauss(1500, seed=10)
    values = [fn(gauss(1500, mu=(s, 0.0), seed=11), ref) for s in (0.0, 0.3, 1.0, 3.0)]
    assert all(a < b for a, b in itertools.pairwise(values)), values
    assert abs(values[0]) < values[1] / 3


def test_mmd_same_law_near_zero_and_symmetric_ish():
    x, y = gauss(1500, seed=1), gauss(1500, seed=2)
    same = mmd_rbf(x, y)
    assert abs(same) < 5e-3
    assert abs(mmd_rbf(y, x)) < 5e-3
    z = gauss(1500, mu=(1.0, 0.0), seed=3)
    a, b = mmd_rbf(x, z), mmd_rbf(z, x)  # bandwidth comes from the second argument
    assert a > 0.05 and b > 0.05
    assert a == pytest.approx(b, rel=0.3)
    # with a fixed bandwidth it is exactly symmetric
    assert mmd_rbf(x, z, bandwidth=1.0) == pytest.approx(mmd_rbf(z, x, bandwidth=1.0), rel=1e-10)


def test_mmd_single_kernel_closed_form():
    """Point masses: MMD^2 = k(a,a) + k(b,b) - 2 k(a,b) per kernel; the unbiased within terms are sums of k(0)."""
    a, b = np.zeros(2), np.array([1.0, 0.0])
    x, y = np.tile(a, (5, 1)), np.tile(b, (6, 1))
    got = mmd_rbf(x, y, scales=(1.0,), bandwidth=1.0)
    assert got == pytest.approx(2 - 2 * math.exp(-0.5), rel=1e-12)


@pytest.mark.parametrize("m", [2, 3, 4, 5, 40, 301])
def test_mmd_matches_the_plain_formula_and_remembers_its_reference(m):
    """The lean MMD (squared distances once, the reference's terms kept) equals the textbook computation: the
    median of the upper triangle's distances, a fresh kernel matrix per bandwidth; a second call against the same
    reference (served from the cache) gives the same number, another reference its own."""
    import torch

    x, y = gauss(57, seed=m), gauss(m, mu=(0.3, 0.0), seed=100 + m)
    tx, ty = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    dyy, dxx, dxy = torch.cdist(ty, ty), torch.cdist(tx, tx), torch.cdist(tx, ty)
    h = float(dyy[torch.triu_indices(m, m, 1).unbind()].median())
    scales = (0.1, 0.2, 0.5, 1.0, 2.0)

    def k(d):
        return sum(torch.exp(-(d**2) / (2 * (s * h) ** 2)) for s in scales)

    plain = float((k(dxx).sum() - 57 * 5) / (57 * 56) + (k(dyy).sum() - m * 5) / (m * (m - 1)) - 2 * k(dxy).mean())
    assert mmd_rbf(x, y) == pytest.approx(plain, rel=1e-9, abs=1e-15)
    assert mmd_rbf(x, y) == mmd_rbf(x, y.copy())  # the cache, keyed by the reference's values
    assert mmd_rbf(x, y + 1.0) != mmd_rbf(x, y)


@pytest.mark.parametrize("n, m", [(2, 2), (300, 300), (300, 211)])
def test_sliced_wasserstein_equals_scipys_per_direction(n, m):
    """Equal sizes take the sorted-gap form over every direction at once; it is scipy's W1, direction by direction."""
    from scipy.stats import wasserstein_distance

    x, y = gauss(n, seed=n), gauss(m, mu=(0.4, -0.2), seed=m + 1)
    dirs = np.random.default_rng(5).normal(size=(16, 2))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    scipy_w1 = np.mean([wasserstein_distance(x @ u, y @ u) for u in dirs])
    assert sliced_wasserstein(x, y, n_projections=16, seed=5) == pytest.approx(scipy_w1, rel=1e-12)


def test_sliced_wasserstein_shifted_gaussians():
    """W1 of the projections of N(0, I) and N(mu, I) on u is |mu . u|; the mean over directions is |mu| 2 / pi."""
    mu = np.array([1.2, -0.9])  # |mu| = 1.5
    x, y = gauss(4000, seed=20), gauss(4000, mu=mu, seed=21)
    got = sliced_wasserstein(x, y, n_projections=1024, seed=0)
    assert got == pytest.approx(1.5 * 2 / math.pi, rel=0.04)
    # the same seed gives the same directions
    assert sliced_wasserstein(x, y, seed=3) == sliced_wasserstein(x, y, seed=3)
    # a pure translation in 1 projection: exactly |shift|
    one = sliced_wasserstein(x, x + mu, n_projections=1, seed=7)
    u = np.random.default_rng(7).normal(size=(1, 2))
    u /= np.linalg.norm(u)
    assert one == pytest.approx(abs(float((u @ mu)[0])), rel=1e-9)


def test_radius_stats():
    out = radius_stats(np.array([[3.0, 4.0], [0.0, 1.0]]))
    assert out == pytest.approx({"radius_mean": 3.0, "radius_std": 2.0})
    theta = np.linspace(0, 2 * np.pi, 100)
    ring = 2.5 * np.stack([np.cos(theta), np.sin(theta)], 1)
    out = radius_stats(ring)
    assert out["radius_mean"] == pytest.approx(2.5) and out["radius_std"] == pytest.approx(0.0, abs=1e-12)


def test_evaluate_points_reports_floors():
    ref, floor_ref = gauss(800, seed=1), gauss(800, seed=2)
    bad = gauss(800, mu=(1.0, 1.0), seed=3)
    out = evaluate_points(bad, ref, floor_ref)
    assert set(out) == {"energy", "energy_floor", "mmd", "mmd_floor", "swd", "swd_floor", "n_samples", "n_reference",
                        "energy_floor_std", "mmd_floor_std", "swd_floor_std", "floor_draws"}
    for name, fn in METRICS.items():
        assert out[name] == pytest.approx(fn(bad, ref), rel=1e-12)
        assert out[f"{name}_floor"] == pytest.approx(fn(floor_ref, ref), rel=1e-12)
        assert out[name] > 5 * abs(out[f"{name}_floor"])  # a shifted model is far above the floor
    assert out["n_samples"] == 800 and out["n_reference"] == 800
    # several floor draws: their mean and sample spread
    floors = [gauss(800, seed=s) for s in (2, 4, 5)]
    many = evaluate_points(bad, ref, floors)
    for name, fn in METRICS.items():
        values = [fn(f, ref) for f in floors]
        assert many[f"{name}_floor"] == pytest.approx(np.mean(values), rel=1e-12)
        assert many[f"{name}_floor_std"] == pytest.approx(np.std(values, ddof=1), rel=1e-9) and many[f"{name}_floor_std"] > 0
    assert many["floor_draws"] == 3
    circ = evaluate_points(bad, ref, floor_ref, circle=True)
    assert circ["radius_mean"] == pytest.approx(radius_stats(bad)["radius_mean"])


def test_eval_samples_on_builtin_data():
    from diffkit.data import make_dataset

    good = make_dataset("circle", 1000, seed=123)
    out = eval_samples(good, "circle", n_reference=1000, seed=0)
    assert out["n_reference"] == 1000 and "radius_mean" in out
    assert out["radius_mean"] == pytest.approx(1.0, abs=1e-6)
    # perfect samples score like the floor; a shrunken circle does not
    assert out["energy"] < 0.01 and out["energy_floor"] < 0.01
    assert out["floor_draws"] == 5 and 0 < out["energy_floor_std"] < out["energy_floor"] * 3
    worse = eval_samples(good * 0.8, "circle", n_reference=1000, seed=0)
    assert worse["energy"] > 5 * max(out["energy"], 1e-4)
    assert worse["swd"] > 0.05 > out["swd"]


def test_a_data_files_floor_uses_disjoint_points(tmp_path):
    """The reference and the floor draws never share a point of the file, so the floor is not 0."""
    x = gauss(1200, seed=7)  # smaller than --n-ref: two draws of "4000" points used to be the same 1200 (floor 0)
    path = tmp_path / "pts.npy"
    np.save(path, x)
    out = eval_samples(x[:1000], str(path), n_reference=4000, seed=0)
    assert out["n_reference"] == 400  # a third of the file; the floor draws come from the other two thirds
    assert all(abs(out[f"{m}_floor"]) > 1e-6 and out[f"{m}_floor_std"] > 0 for m in ("energy", "mmd", "swd"))
    tiny = tmp_path / "tiny.npy"
    np.save(tiny, x[:5])
    with pytest.raises(DiffkitError, match="holds 5 points"):
        eval_samples(x[:10], str(tiny))


def test_large_clouds_switch_to_the_projected_energy(monkeypatch):
    from diffkit.metrics import points
    from diffkit.metrics.points import projected_energy_distance

    monkeypatch.setattr(points, "EXACT_MAX", 1000)  # the switch at a smaller size (5,000 by default: 29 s here)
    a, b = gauss(points.EXACT_MAX + 500, seed=1), gauss(points.EXACT_MAX + 500, mu=(0.3, 0.0), seed=2)
    out = evaluate_points(a, b, [gauss(points.EXACT_MAX + 500, seed=3)])
    assert out["energy"] == pytest.approx(projected_energy_distance(a, b), rel=1e-12)
    assert out["energy"] == pytest.approx(energy_distance(a, b), rel=1e-4)  # and it is the same number
