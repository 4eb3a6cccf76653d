"""diffusers-compatible schedulers for the flow and EDM paths (path.py), over diffkit's step math:

    FlowMatchEulerDiscreteScheduler   rectified flow (SD3, Flux): x' = x + (s' - s) u
    EDMEulerScheduler                 EDM's Euler (Karras et al. 2022, Algorithm 1 without churn)

Both steps are computed as every diffkit sampler computes one: the network's output becomes (eps_hat, x0_hat)
on the path (prediction.to_eps_x0_on_path) and sampling.euler.euler_step moves to the next level, which on the
linear path is exactly the flow's Euler step and in VE coordinates EDM's. The timesteps and noise levels follow
diffusers' rules to the letter (including how FlowMatchEulerDiscreteScheduler applies its shift to sigma_min a
second time in set_timesteps), so a pipeline gets the same images from either.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from .errors import ConfigError, choice_error
from .path import check_shift, shift_time
from .prediction import to_eps_x0_on_path
from .sampling.common import Level
from .sampling.euler import euler_step
from .sampling.grids import karras_sigmas
from .schedulers import SchedulerOutput, scheduler_config


class _PathScheduler:
    defaults: ClassVar[dict] = {}

    def __init__(self, **kwargs):
        self.config = scheduler_config(type(self).__name__, self.defaults, kwargs)
        self.num_inference_steps, self._step_index, self._begin_index = None, None, None

    @classmethod
    def from_config(cls, config: dict, **overrides):
        return cls(**{**dict(config), **overrides})

    @property
    def step_index(self):
        return self._step_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        self._begin_index = begin_index

    def _init_step_index(self, timestep) -> None:
        if self._begin_index is not None:
            self._step_index = self._begin_index
            return
        hits = (self.timesteps == torch.as_tensor(timestep, dtype=self.timesteps.dtype).to(self.timesteps.device)
                ).nonzero()
        if len(hits) == 0:
            raise ConfigError(f"timestep {timestep} is not in this scheduler's timesteps; call set_timesteps first "
                              "and pass one of scheduler.timesteps")
        self._step_index = int(hits[1 if len(hits) > 1 else 0, 0])

    def _check_steps(self, n) -> int:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(f"num_inference_steps must be an integer >= 1, got {n!r}")
        return int(n)

    def __len__(self):
        return self.config.num_train_timesteps


class FlowMatchEulerDiscreteScheduler(_PathScheduler):
    """Rectified flow's Euler sampler with SD3's shift: sigmas from 1 down, x' = x + (sigma' - sigma) u."""

    defaults: ClassVar[dict] = {"num_train_timesteps": 1000, "shift": 1.0}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        T, shift = self.config.num_train_timesteps, check_shift(self.config.shift)
        sigmas = shift_time(torch.linspace(1, T, T, dtype=torch.float32).flip(0) / T, shift)
        self.sigmas, self.timesteps = sigmas, sigmas * T
        self.sigma_min, self.sigma_max = float(sigmas[-1]), float(sigmas[0])

    def set_timesteps(self, num_inference_steps: int, device=None):
        n, T, shift = self._check_steps(num_inference_steps), self.config.num_train_timesteps, self.config.shift
        self.num_inference_steps = n
        t = np.linspace(self.sigma_max * T, self.sigma_min * T, n)  # as diffusers: sigma_min is shifted again
        sigmas = torch.from_numpy(shift_time(t / T, shift)).to(torch.float32)
        self.timesteps = (sigmas * T).to(device)
        self.sigmas = torch.cat([sigmas, torch.zeros(1)]).to(device)
        self._step_index, self._begin_index = None, None

    def scale_model_input(self, sample, timestep=None):
        return sample

    def scale_noise(self, sample, timestep, noise):
        """The forward process x = sigma noise + (1 - sigma) sample at the given timestep(s)."""
        sigma = self.sigmas[[int((self.timesteps == t).nonzero()[0, 0]) for t in torch.as_tensor(timestep).reshape(-1)]]
        sigma = sigma.to(sample.dtype).reshape(-1, *([1] * (sample.dim() - 1)))
        return sigma * noise + (1.0 - sigma) * sample

    def step(self, model_output, timestep, sample, generator=None, return_dict: bool = True, **_):
        if self._step_index is None:
            self._init_step_index(timestep)
        s, s_next = float(self.sigmas[self._step_index]), float(self.sigmas[self._step_index + 1])
        x, u = sample.to(torch.float64), model_output.to(torch.float64)  # float64: one rounding, at the end
        eps_hat, x0_hat = to_eps_x0_on_path("flow", u, x, 1.0 - s, s)
        prev = euler_step(x0_hat, eps_hat, Level(math.nan, 1.0 - s_next, s_next)).to(model_output.dtype)
        self._step_index += 1
        return SchedulerOutput(prev, x0_hat.to(model_output.dtype)) if return_dict else (prev,)


class EDMEulerScheduler(_PathScheduler):
    """EDM's Euler sampler on Karras sigmas (rho = 7), preconditioned inputs and outputs (Table 1)."""

    defaults: ClassVar[dict] = {"sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 0.5, "sigma_schedule": "karras",
                "num_train_timesteps": 1000, "prediction_type": "epsilon", "rho": 7.0, "final_sigmas_type": "zero"}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        c = self.config
        if c.sigma_schedule != "karras":
            raise choice_error("sigma_schedule", c.sigma_schedule, ("karras",))
        if c.prediction_type not in ("epsilon", "v_prediction"):
            raise choice_error("prediction_type", c.prediction_type, ("epsilon", "v_prediction"))
        if c.final_sigmas_type not in ("zero", "sigma_min"):
            raise choice_error("final_sigmas_type", c.final_sigmas_type, ("zero", "sigma_min"))
        self._set(torch.arange(c.num_train_timesteps + 1, dtype=torch.float64) / c.num_train_timesteps)

    def _set(self, ramp, device=None):
        c = self.config
        sigmas = karras_sigmas(ramp, c.sigma_min, c.sigma_max, c.rho).to(torch.float32)
        self.timesteps = (0.25 * torch.log(sigmas)).to(device)  # c_noise (Table 1)
        last = sigmas[-1:] if c.final_sigmas_type == "sigma_min" else torch.zeros(1)
        self.sigmas = torch.cat([sigmas, last]).to(device)
        self._step_index, self._begin_index = None, None

    @property
    def init_noise_sigma(self) -> float:
        return (self.config.sigma_max**2 + 1) ** 0.5

    def set_timesteps(self, num_inference_steps: int, device=None):
        self.num_inference_steps = self._check_steps(num_inference_steps)
        self._set(torch.linspace(0, 1, self.num_inference_steps, dtype=torch.float64), device)

    def scale_model_input(self, sample, timestep):
        if self._step_index is None:
            self._init_step_index(timestep)
        sigma = self.sigmas[self._step_index]
        return sample / (sigma**2 + self.config.sigma_data**2) ** 0.5  # c_in

    def add_noise(self, original_samples, noise, timesteps):
        idx = [int((self.timesteps == t).nonzero()[0, 0]) for t in torch.as_tensor(timesteps).reshape(-1)]
        sigma = self.sigmas[idx].to(original_samples.dtype).reshape(-1, *([1] * (original_samples.dim() - 1)))
        return original_samples + noise * sigma

    def step(self, model_output, timestep, sample, generator=None, return_dict: bool = True, **_):
        if self._step_index is None:
            self._init_step_index(timestep)
        s = self.sigmas[self._step_index].double()
        s_next = float(self.sigmas[self._step_index + 1])
        x = sample.to(torch.float64)  # float64: one rounding, at the end
        out = model_output if self.config.prediction_type == "epsilon" else -model_output  # c_out's sign
        eps_hat, x0_hat = to_eps_x0_on_path("edm", out.to(torch.float64), x, 1.0, s, self.config.sigma_data)
        prev = euler_step(x0_hat, eps_hat, Level(math.nan, 1.0, s_next)).to(model_output.dtype)
        self._step_index += 1
        return SchedulerOutput(prev, x0_hat.to(model_output.dtype)) if return_dict else (prev,)
