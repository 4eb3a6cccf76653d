"""Progressive distillation (Salimans & Ho 2022, Algorithm 2): one DDIM step of the student learns two steps of
its teacher, and each round's student is the next round's teacher, halving the steps until K.

Every path is seen as the samplers see it (the VP view: x = alpha x0 + sigma eps with alpha^2 + sigma^2 = 1, the
Denoiser scaling to and from a flow's or EDM's own coordinates), so one objective serves ddpm, EDM and flow
teachers. The levels form a ladder: the K-step student's grid is exactly the grid `diffkit sample` runs ddim on
at K steps (its final step to x_0 included), and each earlier round's grid splits every interval of the next one
at its midpoint in time, so a round's teacher steps between the levels it was trained on.

A training step draws a clean x0, an interval i of the round's student grid and eps, noises x0 to the interval's
start t, takes the teacher's two steps t -> t' -> t'' and asks the student's one DDIM step to land where they do:
its target x0 is x~ = (z_t'' - (sigma_t'' / sigma_t) z_t) / (alpha_t'' - (sigma_t'' / sigma_t) alpha_t) (Algorithm
2), weighted by max(SNR_t, 1), the truncated-SNR weight of sec. 4. The first round's teacher may fold classifier-
free guidance in (its denoiser guided; Meng et al. 2023 with one fixed w) and, being the trained run and not a
student, crosses each interval in 2 x `first_substeps` DPM-Solver++(2M) steps (Lu et al. 2022, Algorithm 2; its
first step DDIM), uniform in time or in log-SNR; later rounds' teachers are students, whose two DDIM steps are
what they learned.

With a guidance range (Meng et al. 2023) a first stage (round -1, guided.py) teaches the student to read w and do
in one call what the teacher does guided at w in two; the rounds then halve as above with the stage's student as
the first teacher (a many-step model, so its round keeps the DPM-Solver++(2M) sub-steps), each row's w drawn from
the range and given to teacher and student alike.
"""

from __future__ import annotations

import copy
import math

import torch

from ..cond import conditioning_for, with_guidance
from ..denoiser import Denoiser
from ..errors import ConfigError
from ..nn.registry import for_sampling
from ..sampling import sampler_grid
from ..sampling.common import levels
from ..sampling.dpm_solver import dpmpp_weights
from .guided import GuidanceStage, draw_guidance
from .loss import per_row

F64 = torch.float64


def ladder(schedule, steps: int, rounds: int, spacing: str | None = None) -> list[torch.Tensor]:
    """The grids of every round, float64 times ending in -1 (x_0): [grid of steps * 2^rounds, ..., grid of steps].
    The last is ddim's own grid at `steps` and `spacing` (`diffkit sample --sampler ddim --steps K --spacing S`;
    None: ddim's default, trailing); each finer one puts the midpoint in time into every interval of the next."""
    grid = torch.cat([sampler_grid(schedule, "ddim", steps, spacing).to(F64), torch.tensor([-1.0], dtype=F64)])
    grids = [grid]
    for _ in range(rounds):
        mid = (grid[:-1] + grid[1:]) / 2
        grid = torch.stack([grid[:-1], mid], 1).reshape(-1)
        grid = torch.cat([grid, torch.tensor([-1.0], dtype=F64)])
        grids.append(grid)
    return grids[::-1]


SPACINGS = ("time", "log-snr")


def _split(schedule, a_t: float, c_t: float, m: int, spacing: str = "time") -> list[float]:
    """m + 1 times from a_t down to c_t: uniform in time, or (spacing "log-snr", for a many-step teacher) uniform in
    log-SNR as DPM-Solver's own grid (Lu et al. 2022, sec. 3.3), the last interval into x_0 (c_t = -1) ending in one
    step from t = 0, and uniform in time where a log-SNR is infinite (a flow's pure-noise end). Measured on 4-step
    students against uniform time (benchmarks/distill.py, 8 seeds of 50,000 points): gaussians8's excess over its
    teacher's reference 1.54x -> 1.34x, spiral's 1.22x -> 1.13x."""
    if spacing not in SPACINGS:
        raise ConfigError(f"the teacher's sub-steps are spaced by {' or '.join(SPACINGS)}, got {spacing!r}")
    end, n = max(c_t, 0.0), m if c_t >= 0 else m - 1
    a, c = levels(schedule, [a_t, end])
    finite = all(v > 0 for v in (a.alpha, a.sigma, c.alpha, c.sigma))  # else a log-SNR is infinite
    if spacing == "time" or n < 1 or not finite or end >= a_t:
        return [a_t + j / m * (c_t - a_t) for j in range(m + 1)]
    lam = (2 * math.log(a.alpha / a.sigma), 2 * math.log(c.alpha / c.sigma))
    ts = schedule.t_at_log_snr(torch.linspace(*lam, n + 1, dtype=F64)).tolist()
    ts[0], ts[-1] = a_t, end
    return ts + ([c_t] if c_t < 0 else [])


def _plan(schedule, coarse: torch.Tensor, substeps: int, second_order: bool, spacing: str = "time") -> dict:
    """Per student interval i (coarse levels i -> i + 1, split into 2 x substeps teacher steps by _split, at
    `spacing` where second_order, else uniformly in time):
    the teacher's step times "t" [n, m] and weights "w_x", "w_prev", "w_now" [n, m] of z' = w_x z + w_prev
    x0_(j-1) + w_now x0_j (dpm_solver.py: DDIM, then DPM-Solver++(2M) where second_order; first order into x_0),
    and the student's "alpha", "sigma", "ratio", "denom", "weight" [n] (module doc)."""
    m = 2 * substeps
    times, wx, wp, wn, student = [], [], [], [], []
    for a_t, c_t in zip(coarse[:-1].tolist(), coarse[1:].tolist()):
        # a student teacher steps where it learned to (the midpoint, uniform in time); the trained run anywhere
        sub = levels(schedule, _split(schedule, a_t, c_t, m, spacing if second_order else "time"))
        rows = []
        for j in range(m):
            w = dpmpp_weights(sub[max(0, j - 1):j + 1], sub[j + 1], 2 if second_order and j > 0 else 1)
            rows.append((w[0], *(w[1:] if len(w) == 3 else (0.0, w[1]))))
        times.append([v.t for v in sub[:-1]])
        wx.append([r[0] for r in rows])
        wp.append([r[1] for r in rows])
        wn.append([r[2] for r in rows])
        a, c = sub[0], sub[-1]
        ratio = c.sigma / a.sigma  # the student's DDIM a -> c is z'' = ratio z + (alpha'' - ratio alpha) x0
        student.append([a.alpha, a.sigma, ratio, c.alpha - ratio * a.alpha, max((a.alpha / a.sigma) ** 2, 1.0)])
    plan = {k: torch.tensor(v, dtype=F64) for k, v in (("t", times), ("w_x", wx), ("w_prev", wp), ("w_now", wn))}
    plan.update(zip(("alpha", "sigma", "ratio", "denom", "weight"), torch.tensor(student, dtype=F64).unbind(1)))
    return plan


def _frozen_copy(network: torch.nn.Module) -> torch.nn.Module:
    out = copy.deepcopy(network).requires_grad_(False).eval()
    for p in out.parameters():
        p.grad = None
    return out


class ProgressiveObjective:
    """Salimans & Ho (2022), Algorithm 2, over `rounds` halvings of `steps_per_round` steps each (module doc).

    teacher: the first round's teacher Denoiser (guided where guidance is folded in); its schedule is the run's
    path. config: the student's RunConfig (its prediction, conditioning and x0 clip build each student's Denoiser;
    the K-step student's grid is ddim's at its sampling spacing).
    first_substeps: the first round's teacher takes 2 x this many DPM-Solver++(2M) steps per student interval
    (later rounds: two DDIM steps, the ones their teacher learned); first_spacing: uniform in "time" or "log-snr".
    guidance_range: (lo, hi): first a guidance stage of `guidance_steps` steps (round -1; module doc), and w an
    input of every round's teacher and student; None: no stage, w not an input.
    """

    def __init__(self, config, schedule, teacher: Denoiser, *, steps: int, rounds: int, steps_per_round: int,
                 first_substeps: int = 1, first_spacing: str = "time", guidance_range=None,
                 guidance_steps: int = 0):
        if steps_per_round < 1 or (guidance_range is not None and guidance_steps < 1):
            raise ConfigError(f"{rounds} halving rounds need at least {rounds} training steps"
                              + (" (and one more for the guidance stage)" if guidance_range is not None else ""))
        self.range, self.guidance_steps = guidance_range, guidance_steps if guidance_range is not None else 0
        self.guided = GuidanceStage(schedule, teacher, guidance_range) if guidance_range is not None else None
        self.config, self.schedule = config, schedule
        self.rounds, self.steps_per_round = rounds, steps_per_round
        self.grids = ladder(schedule, steps, rounds, config.sampling.spacing)  # round r's student grid is grids[r + 1]
        self.tables = [_plan(schedule, g, first_substeps if r == 0 else 1, second_order=(r == 0),
                             spacing=first_spacing)
                       for r, g in enumerate(self.grids[1:])]
        self.first_teacher, self.teacher, self.round = teacher, teacher, self.round_of(0)
        self.frozen = None  # the current round's teacher network (rounds > 0): the last round's student
        self.resumed = None  # (round, teacher state) from a checkpoint, until the next begin_step

    def student(self, network) -> Denoiser:
        return Denoiser(network, self.schedule, self.config.prediction, conditioning=conditioning_for(self.config),
                        clip_x0=None)

    def round_of(self, step: int) -> int:
        """-1 in the guidance stage, then the halving round 0 .. rounds - 1."""
        if step < self.guidance_steps:
            return -1
        return min((step - self.guidance_steps) // self.steps_per_round, self.rounds - 1)

    def _frozen_round(self, r: int) -> bool:
        """Whether round r's teacher is the student as the round began (else: the trained run)."""
        return r > 0 or (r == 0 and self.guided is not None)

    # rounds: each begins with the last round's student as its teacher ---------------------------------------
    def begin_step(self, step: int, network) -> None:
        r = self.round_of(step)
        resumed, self.resumed = self.resumed, None
        if resumed is not None:
            held_round, state = resumed
            if state is not None and held_round == r:  # this round's frozen teacher, from the checkpoint
                self.round = r
                self._freeze(_frozen_copy(network), state)
                return
            self.round = None  # the checkpoint held no teacher of this round: set it up below
        if r != self.round:
            self.round = r
            if self._frozen_round(r):
                self._freeze(_frozen_copy(network))
            else:
                self.frozen, self.teacher = None, self.first_teacher

    def _freeze(self, network, state: dict | None = None) -> None:
        if state is not None:
            network.load_state_dict(state)
        self.frozen = network  # its state is checkpointed; the teacher calls its sampling fast path, as round 0 does
        self.teacher = Denoiser(for_sampling(network)[0], self.schedule, self.config.prediction,
                                conditioning=conditioning_for(self.config), clip_x0=self.config.x0_clip())

    def state_tensors(self) -> dict:
        if self.frozen is None:
            return {}
        return {"round": torch.tensor(self.round), **{f"teacher.{k}": v for k, v in self.frozen.state_dict().items()}}

    def load_state_tensors(self, tensors: dict) -> None:
        """A checkpoint's frozen teacher, applied at the next begin_step (which has the network to copy)."""
        if "round" in tensors:
            state = {k[len("teacher."):]: v for k, v in tensors.items() if k.startswith("teacher.")}
            self.resumed = (int(tensors["round"]), state)
        else:
            self.resumed = (0, None)

    # one step ----------------------------------------------------------------------------------------------
    def draw(self, batch_size: int, shape, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        if self.round == -1:
            return self.guided.draw(batch_size, shape, generator)
        n = len(self.tables[self.round]["alpha"])
        draws = (torch.randint(0, n, (batch_size,), generator=generator),
                 torch.randn((batch_size, *shape), generator=generator))
        return draws if self.range is None else (*draws, draw_guidance(batch_size, self.range, generator))

    def loss(self, model, x0, draws, cond) -> torch.Tensor:
        if self.round == -1:
            return self.guided.loss(self.student(model), x0, draws, cond)
        i, eps = draws[:2]
        if self.range is not None:  # every row's w, read by this round's teacher and student alike
            cond = with_guidance(cond, draws[2].to(x0.device))
        i, plan = i.cpu(), self.tables[self.round]

        def col(v):
            return per_row(v, x0)

        x0, eps = x0.float(), eps.float()
        z = col(plan["alpha"][i]) * x0 + col(plan["sigma"][i]) * eps
        with torch.no_grad():  # the teacher's steps t -> t'' (two, or 2 x substeps in the first round)
            x, prev = z, None
            for j in range(plan["t"].shape[1]):
                _, now = self.teacher(x, plan["t"][i, j], cond)
                now = now.float()
                x = col(plan["w_x"][i, j]) * x + col(plan["w_now"][i, j]) * now
                if prev is not None:
                    x = x + col(plan["w_prev"][i, j]) * prev
                prev = now
            target = (x - col(plan["ratio"][i]) * z) / col(plan["denom"][i])
        _, x0_hat = self.student(model)(z, plan["t"][i, 0], cond)
        return col(plan["weight"][i]).flatten() * (x0_hat.float() - target).square().flatten(1).mean(1)
