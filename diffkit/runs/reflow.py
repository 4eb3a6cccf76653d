"""Reflow (Liu et al. 2023, Algorithm 1): a flow trained on the (noise, sample) pairs of a teacher's ODE, starting
from the teacher's weights, straightens the trajectories so few Euler steps suffice. Any teacher (ddpm, edm, flow)
gives pairs; the student is an ordinary run directory that records its teacher (path, checksum, how the pairs
were made) and samples without it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..config import ObjectiveConfig, ParentConfig, RunConfig
from ..errors import ConfigError
from ..sampling import SAMPLERS, STOCHASTIC
from ..training.distributed import Runtime, barrier
from .pairs import cached_pairs, check_pairs
from .pipeline import deterministic_own
from .teachers import check_teacher, teacher_sha256
from .train import train_run

DEFAULT_PAIRS = 10_000


def reflow_config(teacher, *, pairs: int = DEFAULT_PAIRS, sampler: str = "dpmpp-2m", steps: int = 20,
                  guidance: float | None = None, train_steps: int | None = None, seed: int = 0) -> RunConfig:
    """The student's whole config: the teacher's data, network, fitted statistics and sampling defaults; the flow
    objective with uniform times (as Liu et al.); the teacher recorded as its parent."""
    t_cfg = check_teacher(teacher, "reflow", guidance)
    if sampler not in SAMPLERS or sampler in STOCHASTIC:
        raise ConfigError(f"the pairs come from the teacher's deterministic ODE; --sampler {sampler} is not one of: "
                          f"{', '.join(s for s in SAMPLERS if s not in STOCHASTIC)}")
    check_pairs(pairs, t_cfg.fitted.shape)
    config = RunConfig.from_dict(t_cfg.to_dict())
    config.objective = ObjectiveConfig(name="flow", time_dist="uniform", sigma_data=t_cfg.objective.sigma_data)
    config.prediction = "flow"
    config.schedule = type(config.schedule)(num_timesteps=t_cfg.schedule.num_timesteps)
    config.train.steps = train_steps or t_cfg.train.steps
    config.train.seed = seed
    own, own_steps = deterministic_own(t_cfg)  # a reflowed run samples deterministically (not shapes' SDE)
    config.sampling = replace(config.sampling, sampler=own, steps=own_steps,
                              options=config.sampling.options if own == t_cfg.sampling.sampler else {})
    config.parent = ParentConfig(kind="reflow", path=str(Path(teacher).resolve()), sha256=teacher_sha256(teacher),
                                 pairs=pairs, sampler=sampler, steps=steps, guidance=guidance, seed=seed)
    return config.validate()


def reflow_run(teacher, out, *, progress: bool = True, runtime: Runtime | None = None, overwrite: bool = False,
               **settings) -> dict:
    """Solve (or load) the teacher's pairs, then train the student into `out` (reflow_config's settings)."""
    config = reflow_config(teacher, **settings)
    runtime = runtime or Runtime()
    if runtime.is_main:  # one rank solves and caches the pairs; the others read them after the barrier
        cached_pairs(config.parent, device=runtime.device, progress=progress)
    barrier(runtime)
    return train_run(config, out, overwrite=overwrite, progress=progress, runtime=runtime)
