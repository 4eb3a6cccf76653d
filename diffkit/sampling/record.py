"""What a sampler's callback receives after each step, and the per-step hook that may change x first."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepRecord:
    """Step i of a sampler: the grid time t it started from, the new x, and the Denoiser's x0_hat and eps_hat
    at (x_t, t). A callback returning True stops the sampler, which then returns this x."""

    i: int
    t: float
    x: torch.Tensor
    x0_hat: torch.Tensor
    eps_hat: torch.Tensor | None


def report(callback, i: int, t: float, x, x0_hat, eps_hat) -> bool:
    """Call the callback (if any) with a StepRecord; True when it asks the sampler to stop."""
    return bool(callback is not None and callback(StepRecord(i, float(t), x, x0_hat, eps_hat)))


def step_end(hook, callback, i: int, t: float, t_next: float, x, x0_hat, eps_hat):
    """The end of step i, from grid time t to t_next (-1: the data itself): (x, stop). The hook (if any) returns
    the x to go on from, hook(t_next, x) (inpainting re-imposes the known pixels at t_next's level there); the
    callback then sees that x and may stop the sampler."""
    if hook is not None:
        x = hook(t_next, x)
    return x, report(callback, i, t, x, x0_hat, eps_hat)
