"""How straight a model's probability-flow ODE trajectories are, on any path (Liu et al. 2023, eq. 5):

    S = E int_0^1 || (z_1 - z_0) - dz/ds ||^2 ds

along the trajectories a deterministic sampler draws from noise to data. Every path's state x = alpha x0 + sigma
eps is written in the coordinates of the linear path, z = x / (alpha + sigma) = (1 - tau) x0 + tau eps with
tau = sigma / (alpha + sigma), and time is tau normalised to [0, 1] over the trajectory; so a ddpm, an EDM and a
flow model each have an S, comparable with one another, and a trajectory that is a straight line in time has S = 0
(a 1-step Euler sampler is then exact). The integral is the sum over the sampler's steps, each at its constant
velocity (the chord): the S of the path the sampler actually took, which converges as the steps grow.
"""

from __future__ import annotations

import numpy as np
import torch

from .sampling import get_sampler
from .sampling.common import grid_levels


@torch.no_grad()
def linear_view(denoiser, x_T: torch.Tensor, grid, sampler: str = "ddim", cond=None,
                **options) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampler's trajectories from x_T [N, ...] (the samplers' VP view) over the grid, in the linear path's
    coordinates: (tau [K + 1], z [K + 1, N, ...]), float64 on the CPU; tau falls from the noise end to the data end."""
    states = [x_T]
    get_sampler(sampler)(denoiser, x_T, grid, callback=lambda step: states.append(step.x), cond=cond, **options)
    lv = grid_levels(denoiser.schedule, grid)
    if len(states) != len(lv):
        raise RuntimeError(f"the sampler reported {len(states) - 1} steps for a grid of {len(lv) - 1}")
    a = torch.tensor([v.alpha for v in lv], dtype=torch.float64)
    s = torch.tensor([v.sigma for v in lv], dtype=torch.float64)
    shape = (-1,) + (1,) * x_T.dim()
    return s / (a + s), torch.stack([x.double().cpu() for x in states]) / (a + s).reshape(shape)


def straightness_of(tau: torch.Tensor, z: torch.Tensor) -> np.ndarray:
    """S of each trajectory z [K + 1, N, ...] at times tau [K + 1] (linear_view's output); float64 [N]."""
    shape = (-1,) + (1,) * (z.dim() - 1)
    ds = (tau[:-1] - tau[1:]) / (tau[0] - tau[-1])                             # [K], sums to 1
    chord = z[0] - z[-1]                                                        # noise end minus data end
    velocity = (z[:-1] - z[1:]) / ds.reshape(shape)
    err = (chord.unsqueeze(0) - velocity).flatten(2).square().sum(2)            # [K, N]
    return (ds[:, None] * err).sum(0).numpy()


def straightness(denoiser, x_T: torch.Tensor, grid, sampler: str = "ddim", cond=None, **options) -> np.ndarray:
    """S of each trajectory from x_T [N, ...] (the samplers' VP view) over the grid; float64 [N]."""
    return straightness_of(*linear_view(denoiser, x_T, grid, sampler, cond, **options))
