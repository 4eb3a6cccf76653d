"""diffusers-compatible schedulers: the calling convention users know, over diffkit's own step math.

    scheduler.set_timesteps(K)
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        out = model(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(out, t, x, generator=g).prev_sample

The adapters only translate conventions (which timesteps, which "previous" timestep, VE or VP samples);
every update is computed by the functions in diffkit.sampling (ddpm_mean, ddim_step, dpmpp_update,
euler_step). Tables are float64; the constructor takes the keywords of the diffusers classes we support.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from .errors import ConfigError, choice_error
from .prediction import to_eps_x0, to_x0
from .sampling.common import Level
from .sampling.ddim import ddim_step
from .sampling.ddpm import ddpm_mean, ddpm_variance
from .sampling.dpm_solver import dpmpp_update, final_order
from .sampling.euler import euler_step
from .schedule import NoiseSchedule, cosine_betas, rescale_zero_terminal_snr

CONFIG_NAME = "scheduler_config.json"  # diffusers' file name
PREDICTION_TYPES = {"epsilon": "epsilon", "sample": "x0", "v_prediction": "v"}
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
# diffusers keywords we accept only at their default value (a config file lists them all)
_ONLY_DEFAULT = {"thresholding": False, "dynamic_thresholding_ratio": 0.995, "sample_max_value": 1.0,
                 "algorithm_type": "dpmsolver++", "solver_type": "midpoint", "euler_at_final": False,
                 "use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False,
                 "use_lu_lambdas": False, "use_flow_sigmas": False, "flow_shift": 1.0, "final_sigmas_type": "zero",
                 "lambda_min_clipped": -math.inf, "interpolation_type": "linear", "timestep_type": "discrete",
                 "sigma_min": None, "sigma_max": None, "use_dynamic_shifting": False,
                 "time_shift_type": "exponential", "variance_type": None}

# keys of other diffusers schedulers that a scheduler without them ignores at any value, as diffusers' own class does
# (a pipeline's config keeps them when its scheduler is swapped: DDIM's clipping, PNDM's skip_prk_steps)
_FOREIGN = {"clip_sample", "clip_sample_range", "set_alpha_to_one", "skip_prk_steps"}


class SchedulerConfig(dict):
    """A dict that also reads as attributes, like diffusers' FrozenDict."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def scheduler_config(owner: str, defaults: dict, kwargs: dict, only_default: dict | None = None) -> SchedulerConfig:
    """The keywords of a diffusers scheduler config onto our defaults: "_"-keys (_class_name, _diffusers_version)
    and other schedulers' keys this one ignores (_FOREIGN) skipped, keys in only_default accepted at their default
    value only, anything else refused by name."""
    cfg, only_default = dict(defaults), only_default or {}
    for key, value in kwargs.items():
        if key.startswith("_"):
            continue
        if key in cfg:
            cfg[key] = value
        elif key in _FOREIGN:
            continue
        elif not (key in only_default and _same(value, only_default[key])):
            raise ConfigError(f"{owner} does not support {key}={value!r}; it takes: {', '.join(sorted(defaults))}")
    return SchedulerConfig(cfg)


@dataclass
class SchedulerOutput:
    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


class _Scheduler:
    defaults: ClassVar[dict] = {}
    order = 1  # model calls per timestep, as diffusers' schedulers declare it (pipelines' progress bars read it)

    def __init__(self, **kwargs):
        self.config = cfg = scheduler_config(type(self).__name__, self.defaults, kwargs, _ONLY_DEFAULT)
        if cfg["prediction_type"] not in PREDICTION_TYPES:
            raise choice_error("prediction_type", cfg["prediction_type"], PREDICTION_TYPES)
        if cfg["timestep_spacing"] not in ("linspace", "leading", "trailing"):
            raise choice_error("timestep_spacing", cfg["timestep_spacing"], ("linspace", "leading", "trailing"))
        self.schedule = self._build_schedule(cfg)
        self.alphas_cumprod = self.schedule.alphas_cumprod
        self.prediction = PREDICTION_TYPES[cfg["prediction_type"]]
        self.num_inference_steps = None
        self.timesteps = torch.arange(cfg["num_train_timesteps"] - 1, -1, -1)

    @classmethod
    def from_config(cls, config: dict, **overrides):
        return cls(**{**dict(config), **overrides})

    def save_pretrained(self, save_directory, **_) -> Path:
        """scheduler_config.json in diffusers' format (the class name and every setting), which diffusers' own class
        of the same name loads; returns its path."""
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        config = {"_class_name": type(self).__name__, **{k: _plain(v) for k, v in self.config.items()}}
        path = folder / CONFIG_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(config, indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, subfolder: str | None = None, **overrides):
        """The scheduler of a local folder's scheduler_config.json (a diffusers pipeline's: subfolder="scheduler"),
        written by diffusers or by save_pretrained; nothing is downloaded."""
        folder = Path(pretrained_model_name_or_path) / (subfolder or "")
        path = folder if folder.suffix == ".json" else folder / CONFIG_NAME
        try:
            config = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path} does not exist; give a local folder with a {CONFIG_NAME}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path} is not a readable JSON scheduler config ({e})") from None
        if not isinstance(config, dict):
            raise ConfigError(f"{path} holds a JSON {type(config).__name__}, not a scheduler config object")
        return cls.from_config(config, **overrides)

    @staticmethod
    def _build_schedule(cfg) -> NoiseSchedule:
        T = cfg["num_train_timesteps"]
        if cfg.get("trained_betas") is not None:
            betas = torch.as_tensor(np.asarray(cfg["trained_betas"], dtype=np.float64))
        elif cfg["beta_schedule"] == "linear":
            betas = torch.linspace(cfg["beta_start"], cfg["beta_end"], T, dtype=torch.float64)
        elif cfg["beta_schedule"] == "scaled_linear":
            betas = torch.linspace(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, T, dtype=torch.float64) ** 2
        elif cfg["beta_schedule"] == "squaredcos_cap_v2":
            betas = cosine_betas(T)
        else:
            raise choice_error("beta_schedule", cfg["beta_schedule"], BETA_SCHEDULES)
        schedule = NoiseSchedule(betas, name="custom")
        return rescale_zero_terminal_snr(schedule) if cfg.get("rescale_betas_zero_snr") else schedule

    # shared conventions -------------------------------------------------------------------------
    def _check_steps(self, num_inference_steps: int) -> int:
        T = self.config.num_train_timesteps
        if not isinstance(num_inference_steps, (int, np.integer)) or not 1 <= num_inference_steps <= T:
            raise ConfigError(f"num_inference_steps must be an integer from 1 to {T}, got {num_inference_steps}")
        self.num_inference_steps = int(num_inference_steps)
        return self.num_inference_steps

    def _spaced(self, K: int, extra: int = 0, last: int | None = None) -> np.ndarray:
        """Integer timesteps by diffusers' timestep_spacing (Lin et al. 2024, Table 2)."""
        T = self.config.num_train_timesteps
        last = T if last is None else last
        spacing = self.config.timestep_spacing
        if spacing == "linspace":
            ts = np.linspace(0, last - 1, K + extra).round()[::-1][:K]
        elif spacing == "leading":
            ratio = last // (K + extra)
            ts = (np.arange(0, K + extra) * ratio).round()[::-1][:K] + self.config.steps_offset
        else:
            ts = np.round(np.arange(last, 0, -T / K)) - 1
        return ts.copy().astype(np.int64)

    def _abar(self, t) -> float:
        return float(self.alphas_cumprod[int(t)])

    def _eps_x0(self, model_output, sample, ab: float):
        return to_eps_x0(self.prediction, model_output, sample, torch.tensor(ab, dtype=sample.dtype))

    def _clip(self, x0):
        if self.config.get("clip_sample"):
            r = self.config.get("clip_sample_range", 1.0)
            return x0.clamp(-r, r)
        return x0

    @property
    def init_noise_sigma(self) -> float:
        return 1.0

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        return sample

    def add_noise(self, original_samples, noise, timesteps) -> torch.Tensor:
        """q_sample: sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise."""
        t = torch.as_tensor(timesteps).long().reshape(-1).expand(original_samples.shape[0])
        return self.schedule.q_sample(original_samples, t, noise)

    def _index(self, timestep) -> int:
        hits = (self.timesteps == torch.as_tensor(timestep, dtype=self.timesteps.dtype)).nonzero()
        if len(hits) == 0:
            raise ConfigError(f"timestep {timestep} is not in this scheduler's timesteps; call set_timesteps first "
                              "and pass one of scheduler.timesteps")
        return int(hits[0, 0])

    def __len__(self):
        return self.config.num_train_timesteps


def _plain(value):
    """A config value as JSON (trained betas as a list)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.tolist()
    return list(value) if isinstance(value, tuple) else value


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isinf(a) and math.isinf(b):
        return (a > 0) == (b > 0)
    return a == b


_COMMON = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
           "trained_betas": None, "prediction_type": "epsilon", "steps_offset": 0,
           "rescale_betas_zero_snr": False}


class DDPMScheduler(_Scheduler):
    """Ancestral DDPM steps (diffusers.DDPMScheduler conventions): previous timestep = next in the list."""

    defaults: ClassVar[dict] = {**_COMMON, "variance_type": "fixed_small", "clip_sample": True, "clip_sample_range": 1.0,
                "timestep_spacing": "leading"}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.config.variance_type not in ("fixed_small", "fixed_large"):
            raise choice_error("variance_type", self.config.variance_type, ("fixed_small", "fixed_large"))

    def set_timesteps(self, num_inference_steps: int, device=None):
        self.timesteps = torch.from_numpy(self._spaced(self._check_steps(num_inference_steps)))

    def previous_timestep(self, timestep) -> int:
        if self.num_inference_steps is None:
            return int(timestep) - 1
        i = self._index(timestep)
        return int(self.timesteps[i + 1]) if i + 1 < len(self.timesteps) else -1

    def step(self, model_output, timestep, sample, generator=None, return_dict: bool = True):
        t, t_prev = int(timestep), self.previous_timestep(timestep)
        ab, ab_prev = self._abar(t), (self._abar(t_prev) if t_prev >= 0 else 1.0)
        _, x0 = self._eps_x0(model_output, sample, ab)
        x0 = self._clip(x0)
        prev = ddpm_mean(sample, x0, ab, ab_prev)
        if t > 0:  # diffusers adds noise whenever t > 0 (posterior variance floored at 1e-20)
            kind = "posterior" if self.config.variance_type == "fixed_small" else "beta"
            var = ddpm_variance(ab, ab_prev, kind)
            var = max(var, 1e-20) if kind == "posterior" else var
            noise = torch.randn(model_output.shape, generator=generator, dtype=model_output.dtype)
            prev = prev + var**0.5 * noise
        return SchedulerOutput(prev, x0) if return_dict else (prev, x0)


class DDIMScheduler(_Scheduler):
    """DDIM steps (diffusers.DDIMScheduler conventions): previous timestep = t - T // K."""

    defaults: ClassVar[dict] = {**_COMMON, "clip_sample": True, "clip_sample_range": 1.0, "set_alpha_to_one": True,
                "timestep_spacing": "leading"}

    def set_timesteps(self, num_inference_steps: int, device=None):
        self.timesteps = torch.from_numpy(self._spaced(self._check_steps(num_inference_steps)))

    def step(self, model_output, timestep, sample, eta: float = 0.0, use_clipped_model_output: bool = False,
             generator=None, return_dict: bool = True):
        if self.num_inference_steps is None:
            raise ConfigError("call set_timesteps(num_inference_steps) before step")
        t = int(timestep)
        t_prev = t - self.config.num_train_timesteps // self.num_inference_steps
        final = 1.0 if self.config.set_alpha_to_one else self._abar(0)
        ab, ab_prev = self._abar(t), (self._abar(t_prev) if t_prev >= 0 else final)
        eps, x0 = self._eps_x0(model_output, sample, ab)
        x0 = self._clip(x0)
        if use_clipped_model_output:
            eps = (sample - ab**0.5 * x0) / (1 - ab) ** 0.5
        prev = ddim_step(x0, eps, ab, ab_prev, eta, generator)
        return SchedulerOutput(prev, x0) if return_dict else (prev, x0)


class DPMSolverMultistepScheduler(_Scheduler):
    """DPM-Solver++ multistep (diffusers.DPMSolverMultistepScheduler with algorithm_type="dpmsolver++")."""

    defaults: ClassVar[dict] = {**_COMMON, "solver_order": 2, "lower_order_final": True, "timestep_spacing": "linspace"}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.config.solver_order not in (1, 2, 3):
            raise choice_error("solver_order", self.config.solver_order, (1, 2, 3))
        if self.config.rescale_betas_zero_snr:  # diffusers keeps the last level finite: alpha_bar = 2^-24
            self.alphas_cumprod = self.alphas_cumprod.clone()
            self.alphas_cumprod[-1] = 2.0**-24

    def set_timesteps(self, num_inference_steps: int, device=None):
        K = self._check_steps(num_inference_steps)
        ts = self._spaced(K, extra=1)
        ab = self.alphas_cumprod[torch.from_numpy(ts)]
        self.sigmas = torch.cat([((1 - ab) / ab).sqrt(), torch.zeros(1, dtype=torch.float64)])  # VE sigmas
        self.timesteps = torch.from_numpy(ts)
        self._x0s, self._levels = [], []

    @staticmethod
    def _level(sigma_ve: float) -> Level:
        alpha = 1.0 / math.sqrt(sigma_ve**2 + 1.0)
        return Level(float("nan"), alpha, sigma_ve * alpha)

    def step(self, model_output, timestep, sample, generator=None, return_dict: bool = True):
        i = self._index(timestep)
        n = len(self.timesteps)
        if i == 0:
            self._x0s, self._levels = [], []
        now, nxt = self._level(float(self.sigmas[i])), self._level(float(self.sigmas[i + 1]))
        x0 = to_x0(self.prediction, model_output, sample, torch.tensor(now.alpha**2, dtype=sample.dtype))
        self._x0s = (self._x0s + [x0])[-3:]
        self._levels = (self._levels + [now])[-3:]
        order = min(len(self._x0s), final_order(self.config.solver_order, i, n, self.config.lower_order_final))
        prev = dpmpp_update(sample, self._x0s, self._levels, nxt, order)
        return SchedulerOutput(prev, x0) if return_dict else (prev,)


class EulerDiscreteScheduler(_Scheduler):
    """Euler on the probability-flow ODE in VE coordinates (diffusers.EulerDiscreteScheduler, s_churn = 0)."""

    defaults: ClassVar[dict] = {**_COMMON, "timestep_spacing": "linspace"}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.config.rescale_betas_zero_snr:  # as diffusers: keep the last VE sigma finite
            self.alphas_cumprod = self.alphas_cumprod.clone()
            self.alphas_cumprod[-1] = 2.0**-24
        self._sigma_table = ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt().numpy()
        self.set_timesteps(self.config.num_train_timesteps)
        self.num_inference_steps = None

    def set_timesteps(self, num_inference_steps: int, device=None):
        K = self._check_steps(num_inference_steps)
        T = self.config.num_train_timesteps
        if self.config.timestep_spacing == "linspace":
            ts = np.linspace(0, T - 1, K)[::-1].copy()  # float times; sigma interpolated linearly in t
        else:
            ts = self._spaced(K).astype(np.float64)
        sigmas = np.interp(ts, np.arange(T), self._sigma_table)
        self.sigmas = torch.from_numpy(np.concatenate([sigmas, [0.0]]))
        self.timesteps = torch.from_numpy(ts.astype(np.float32))

    @property
    def init_noise_sigma(self) -> float:
        s = float(self.sigmas.max())
        return s if self.config.timestep_spacing in ("linspace", "trailing") else math.sqrt(s**2 + 1)

    def scale_model_input(self, sample, timestep=None):
        """VE sample -> the VP input the network was trained on: x / sqrt(sigma^2 + 1)."""
        sigma = float(self.sigmas[self._index(timestep)])
        return sample / math.sqrt(sigma**2 + 1)

    def add_noise(self, original_samples, noise, timesteps):
        """VE forward process x0 + sigma_t noise at the given (scheduled) timesteps."""
        idx = [self._index(t) for t in torch.as_tensor(timesteps).reshape(-1)]
        sigma = self.sigmas[idx].to(original_samples.dtype).reshape(-1, *([1] * (original_samples.dim() - 1)))
        return original_samples + noise * sigma

    def step(self, model_output, timestep, sample, generator=None, return_dict: bool = True):
        i = self._index(timestep)
        s, s_next = float(self.sigmas[i]), float(self.sigmas[i + 1])
        alpha = 1.0 / math.sqrt(s**2 + 1)
        eps, x0 = self._eps_x0(model_output, alpha * sample, alpha**2)  # the network saw x_vp = alpha * x_ve
        prev = euler_step(x0, eps, Level(float(timestep), 1.0, s_next))  # VE level: alpha = 1, sigma = s'
        return SchedulerOutput(prev, x0) if return_dict else (prev, x0)
