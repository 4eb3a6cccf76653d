"""Distillation: a student that samples in a few network calls what its teacher needs many for. The student is an
ordinary run directory (config.json records its teacher by path and checksum, and how it was distilled); it
starts from the teacher's weights, samples without the teacher, with its own sampler and steps by default, and
resumes exactly after an interruption. Progressive distillation (Salimans & Ho 2022): training/distill.py;
consistency distillation (Song et al. 2023): training/consistency.py."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from ..config import ParentConfig, RunConfig
from ..errors import ConfigError
from ..sampling import sampler_grid
from ..sampling.common import levels
from ..sampling.grids import ODE_SIGMA_MAX
from ..training.consistency import boundary_sigma
from ..training.distributed import Runtime
from .teachers import check_teacher, teacher_sha256
from .train import train_run

METHODS = ("progressive", "consistency")
DEFAULT_STEPS = {"progressive": 4, "consistency": 2}
# progressive: the first round's teacher takes this many steps (or twice the student's, if more), per space. Images:
# 16, mnist5k's 4-step student (w = 3 folded in (4, 10]; 5 seeds of 1,000): from 32 (three rounds at 1/7 of the
# teacher's steps each) 1.78x the floor at 0.86x / 1.06x the teacher's CPU-seconds in two runs, from 16 (two rounds)
# 1.87x at 0.78x; before the folded interval the two were within noise (2.53x / 2.40x, one student each)
FINEST = {"points": 32, "images": 16}
# progressive: the first round's teacher takes 2 x this many DPM-Solver++(2M) steps per student interval (Salimans &
# Ho: 1, two DDIM steps). Measured (benchmarks/distill.py; 4-step students): spiral's excess 5.1e-4 at 1, 2.1e-4 at
# 2, 1.5e-4 at 4; digits' FD 2.02x the floor at 2 and at 4, where the cost fell from 1.64x to about 1.3x the teacher's;
# at 1 (two DDIM steps) digits' student fell from 1.15x its teacher's reference FD to 1.21x, for 0.91x against 1.03x
SUBSTEPS = {"points": 4, "images": 2}
# and spaces them uniformly in log-SNR (training/distill.py: _split; measured on points) or in time (images, as
# measured)
SPACING = {"points": "log-snr", "images": "time"}
# progressive: the K-step student's grid (its config.sampling.spacing, so `diffkit sample` steps on it). Points: log-SNR
# uniform from the schedule's top down to sigma = 0.3 data standard deviations, where ddim's trailing grid ends its
# last jump at t = 249 (sigma ~ 0.95 on the linear schedule), a jump from between the modes that the student's
# x0 has to make sharp. Measured (4-step students of one 3000-step teacher each, 8 seeds of 50,000 points, two
# student seeds, excess over the teacher's dpmpp-2m 20): gaussians8 1.46x / 1.65x trailing, 0.99x / 0.93x at 0.3,
# 0.86x / 0.84x at 0.45, 1.26x at 0.6; spiral 1.07x / 1.09x trailing, 1.15x / 1.04x at 0.3, 1.10x / 1.24x at 0.45.
# Images: None, the teacher's own (ddim trailing for the presets), as measured.
STUDENT_SPACING = {"points": "logsnr:0.3", "images": None}
# consistency: the noise levels of the teacher's Heun steps, per space (Song et al. 2023: N = 18, CIFAR-10). Points
# take more: on spiral (one teacher, 8 seeds of 50,000, benchmarks/distill.py's scorer) the 4 / 8-call excess was
# 2.4e-4 / 1.7e-4 at 18 levels, 1.7e-4 / 1.3e-4 at 36 (1 call: 1.7e-4) and 1.8e-4 / 1.4e-4 at 72 (1 call: 9.8e-4),
# for the same training steps. Images: 18. Digits' student gains from fewer (a short distillation carries the
# boundary condition up one level pair at a time; benchmarks/distill_eight.py, one default teacher, 3 seeds of
# 2,000, FD over the floor at 1 / 4 calls): 1.62x / 1.23x at 18 levels, 1.45x / 1.20x at 14, 1.42x / 1.21x at 12,
# 1.60x / 1.20x at 10, 2.3x / 1.34x at 8, 36 did not learn; mnist5k's loses (5 seeds of 1,000): 7.5x / 2.66x at 18,
# 8.5x / 3.69x at 12 (digits' own: CONSISTENCY_OWN).
LEVELS = {"points": 36, "images": 18}
# consistency: the target network's EMA rate (Song et al. 2023: 0.95 for CD). Measured on spiral (750 steps from the
# default 1500-step teacher): 1-step energy distance 0.0018 at 0.95 against 0.013-0.055 with the stop-gradient
# target (0) that Song & Dhariwal (2023) use for consistency training
TARGET_EMA = 0.95
# default training length: per halving round, this share of the teacher's steps (images: a K = 4 student's 2 rounds
# take 2/7 of the teacher's steps; K = 1: 4 rounds); consistency: TRAIN_SHARE[space] of them. A student step calls
# the teacher twice (8 times in the first round of points, 4 of images), so an image round costs about 1/3 of the
# teacher's training (measured: benchmarks/distill.py). Points: a third fewer steps at their higher learning rate: spiral's
# 4-step student 1.07x its teacher's excess at 1,000 steps (0.9x the teacher's CPU time), 1.13x at 1,500 (1.3x).
# Images, digits' 4-step student (FD over its teacher's reference FD, CPU-seconds over the teacher's, one teacher,
# 3 seeds of 2,000): 1/6 of the steps per round 1.15x at 1.03x, 0.15 1.11x at 0.98x, 0.133 1.17x at 0.77x
ROUND_SHARE = {"points": 1 / 9, "images": 1 / 7}
# progressive, K = 1: this share of the teacher's steps in all, where it differs from ROUND_SHARE x its rounds (the
# 1-step student's budget is twice the 4-step one's). Points, 5 rounds: 2,200 steps of a 3000-step teacher (11/15)
# against 1,667 (5/9): gaussians8's 1-call excess 3.5e-04 +- 5e-05, 1.42x its teacher's reference, at 1.08x the
# teacher's CPU-seconds, against 5.3e-04, 2.15x (target <= 2x) at 1.19x; spiral's 1.1e-04, 1.12x, at 1.58x
# (before: 1.16-1.18x at 1.08-1.36x). benchmarks/distill.py --ks 1 --nfes 1 --no-consistency, 8 seeds of 50,000
ONE_STEP_SHARE = {"points": 11 / 15}
# Consistency, digits (one default teacher: 1300 steps, guided in (4, 80], its reference 1.36x the floor in 23
# calls; 3 seeds of 2,000, w = 3 folded in): at 0.5 the 2-step student scored 1.29x the floor, 99.3%, for 1.42x the
# teacher's CPU-seconds (4 steps: 1.21x, 98.6%); at 0.3 2 steps 1.35x, 99.2%, 0.97x (1 step 1.82x, 99.6%; 4 steps
# 1.42x, 98.4%). Points: measured at 0.5.
TRAIN_SHARE = {"points": 0.5, "images": 0.3}
# the student's peak learning rate: this share of the teacher's, per method and space. Students of points learn
# faster at more (benchmarks/distill.py's paired figures, 8 seeds of 50,000 points): progressive, spiral's 4-step
# excess over its teacher's reference 1.66x at 0.5, 1.31x at 1, 1.22x at 3, 1.21x at 5; gaussians8's 2.75x at 0.5,
# 1.54x at 3, 1.68x at 8. Consistency, gaussians8 at 8 steps: 6.5e-4 at 6, 5.4e-4 at 12, 5.0e-4 at 24 (4 steps:
# 6.9e-3 at 0.5, 1.0e-3 at 3); spiral at 8 steps: 2.3e-4 at 6, 1.7e-4 at 12, 2.1e-4 at 24. Images: 0.5. Digits'
# consistency student at 12 levels learns better at more (4 calls: 1.21x the floor at 0.5, 1.14-1.16x at 1 over two
# seeds, 1.15x at 1.5; benchmarks/distill_eight.py), mnist5k's far worse (12 levels at 1: 4.00x at 4 calls, 8.5x at
# 1, against 2.66x and 7.5x at the defaults; 5 seeds of 1,000), so images stay at 0.5 (digits: CONSISTENCY_OWN).
LR_SHARE = {"progressive": {"points": 3.0, "images": 0.5}, "consistency": {"points": 12.0, "images": 0.5}}
# consistency, per built-in data set where its own measured best differs from its space's (the teacher's data, a pixel
# run of it -> levels, learning-rate share, sampling spacing). digits (its default teacher, 390 steps, 3 seeds of
# 2,000, FD over the floor, two student seeds; benchmarks/distill_eight.py): 12 levels at 1.5x the teacher's rate
# score 1.33-1.39x at 1 call, 1.13-1.15x at 4 and on renoise-low at 8 (+3.1 / +6.4 standard errors better than the
# teacher's best within 8 calls, dpmpp-2m 6), at 1x 1.33-1.39x, 1.14-1.16x, 1.16x (+2.2 / +3.6), against 1.62x / 1.23x
# / 1.25x at the space's 18 levels and 0.5x; a curriculum from 9 or 12 levels to 18 (halfway) at 0.5x did not reach it
# (4 calls 1.25x / 1.23x, 8 calls 1.25x / 1.24x). Not mnist5k: 12 levels at 1x scored 4.00x at 4 calls against 2.66x,
# and renoise-low 3.17x at 8 against 2.72x (5 seeds of 1,000).
CONSISTENCY_OWN = {"digits": {"levels": 12, "lr_share": 1.5, "spacing": "renoise-low"}}


# Measured on mnist5k's default teacher (guided in (4, 80] at w = 3; FD over the floor, accuracy; 5 seeds of 1,000):
# its 4-step progressive student scored 2.53x, 99.3% with the whole interval folded in, 1.78x, 98.4% with (4, 10]
# (the reference: 1.58x, 98.8%); the teacher itself by dpmpp-2m 32 up to sigma 160, where (10, 80] is guided, 2.22x,
# 99.5%, and on its own range 1.73x, 98.9% (2 seeds). Digits (3 seeds of 2,000): progressive 1.86x -> 1.56x,
# consistency at 1 / 4 calls 1.85x / 1.32x -> 1.57x / 1.28x (docs/distill.md)
def folded_interval(interval, schedule) -> list[float] | None:
    """Where a student's folded-in guidance applies: the teacher's guidance interval with its top clipped to
    ODE_SIGMA_MAX, the highest level the reference sampler (dpmpp-2m on `ode_sigma_range`) calls the network at
    (after its first call, at the schedule's top where that is higher), so the student learns the guided ODE
    that sampler solves. None: the teacher's own, where the clip would change nothing or would drop a guided
    first call (no interval; one wholly above ODE_SIGMA_MAX or below it; one holding a first call above it: the
    presets' paths start that sampler at sigma 10 (ddpm, EDM) or at infinity (flow), so none does)."""
    clip = ODE_SIGMA_MAX * (1 + 1e-6)  # a hair above: a grid's level there is ODE_SIGMA_MAX up to rounding
    if interval is None or interval[0] >= ODE_SIGMA_MAX or interval[1] <= clip:
        return None
    top = levels(schedule, [float(sampler_grid(schedule, "dpmpp-2m", 1)[0])])[0].sigma_ve  # its first level, any K
    if top > clip and interval[0] < top <= interval[1]:
        return None
    return [float(interval[0]), clip]


def rounds_for(steps: int, finest: int) -> int:
    """Halvings from the first round's student (`finest` steps or fewer) down to `steps`; at least one."""
    return max(1, int(math.log2(finest // steps))) if steps < finest else 1


def check_guidance_range(value, method: str, guidance) -> list[float] | None:
    """[lo, hi] with 0 <= lo < hi from "LO,HI" or a pair; None stays None."""
    if value is None:
        return None
    if guidance is not None:
        raise ConfigError("give --guidance W (one scale folded in) or --guidance-range LO,HI (w an input), not both")
    if method != "progressive":
        raise ConfigError("--guidance-range makes a progressive student (Meng et al. 2023: w an input, then halving); "
                          "a consistency student takes one --guidance W")
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        lo, hi = (float(v) for v in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"--guidance-range is two scales LO,HI (e.g. 1,5), got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
        raise ConfigError(f"--guidance-range LO,HI needs 0 <= LO < HI (in order), got {lo:g},{hi:g}")
    return [lo, hi]


def distill_config(teacher, *, method: str = "progressive", steps: int | None = None, guidance: float | None = None,
                   guidance_range=None, train_steps: int | None = None, seed: int = 0, levels: int | None = None,
                   target_ema: float = TARGET_EMA, lr: float | None = None) -> RunConfig:
    """The student's whole config: the teacher's data, network, fitted statistics and path; the teacher recorded
    as its parent; its own sampler and steps (progressive: ddim at K, the training split into halving rounds;
    consistency: multistep consistency sampling at K). guidance_range (lo, hi): a progressive student that reads
    w (its network's guidance embedding), after a first stage as long as one round (training/guided.py). levels:
    a consistency student's (default LEVELS); lr: the student's peak learning rate (default LR_SHARE of the
    teacher's). A consistency student of a pixel run of a data set in CONSISTENCY_OWN takes that set's levels, rate
    and spacing."""
    if method not in METHODS:
        raise ConfigError(f"unknown distillation method {method!r}; use one of: {', '.join(METHODS)}")
    steps = DEFAULT_STEPS[method] if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"--steps is the student's number of sampling steps, a positive integer, got {steps!r}")
    if method == "progressive" and steps & (steps - 1):
        raise ConfigError(f"a progressive student halves its teacher's steps, so --steps is a power of two (1, 2, 4, "
                          f"8, ...), got {steps}")
    if levels is not None and (isinstance(levels, bool) or not isinstance(levels, int) or not 2 <= levels <= 1000):
        raise ConfigError(f"the consistency levels are an integer from 2 to 1000, got {levels!r}")
    if levels is not None and method != "consistency":
        raise ConfigError("--levels sets a consistency student's noise levels; a progressive student has halving "
                          "rounds instead (drop --levels or add --method consistency)")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf):
        raise ConfigError(f"the student's learning rate is a number above 0, got {lr!r}")
    if not 0 <= target_ema < 1:
        raise ConfigError(f"the target network's EMA rate is in [0, 1) (0: stop-gradient), got {target_ema!r}")
    guidance_range = check_guidance_range(guidance_range, method, guidance)
    t_cfg = check_teacher(teacher, "distillation", guidance if guidance_range is None else guidance_range[1])
    if t_cfg.distilled:
        raise ConfigError(f"{teacher} is already a distilled student; distill its teacher ({t_cfg.parent.path}) to "
                          "fewer steps instead")
    config = RunConfig.from_dict(t_cfg.to_dict())
    t = config.train
    space = "points" if config.fitted.image_shape is None else "images"
    rounds = rounds_for(steps, FINEST[space]) if method == "progressive" else 1
    stages = rounds + (guidance_range is not None)  # the guidance stage lasts one round
    share = ROUND_SHARE[space] * stages if method == "progressive" else TRAIN_SHARE[space]
    if method == "progressive" and steps == 1:
        share = ONE_STEP_SHARE.get(space, share)
    total = train_steps or max(stages, round(t.steps * share))
    if total < stages:
        what = "halving rounds" if guidance_range is None else "stages (the guidance stage and the halving rounds)"
        raise ConfigError(f"--train-steps {total} is fewer than the {stages} {what} down to {steps} steps")
    per_round = total // stages
    pixels = config.data.latent is None and config.data.text is None  # where CONSISTENCY_OWN was measured
    own_cd = CONSISTENCY_OWN.get(config.data.spec, {}) if method == "consistency" and pixels else {}
    lr_share = own_cd.get("lr_share", LR_SHARE[method][space])
    config.train = replace(t, steps=total, lr=lr or t.lr * lr_share, lr_cycles=stages, seed=seed,
                           ema_halflife=0.0,
                           warmup_steps=min(t.warmup_steps, max(1, per_round // 10)),
                           checkpoint_every=min(t.checkpoint_every, per_round))
    own = "ddim" if method == "progressive" else "consistency"
    spacing = (STUDENT_SPACING[space] if method == "progressive" else own_cd.get("spacing")) or config.sampling.spacing
    config.sampling = replace(config.sampling, sampler=own, steps=steps, spacing=spacing, options={})
    config.parent = ParentConfig(kind=method, path=str(Path(teacher).resolve()), sha256=teacher_sha256(teacher),
                                 steps=steps, guidance=guidance, seed=seed, sampler=own)
    if guidance not in (None, 1) or guidance_range is not None:
        config.parent.guidance_interval = folded_interval(t_cfg.sampling.guidance_interval, t_cfg.path())
    if guidance_range is not None:  # w an input at every level (its jumps learned where the teacher guides)
        config.parent.guidance_range = guidance_range
        config.network = replace(config.network, guidance_embed=True)
        config.sampling = replace(config.sampling, guidance_interval=None)
    if method == "progressive":
        config.parent.rounds = rounds
        config.parent.substeps, config.parent.spacing = SUBSTEPS[space], SPACING[space]
    else:
        config.parent.levels, config.parent.target_ema = levels or own_cd.get("levels", LEVELS[space]), target_ema
        config.parent.boundary = boundary_sigma(config.path(), config.parent.levels)
    return config.validate()


def distill_run(teacher, out, *, progress: bool = True, runtime: Runtime | None = None, overwrite: bool = False,
                **settings) -> dict:
    """Distill `teacher` into the student run `out` (distill_config's settings)."""
    return train_run(distill_config(teacher, **settings), out, overwrite=overwrite, progress=progress, runtime=runtime)
