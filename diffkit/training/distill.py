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
free guidance in (its denoiser guided; Meng et al. 2023 with one fixed w) and takes its second step as
DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) from the two x0_hat it has, which is more accurate at no extra
call; later rounds' teachers are students, whose two DDIM steps are what they learned.
"""

from __future__ import annotations

import copy

import torch

from ..cond import conditioning_for
from ..denoiser import Denoiser
from ..errors import ConfigError
from ..sampling import sampler_grid
from ..sampling.common import levels
from ..sampling.dpm_solver import dpmpp_weights

F64 = torch.float64


def ladder(schedule, steps: int, rounds: int) -> list[torch.Tensor]:
    """The grids of every round, float64 times ending in -1 (x_0): [grid of steps * 2^rounds, ..., grid of steps].
    The last is ddim's own grid at `steps` (`diffkit sample --sampler ddim --steps K`); each finer one puts the
    midpoint in time into every interval of the next."""
    grid = torch.cat([sampler_grid(schedule, "ddim", steps).to(F64), torch.tensor([-1.0], dtype=F64)])
    grids = [grid]
    for _ in range(rounds):
        mid = (grid[:-1] + grid[1:]) / 2
        grid = torch.stack([grid[:-1], mid], 1).reshape(-1)
        grid = torch.cat([grid, torch.tensor([-1.0], dtype=F64)])
        grids.append(grid)
    return grids[::-1]


def _weights(schedule, fine: torch.Tensor, second_order: bool) -> dict:
    """Per student interval i (fine levels 2i -> 2i+1 -> 2i+2): the scalars of the teacher's two steps, the
    student's target and its weight, as float64 tables [n]. A step is z' = w_x z + sum_j w_j x0_j (dpm_solver.py)."""
    lv = levels(schedule, fine.tolist())
    rows = []
    for i in range(0, len(lv) - 1, 2):
        a, b, c = lv[i], lv[i + 1], lv[i + 2]
        first = dpmpp_weights([a], b, 1)  # DDIM a -> b
        second = dpmpp_weights([a, b], c, 2 if second_order else 1)  # 2M b -> c (first order into x_0)
        if len(second) == 2:
            second = [second[0], 0.0, second[1]]
        ratio = c.sigma / a.sigma  # the student's DDIM a -> c is z'' = ratio z + (alpha'' - ratio alpha) x0
        snr = (a.alpha / a.sigma) ** 2
        rows.append([a.t, a.alpha, a.sigma, *first, *second, ratio, c.alpha - ratio * a.alpha, max(snr, 1.0)])
    table = torch.tensor(rows, dtype=F64)
    names = ("t", "alpha", "sigma", "w1_x", "w1_x0", "w2_x", "w2_x0a", "w2_x0b", "ratio", "denom", "weight")
    return dict(zip(names, table.unbind(1)))


def _frozen_copy(network: torch.nn.Module) -> torch.nn.Module:
    out = copy.deepcopy(network).requires_grad_(False).eval()
    for p in out.parameters():
        p.grad = None
    return out


class ProgressiveObjective:
    """Salimans & Ho (2022), Algorithm 2, over `rounds` halvings of `steps_per_round` steps each (module doc).

    teacher: the first round's teacher Denoiser (guided where guidance is folded in); its schedule is the run's
    path. config: the student's RunConfig (its prediction, conditioning and x0 clip build each student's Denoiser).
    """

    def __init__(self, config, schedule, teacher: Denoiser, *, steps: int, rounds: int, steps_per_round: int):
        if steps_per_round < 1:
            raise ConfigError(f"{rounds} halving rounds need at least {rounds} training steps")
        self.config, self.schedule = config, schedule
        self.rounds, self.steps_per_round = rounds, steps_per_round
        self.grids = ladder(schedule, steps, rounds)  # round r's teacher grid is grids[r], its student's grids[r+1]
        self.tables = [_weights(schedule, g, second_order=(r == 0)) for r, g in enumerate(self.grids[:-1])]
        self.first_teacher, self.teacher, self.round = teacher, teacher, 0
        self.frozen = None  # the current round's teacher network (rounds > 0): the last round's student
        self.resumed = None  # (round, teacher state) from a checkpoint, until the next begin_step

    def student(self, network) -> Denoiser:
        return Denoiser(network, self.schedule, self.config.prediction, conditioning=conditioning_for(self.config),
                        clip_x0=None)

    def round_of(self, step: int) -> int:
        return min(step // self.steps_per_round, self.rounds - 1)

    # rounds: each begins with the last round's student as its teacher ---------------------------------------
    def begin_step(self, step: int, network) -> None:
        r = self.round_of(step)
        if self.resumed is not None:  # the frozen teacher a checkpoint held, if it is this round's
            held_round, state = self.resumed
            self.resumed, self.round = None, r
            if held_round == r:
                self._freeze(_frozen_copy(network), state)
                return
            self.round = r - 1 if r > 0 else 0  # resumed at a round's first step: freeze below
        if r != self.round:
            self.round = r
            self._freeze(_frozen_copy(network))

    def _freeze(self, network, state: dict | None = None) -> None:
        if state is not None:
            network.load_state_dict(state)
        self.frozen = network
        self.teacher = Denoiser(network, self.schedule, self.config.prediction,
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
        n = len(self.tables[self.round]["t"])
        return torch.randint(0, n, (batch_size,), generator=generator), \
            torch.randn((batch_size, *shape), generator=generator)

    def loss(self, model, x0, draws, cond) -> torch.Tensor:
        i, eps = draws
        table = self.tables[self.round]

        def col(name):
            return table[name][i.cpu()].to(x0.device, torch.float32).reshape(-1, *([1] * (x0.dim() - 1)))

        t = table["t"][i.cpu()]
        x0, eps = x0.float(), eps.float()
        z = col("alpha") * x0 + col("sigma") * eps
        with torch.no_grad():  # the teacher's two steps t -> t' -> t''
            t_mid = self.grids[self.round][2 * i.cpu() + 1]
            _, x0_a = self.teacher(z, t, cond)
            z_mid = col("w1_x") * z + col("w1_x0") * x0_a.float()
            _, x0_b = self.teacher(z_mid, t_mid, cond)
            z_end = col("w2_x") * z_mid + col("w2_x0a") * x0_a.float() + col("w2_x0b") * x0_b.float()
            target = (z_end - col("ratio") * z) / col("denom")
        _, x0_hat = self.student(model)(z, t, cond)
        return col("weight").flatten() * (x0_hat.float() - target).square().flatten(1).mean(1)
