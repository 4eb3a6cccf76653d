"""Consistency distillation (Song et al. 2023, Algorithm 2): a student f(x_t, t) that maps every point of the
teacher's ODE trajectory straight to its end, so one call samples and a few calls (re-noising in between,
Algorithm 1) refine.

The levels: N noise levels from the top of the path down to its smallest, Karras-spaced (rho = 7; the `euler`
sampler's own grid), the smallest, s_min (VE units sigma / alpha), the boundary; a training pair is two levels one
grid interval apart at a fractional index, so the levels between the grid points are trained too. The consistency function is the
run's denoiser taken one DDIM step to the boundary, f = x0_hat + s_min eps_hat (= c_skip y + c_out x0_hat with
y = x / alpha, c_skip = s_min / s, c_out = 1 - s_min / s: Song et al.'s boundary condition f(y, s_min) = y, sec. 3),
which at the start (the teacher's weights) is already the teacher's one-step jump. A step draws x0, eps and a level
pair (n, n + 1), takes the teacher's Heun step (Karras et al. 2022, Algorithm 1) from l_n down to l_(n+1), and pulls
f(x_n, l_n) towards the target network's f at the teacher's point, under the pseudo-Huber distance
sqrt(|a - b|^2 + c^2) - c, c = 0.00054 sqrt(d) (Song & Dhariwal 2023, sec. 3.3). The target network is an EMA of the
student at rate mu (Song et al. 2023; runs/distill.py measured 0.95 against mu = 0, the stop-gradient target that
Song & Dhariwal 2023 use for consistency training, sec. 3.2).
"""

from __future__ import annotations

import copy
import math

import torch

from ..cond import conditioning_for
from ..denoiser import Denoiser
from ..sampling import sampler_grid
from ..sampling.common import levels
from .loss import per_row

F64 = torch.float64
HUBER_C = 0.00054  # x sqrt(dimensions): Song & Dhariwal (2023), sec. 3.3


def consistency_levels(schedule, n: int) -> torch.Tensor:
    """The N float times of the distillation's levels, noisiest first; the last is the boundary."""
    return sampler_grid(schedule, "euler", n).to(F64)


def boundary_sigma(schedule, n: int) -> float:
    """s_min: the VE noise level of the smallest of the N levels, where f(y, s_min) = y."""
    return levels(schedule, [float(consistency_levels(schedule, n)[-1])])[0].sigma_ve


class ConsistencyObjective:
    """Song et al. (2023), Algorithm 2 (module doc). teacher: the teacher's Denoiser (guided where guidance is
    folded in). config: the student's RunConfig; its parent records N (levels), s_min and the target's EMA rate."""

    def __init__(self, config, schedule, teacher: Denoiser, *, levels_n: int, target_ema: float = 0.0):
        self.config, self.schedule, self.teacher, self.mu = config, schedule, teacher, target_ema
        self.t = consistency_levels(schedule, levels_n)
        self.boundary = boundary_sigma(schedule, levels_n)
        self.target = None  # the EMA target network (mu > 0), built from the student at the first step

    def time_at(self, u: torch.Tensor) -> torch.Tensor:
        """Float times at fractional level indices u in [0, N - 1] (linear in the index between the levels)."""
        lo = u.floor().long().clamp(max=len(self.t) - 2)
        return self.t[lo] + (u - lo) * (self.t[lo + 1] - self.t[lo])

    def denoiser(self, network) -> Denoiser:
        return Denoiser(network, self.schedule, self.config.prediction, conditioning=conditioning_for(self.config),
                        boundary=self.boundary)

    # the EMA target (mu > 0) -----------------------------------------------------------------------------
    def begin_step(self, step: int, network) -> None:
        if self.mu <= 0:
            return
        if self.target is None:  # the first step (the student's weights) or a resumed one (the checkpoint's)
            self.target = copy.deepcopy(network).requires_grad_(False)
            for p in self.target.parameters():
                p.grad = None
            if self.resumed:
                self.target.load_state_dict(self.resumed)
                self.resumed = None
        with torch.no_grad():  # theta- <- mu theta- + (1 - mu) theta, before every step (at the first: a no-op)
            for t, p in zip(self.target.parameters(), network.parameters()):
                t.lerp_(p, 1.0 - self.mu)

    resumed = None

    def state_tensors(self) -> dict:
        return {} if self.target is None else {f"target.{k}": v for k, v in self.target.state_dict().items()}

    def load_state_tensors(self, tensors: dict) -> None:
        state = {k[len("target."):]: v for k, v in tensors.items() if k.startswith("target.")}
        self.resumed = state or None

    # one step --------------------------------------------------------------------------------------------
    def draw(self, batch_size: int, shape, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """A fractional level index u ~ U[0, N - 2] per sample (the pair is u, u + 1: every level between the top
        and the boundary is trained, not only the N grid points, so any sampling grid finds a trained level) and
        eps."""
        return (len(self.t) - 2) * torch.rand(batch_size, generator=generator, dtype=F64), \
            torch.randn((batch_size, *shape), generator=generator)

    def loss(self, model, x0, draws, cond) -> torch.Tensor:
        u, eps = draws
        u = u.cpu()
        t, t_next = self.time_at(u), self.time_at(u + 1)
        ab, ab_next = self.schedule.alpha_bar_at(t), self.schedule.alpha_bar_at(t_next)

        def col(v):
            return per_row(v, x0)

        a, a_next = col(ab.sqrt()), col(ab_next.sqrt())
        s, s_next = col(((1 - ab) / ab).sqrt()), col(((1 - ab_next) / ab_next).sqrt())
        x0, eps = x0.float(), eps.float()
        x = a * x0 + col((1 - ab).sqrt()) * eps
        with torch.no_grad():  # the teacher's Heun step t -> t_next, in y = x / alpha (Karras et al., Alg. 1)
            e1, _ = self.teacher(x, t, cond)
            y = x / a
            e2, _ = self.teacher(a_next * (y + (s_next - s) * e1.float()), t_next, cond)
            x_next = a_next * (y + (s_next - s) * (e1.float() + e2.float()) / 2)
            _, target = self.denoiser(self.target if self.target is not None else model)(x_next, t_next, cond)
        _, f = self.denoiser(model)(x, t, cond)
        c = HUBER_C * math.sqrt(x0[0].numel())
        return torch.sqrt((f.float() - target.float()).square().flatten(1).sum(1) + c * c) - c
