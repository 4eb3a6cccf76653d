"""Denoiser: the one contract between a network and a sampler.

    denoiser(x_t, t, cond=None) -> (eps_hat, x0_hat)

It owns the prediction-type conversion, classifier-free guidance and optional x0 clipping.
Any callable `network(x_t, t)` or `network(x_t, t, cond)` returning its prediction can be wrapped.
"""

from __future__ import annotations

import math

import torch

from .cond import cat_conds, slice_cond, split_negative, with_guidance
from .errors import ConfigError
from .prediction import (
    check_prediction,
    score_from_eps,
    to_boundary,
    to_eps_x0,
    to_eps_x0_on_path,
)
from .schedule import NoiseSchedule

# the noise levels (sigma_lo, sigma_hi] where guidance applies, None for every level: the one form this setting
# has from the parser to the Denoiser (Kynkaanniemi et al. 2024)
Interval = tuple[float, float] | None


def check_guidance_interval(value, name: str = "the guidance interval") -> Interval:
    """(low, high) noise levels with 0 <= low < high, or None; a ConfigError naming `name` otherwise."""
    if value is None:
        return None
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value) and 0 <= value[0] < value[1]
    if not ok:
        raise ConfigError(f"{name} must be two noise levels [low, high] with 0 <= low < high, got {value!r}")
    return float(value[0]), float(value[1])


class Denoiser:
    """Wraps a network predicting `prediction` under `schedule`.

    Args:
        network: callable (x_t [B, ...], t float [B], cond | None) -> prediction [B, ...].
        schedule: the NoiseSchedule the network was trained with.
        prediction: "epsilon", "x0" or "v".
        conditioning: the cond kind (diffkit.cond.ClassConditioning, TokenConditioning) that owns the null
            condition; needed for guidance.
        guidance_scale: w in eps_uncond + w (eps_cond - eps_uncond) (Ho & Salimans 2022, eq. 6); a cond carrying
            a negative condition (cond.with_negative) guides away from it: eps_neg in eps_uncond's place.
        guidance_interval: (sigma_lo, sigma_hi): apply the guidance scale only at noise levels sigma_lo < sigma_ve
            <= sigma_hi (VE units, data standard deviations) and the plain conditional model (w = 1) elsewhere
            (Kynkaanniemi et al. 2024, 'Applying Guidance in a Limited Interval Improves Sample and Distribution
            Quality'). None: everywhere.
        clip_x0: if set, clamp x0_hat to [-clip_x0, clip_x0] and recompute eps_hat from it.
        chunk: largest batch sent to the network in one call; bigger batches are split (to bound memory or
            keep activations in cache). None: never split.
        boundary: a consistency model's s_min (VE units): x0_hat becomes f = x0_hat + s_min eps_hat
            (prediction.to_boundary; Song et al. 2023). None: a plain denoiser.
        guidance_input: the network reads w inside its cond (a guidance-distilled student, Meng et al. 2023):
            a guided step is one call with w given, not the two of classifier-free guidance.

    It decides nothing about gradients (samplers run under no_grad; likelihoods and gradient guidance need
    them) and keeps everything on x_t's device. Time reaches the network as float32 (float64 for float64 x):
    bf16 cannot hold t = 999.
    """

    def __init__(self, network, schedule: NoiseSchedule, prediction: str = "epsilon", *,
                 conditioning=None, guidance_scale: float = 1.0, guidance_interval: Interval = None,
                 clip_x0: float | None = None, chunk: int | None = None, boundary: float | None = None,
                 guidance_input: bool = False):
        self.network = network
        self.schedule = schedule
        self.prediction = check_prediction(prediction)
        self.conditioning = conditioning
        if not math.isfinite(guidance_scale) or guidance_scale < 0:
            raise ConfigError(f"the guidance scale must be a finite number >= 0, got {guidance_scale}")
        self.guidance_scale = float(guidance_scale)
        self.guidance_interval = check_guidance_interval(guidance_interval)
        self.clip_x0 = clip_x0
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk <= 0):
            raise ConfigError(f"chunk must be a positive batch size or None, got {chunk!r}")
        self.chunk = chunk
        self.boundary = boundary
        self.guidance_input = guidance_input
        # a flow / EDM path (path.py): the network sees the path's own x and time (an oracle sees the VP view)
        self.on_path = getattr(schedule, "path", "vp") != "vp"

    def _arguments(self) -> dict:
        return {"network": self.network, "schedule": self.schedule, "prediction": self.prediction,
                "conditioning": self.conditioning, "guidance_scale": self.guidance_scale,
                "guidance_interval": self.guidance_interval, "clip_x0": self.clip_x0, "chunk": self.chunk,
                "boundary": self.boundary, "guidance_input": self.guidance_input}

    def replace(self, **changes) -> Denoiser:
        """A copy with some constructor arguments changed (and checked), e.g. replace(guidance_scale=3.0)."""
        return Denoiser(**{**self._arguments(), **changes})

    def score(self, x_t: torch.Tensor, t, cond=None) -> torch.Tensor:
        """grad_x log q(x_t) = -eps_hat / sqrt(1 - alpha_bar_t) (Song et al. 2021, sec. 3.2; Vincent 2011);
        guided: the score of the guided eps. Undefined (infinite) at t = -1."""
        eps_hat, _ = self(x_t, t, cond)
        t = torch.as_tensor(t, dtype=torch.float64).reshape(-1)
        alpha_bar = self.schedule.alpha_bar_at(t).to(x_t.device)  # float64: 1 - alpha_bar near t = 0
        alpha_bar = alpha_bar[0] if len(t) == 1 else alpha_bar.reshape(-1, *([1] * (x_t.dim() - 1)))
        return score_from_eps(eps_hat, alpha_bar).to(x_t.dtype)

    def _forward(self, x_t, t, cond, w):
        n = x_t.shape[0]
        if self.chunk is None or n <= self.chunk:
            return self._forward_batch(x_t, t, cond, w)
        parts = [self._forward_batch(x_t[i:i + self.chunk], t[i:i + self.chunk], slice_cond(cond, i, i + self.chunk),
                                     w[i:i + self.chunk] if isinstance(w, torch.Tensor) else w)
                 for i in range(0, n, self.chunk)]
        return torch.cat(parts)

    def scale_at(self, alpha_bar: float) -> float:
        """The guidance scale in effect at a noise level (1 outside the guidance interval)."""
        if self.guidance_interval is None:
            return self.guidance_scale
        sigma_ve = math.sqrt((1 - alpha_bar) / alpha_bar) if alpha_bar > 0 else math.inf
        lo, hi = self.guidance_interval
        return self.guidance_scale if lo < sigma_ve <= hi else 1.0

    def _forward_batch(self, x_t, t, cond, w):
        if cond is None:
            return self.network(x_t, t)
        cond, negative = split_negative(cond)  # a negative prompt or class takes the null's place below
        if self.guidance_input:  # one call, w inside the cond (per row where the interval varies by row)
            if negative is not None:
                raise ConfigError("this student has guidance folded in (one call per step, against the null "
                                  "condition), so it cannot take a negative prompt or class")
            return self.network(x_t, t, with_guidance(cond, w.reshape(-1) if isinstance(w, torch.Tensor) else w))
        if isinstance(w, float) and w == 1.0:
            return self.network(x_t, t, cond)
        if self.conditioning is None:
            raise ConfigError("guidance needs the model's null condition; this Denoiser was built without a conditioning")
        null = self.conditioning.null(cond) if negative is None else negative
        if isinstance(w, float) and w == 0.0:
            return self.network(x_t, t, null)
        # one batched forward for cond and uncond (twice the batch). Mixing network outputs equals mixing
        # eps: eps is a x_t + b * output for every prediction type, and the two weights sum to one.
        out = self.network(torch.cat([x_t, x_t]), torch.cat([t, t]), cat_conds(cond, null))
        out_cond, out_uncond = out.chunk(2)
        return out_uncond + w * (out_cond - out_uncond)

    def __call__(self, x_t: torch.Tensor, t, cond=None):
        t = torch.as_tensor(t, dtype=torch.float64).reshape(-1)  # schedule arithmetic on the CPU in float64
        # one level for the whole batch (every sampler): one alpha_bar, broadcast as a 0-d tensor
        alpha_bar64 = self.schedule.alpha_bar_at(t)
        alpha_bar = alpha_bar64.to(x_t.device, x_t.dtype)
        if len(t) == 1:
            alpha_bar = alpha_bar[0]
            w = self.scale_at(float(alpha_bar64[0]))
        else:
            alpha_bar = alpha_bar.reshape(-1, *([1] * (x_t.dim() - 1)))  # [B, 1, ...]
            w = self.guidance_scale
            if self.guidance_interval is not None:  # per-row times: per-row scales
                scales = torch.tensor([self.scale_at(a) for a in alpha_bar64.tolist()], dtype=x_t.dtype)
                w = scales.to(x_t.device).reshape(alpha_bar.shape)
        time_dtype = torch.float64 if x_t.dtype == torch.float64 else torch.float32
        if self.on_path:  # flow / EDM (path.py): the network sees the path's own x and time
            eps_hat, x0_hat = self._on_path(x_t, t, cond, w, time_dtype)
        else:
            # a shared time is expanded (stride 0): networks may read that as "one time for the batch" with no sync
            output = self._forward(x_t, t.to(x_t.device, time_dtype).expand(x_t.shape[0]), cond, w)
            eps_hat, x0_hat = to_eps_x0(self.prediction, output, x_t, alpha_bar)
        if self.clip_x0 is not None:
            x0_hat = x0_hat.clamp(-self.clip_x0, self.clip_x0)
            eps_hat = (x_t - alpha_bar.sqrt() * x0_hat) / (1 - alpha_bar).sqrt()
        if self.boundary is not None:
            eps_hat, x0_hat = to_boundary(eps_hat, x0_hat, alpha_bar, self.boundary)
        return eps_hat, x0_hat


    def _on_path(self, x_vp, t, cond, w, time_dtype):
        """(eps_hat, x0_hat) on a path of path.py: x_vp (the samplers' VP view) is scaled back to the path's
        x = alpha x0 + sigma eps (EDM: and by c_in for the network's input), the network sees the path's time."""
        path = self.schedule

        def col(v):  # float64 [B] or [1] -> broadcastable over x, in x's dtype and device
            v = v.to(x_vp.device, x_vp.dtype)
            return v[0] if len(v) == 1 else v.reshape(-1, *([1] * (x_vp.dim() - 1)))

        alpha, sigma = path.path_scales(t)
        x = x_vp * col(torch.sqrt(alpha**2 + sigma**2))
        x_in = x * col(path.input_scale(t))
        t_net = path.network_time(t).to(x_vp.device, time_dtype).expand(x_vp.shape[0])
        output = self._forward(x_in, t_net, cond, w)
        return to_eps_x0_on_path(self.prediction, output, x, col(alpha), col(sigma), getattr(path, "sigma_data", None))


def score(denoiser: Denoiser, x_t: torch.Tensor, t, cond=None) -> torch.Tensor:
    """The score grad_x log q(x_t) a Denoiser implies (trained: -eps_hat / sigma_t; an oracle: exact)."""
    return denoiser.score(x_t, t, cond)
