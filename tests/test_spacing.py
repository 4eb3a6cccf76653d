"""Spacing names that carry their lowest noise level ("logsnr:0.3"): the grid a distilled student of points records
(runs/distill.py: STUDENT_SPACING) and `diffkit sample --spacing` takes."""

from __future__ import annotations

import math

import pytest
import torch

from diffkit import DiffkitError, NoiseSchedule
from diffkit.sampling import make_grid, sampler_grid


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
