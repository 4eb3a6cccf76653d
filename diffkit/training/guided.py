"""Guidance distillation, stage one (Meng et al. 2023, 'On Distillation of Guided Diffusion Models', sec. 4.1):
a student that reads the guidance scale w (inside its cond: cond.with_guidance) learns, in one network call, what
its teacher does guided at w in two: x0_w = x0_uncond + w (x0_cond - x0_uncond) (Ho & Salimans 2022, eq. 6;
mixing x0 equals mixing eps at one x_t). w is drawn uniformly from the range the student serves, the level
uniformly in time over the range the samplers start from; where the teacher's run guides only in an interval
(Kynkaanniemi et al. 2024), the target outside it is the plain conditional model, as the teacher samples.
The loss is the squared error of x0 weighted by max(SNR, 1), as in progressive distillation (distill.py), which
then takes this student to few steps, w still an input."""

from __future__ import annotations

import torch

from ..cond import with_guidance
from ..sampling import sampler_grid
from .loss import per_row

F64 = torch.float64


def draw_guidance(batch_size: int, guidance_range, generator: torch.Generator) -> torch.Tensor:
    """w ~ U[lo, hi] per row (float64 [B])."""
    lo, hi = guidance_range
    return lo + (hi - lo) * torch.rand(batch_size, generator=generator, dtype=F64)


class GuidanceStage:
    """The stage-one loss: teacher (the trained run's Denoiser, unguided) guided at each row's w, student one call."""

    def __init__(self, schedule, teacher, guidance_range):
        self.schedule, self.range = schedule, guidance_range
        self.top = float(sampler_grid(schedule, "ddim", 1)[0])  # the first level every sampler's grid starts at
        self.cond_model = teacher.replace(guidance_scale=1.0, guidance_interval=None, clip_x0=None)
        self.uncond_model = teacher.replace(guidance_scale=0.0, guidance_interval=None, clip_x0=None)
        self.interval = teacher.guidance_interval

    def draw(self, batch_size: int, shape, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        return (torch.rand(batch_size, generator=generator, dtype=F64),
                torch.randn((batch_size, *shape), generator=generator),
                draw_guidance(batch_size, self.range, generator))

    def loss(self, student, x0, draws, cond) -> torch.Tensor:
        """student: the student's Denoiser (its network reads w); per-row loss [B]."""
        u, eps, w = draws
        t = u.cpu() * self.top
        abar = self.schedule.alpha_bar_at(t)
        def col(v):
            return per_row(v, x0)
        x0, eps = x0.float(), eps.float()
        z = col(abar.sqrt()) * x0 + col((1 - abar).sqrt()) * eps
        w_eff = w.cpu()
        if self.interval is not None:  # guided only inside (lo, hi] of sigma_ve, the plain conditional outside
            sigma_ve = ((1 - abar) / abar).sqrt()
            w_eff = torch.where((sigma_ve > self.interval[0]) & (sigma_ve <= self.interval[1]), w_eff, 1.0)
        with torch.no_grad():
            _, x0_c = self.cond_model(z, t, cond)
            _, x0_u = self.uncond_model(z, t, cond)
            target = x0_u.float() + col(w_eff) * (x0_c.float() - x0_u.float())
        _, x0_hat = student(z, t, with_guidance(cond, w.to(x0.device)))
        weight = (abar / (1 - abar)).clamp(min=1.0).to(x0.device, torch.float32)
        return weight * (x0_hat.float() - target).square().flatten(1).mean(1)
