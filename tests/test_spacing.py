"""Spacing names that carry their lowest noise level ("logsnr:0.3"): the grid a distilled student of points records
(runs/distill.py: STUDENT_SPACING) and `diffkit sample --spacing` takes; the renoise grid of consistency sampling."""

from __future__ import annotations

import math

import pytest
import torch

from diffkit import DiffkitError, NoiseSchedule
from diffkit.sampling import SIGMA_MAX, make_grid, sample, sampler_grid


@pytest.mark.parametrize("name", ["logsnr", "karras"])
def test_a_continuous_spacing_may_name_its_lowest_level(name):
    sched = NoiseSchedule.from_name("linear", 1000)
    grid = sampler_grid(sched, "ddim", 4, f"{name}:0.3")
    assert torch.equal(grid, make_grid(sched, 4, name, sigma_min=0.3))
    ab = sched.alpha_bar_at(grid)
    sigma_ve = ((1 - ab) / ab).sqrt()
    assert math.isclose(float(grid[0]), 999) and math.isclose(float(sigma_ve[-1]), 0.3, rel_tol=1e-6)  # top to 0.3
    plain = sampler_grid(sched, "ddim", 4, name)
    assert plain[-1] < grid[-1]  # un-narrowed, the grid reaches down to t = 0
    assert torch.equal(sampler_grid(sched, "ddim", 4, f"{name}:0.3", sigma_min=0.5),
                       make_grid(sched, 4, name, sigma_min=0.5))  # an explicit sigma_min wins
    for bad in (f"{name}:x", f"{name}:0", f"{name}:nan", "trailing:0.3"):
        with pytest.raises(DiffkitError, match="NAME:SIGMA_MIN"):
            sampler_grid(sched, "ddim", 4, bad)


def _sigma_ve(sched, grid):
    ab = sched.alpha_bar_at(grid)
    return ((1 - ab) / ab).sqrt()


@pytest.mark.parametrize("sched_name", ["linear", "cosine"])
def test_the_renoise_grid_starts_at_the_top_and_renoises_between_0_7_and_0_1(sched_name):
    """Consistency sampling's default grid: one call from the top, then K - 1 levels log-SNR uniform from
    sigma = 0.7 down to 0.1 (grids.RENOISE_SIGMAS) up to 4 calls; with more, the levels keep 4 calls' log-SNR step
    (sigma x sqrt(7) per level) and the extra ones go above 0.7 (grids.RENOISE_SPAN)."""
    sched = NoiseSchedule.from_name(sched_name, 1000)
    assert torch.equal(sampler_grid(sched, "consistency", 4), make_grid(sched, 4, "renoise"))
    above = [0.1 * 7 ** (j / 2) for j in (6, 5, 4, 3)]  # 34.3, 13.0, 4.9, 1.85
    for k, expected in ((1, []), (2, [0.7]), (3, [0.7, 0.1]), (4, [0.7, (0.7 * 0.1) ** 0.5, 0.1]),
                        (6, [*above[2:], 0.7, 0.07 ** 0.5, 0.1]), (8, [*above, 0.7, 0.07 ** 0.5, 0.1])):
        grid = make_grid(sched, k, "renoise")
        s = _sigma_ve(sched, grid)
        assert len(grid) == k and math.isclose(float(grid[0]), float(make_grid(sched, 1, "trailing")[0]))
        assert float(s[0]) <= SIGMA_MAX * (1 + 1e-9) and float(s[0]) > 100  # the top, at the noise cap
        torch.testing.assert_close(s[1:], torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=0)
    for k in (9, 10, 16, 50):  # from 10 calls the step would pass the top: the levels spread below it instead
        grid = make_grid(sched, k, "renoise")
        s = _sigma_ve(sched, grid)
        assert len(grid) == k and (s[1:-1] > s[2:]).all() and math.isclose(float(s[-1]), 0.1, rel_tol=1e-6)
        assert float(s[1]) < float(s[0])


@pytest.mark.parametrize("sched_name", ["linear", "cosine"])
def test_the_renoise_low_grid_puts_the_calls_beyond_four_below_0_1(sched_name):
    """renoise-low (`--spacing renoise-low`, for consistency students): renoise's levels up to 4 calls; beyond, the
    extra levels are log-SNR uniform below 0.1 down to 0.015 (grids.RENOISE_LOW), and K calls stay K calls."""
    sched = NoiseSchedule.from_name(sched_name, 1000)
    for k in (1, 2, 3, 4):
        assert torch.equal(make_grid(sched, k, "renoise-low"), make_grid(sched, k, "renoise"))
    four = [0.7, 0.07 ** 0.5, 0.1]
    for k, extra in ((5, [0.015]), (6, [0.15 ** 0.5 / 10, 0.015]), (8, [0.1 * 0.15 ** (j / 4) for j in (1, 2, 3, 4)])):
        s = _sigma_ve(sched, make_grid(sched, k, "renoise-low"))
        assert len(s) == k and float(s[0]) > 100  # the first call at the top, as renoise's
        torch.testing.assert_close(s[1:], torch.tensor(four + extra, dtype=torch.float64), rtol=1e-6, atol=0)
    for k in (9, 16, 50):
        s = _sigma_ve(sched, make_grid(sched, k, "renoise-low"))
        assert len(s) == k and (s[1:-1] > s[2:]).all() and math.isclose(float(s[-1]), 0.015, rel_tol=1e-6)


def test_consistency_sampling_visits_the_renoise_levels():
    sched = NoiseSchedule.from_name("cosine", 1000)
    seen = []

    def den(x, t, cond):  # a denoiser that returns (eps_hat, x0_hat)
        return torch.zeros_like(x), torch.zeros_like(x)

    den.schedule = sched
    x = sample(den, torch.randn(3, 2), "consistency", 3, callback=lambda r: seen.append(r.t))
    assert torch.equal(torch.tensor(seen, dtype=torch.float64), make_grid(sched, 3, "renoise"))
    assert x.shape == (3, 2)
