"""Typed configs, one per concern, saved to and loaded from a run's config.json."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

from .denoiser import Interval, check_guidance_interval
from .devices import PRECISIONS
from .errors import CheckpointError, ConfigError, choice_error
from .nn.mlp import MLPConfig
from .nn.registry import network_from_dict, network_to_dict
from .path import check_shift, path_for
from .prediction import check_prediction, check_prediction_on
from .schedule import NoiseSchedule
from .version import __version__

FORMAT = "diffkit-run"
FORMAT_VERSION = 5  # 2: fitted statistics apart from the data request; tagged network config; 3: precision auto;
# 4: the objective (ddpm, edm, flow); 5: the objective's foreground weight and band

# what a run's samples are: 2-D (or N-D) points, images, or latents of images (through a VAE, data.latent)
DataKind = Literal["points", "images", "latents"]
DATA_KINDS = get_args(DataKind)


@dataclass
class DataConfig:
    """What the user asked for."""

    spec: str = "spiral"            # built-in name, a point file (.npy/.npz/.csv), an image folder or an image .npz
    num_points: int = 50_000        # points drawn for a built-in point data set
    cond: bool = False              # class-conditional: train on the data's labels (network.num_classes from data)
    flip: bool = False              # images: random horizontal flips (opt-in: wrong for digits and text)
    latent: str | None = None       # images: a VAE run directory (absolute); diffuse in its latent space
    text: str | None = None         # images: text-conditional on captions, through this text encoder ("minilm",
                                    # or a local model folder; text/encoder.py)


@dataclass
class FittedStats:
    """What training measured on the data (filled in by training, kept for sampling and resume)."""

    kind: DataKind = "points"
    shape: list | None = None       # one sample's shape: [D] or [C, H, W]
    normalizer: dict | None = None  # Normalizer (mean, std): data -> x0 in the standard range
    # largest |x0| of the normalized training data. E[x0 | x_t] lies in the convex hull of the data, so the
    # Denoiser may clip x0_hat to this box without moving it further away (images: 1, the pixel range).
    x0_bound: float | None = None
    class_names: list | None = None # names of classes 0..C-1 where the data has them
    data_sha256: str | None = None  # content hash of a user data file or folder (checked on resume)
    latent_scale: float | None = None  # latents: 1 / std of the VAE's latents of the train split
    vae_sha256: str | None = None   # latents: checksum of the VAE's weights (checked on resume and sampling)
    pixel_shape: list | None = None # latents: the shape of the images they decode to, [C, H, W]

    @property
    def is_images(self) -> bool:
        """Pixels are what the diffusion sees (not points, not a VAE's latents)."""
        return self.kind == "images"

    @property
    def image_shape(self) -> list | None:
        """The shape of what a sample becomes in the data's space: an image's [C, H, W] (a latent run's
        decoded images), None for points."""
        return {"images": self.shape, "latents": self.pixel_shape}.get(self.kind)


@dataclass
class ScheduleConfig:
    name: str = "linear"
    num_timesteps: int = 1000
    zero_terminal_snr: bool = False

    def build(self) -> NoiseSchedule:
        return NoiseSchedule.from_config(asdict(self))


ObjectiveName = Literal["ddpm", "edm", "flow"]
OBJECTIVES = get_args(ObjectiveName)
TimeDist = Literal["uniform", "logit-normal", "lognormal"]
TIME_DISTS = get_args(TimeDist)
# objective -> (its path, the time distributions it takes, the default one with its (loc, scale))
OBJECTIVE_TABLE = {
    "ddpm": ("vp", ("uniform",), ("uniform", None, None)),            # t ~ U{0..T-1} (Ho et al. 2020)
    "flow": ("flow", ("uniform", "logit-normal"), ("logit-normal", 0.0, 1.0)),  # SD3 (Esser et al. 2024, sec. 3.1)
    "edm": ("edm", ("lognormal",), ("lognormal", -1.2, 1.2)),         # P_mean, P_std (Karras et al. 2022, Table 1)
}


def check_foreground_band(band) -> tuple[float, float]:
    """Two flow times (lo, hi) with 0 <= lo < hi <= 1, as floats; a ConfigError in one sentence otherwise."""
    if not (isinstance(band, (list, tuple)) and len(band) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in band) and 0 <= band[0] < band[1] <= 1):
        raise ConfigError(f"--foreground-band takes two flow times LO,HI with 0 <= LO < HI <= 1 (e.g. 0.4,0.8), "
                          f"got {band!r}")
    return float(band[0]), float(band[1])


@dataclass
class ObjectiveConfig:
    """What a training step minimises, on which Gaussian path (Kingma & Gao 2023): "ddpm" (the discrete VP schedule
    of `schedule`, t uniform), "flow" (rectified flow: the linear path, velocity target) or "edm" (Karras et al.
    2022: variance exploding, preconditioned network, log-normal sigma). The path, parametrization, time
    distribution and loss weight follow from it; the fields say the rest."""

    name: ObjectiveName = "ddpm"
    time_dist: TimeDist = "uniform"   # flow: uniform or logit-normal of tau; edm: lognormal of sigma
    time_loc: float | None = None     # logit-normal / lognormal: mean of the underlying normal
    time_scale: float | None = None   # and its std
    shift: float = 1.0                # flow: SD3's time shift s (training times and the sampling grid)
    sigma_data: float | None = None   # edm: the data's std (recipes: 1 for standardized points, latents; pixels measured)
    # flow on pixels: extra loss weight on the pixels off the black background, at path times tau in the band
    # (training/loss.py: foreground_weighted); 0: none
    foreground_weight: float = 0.0
    foreground_band: tuple[float, float] = (0.4, 0.8)

    def check(self) -> None:
        if self.name not in OBJECTIVES:
            raise choice_error("objective", self.name, OBJECTIVES)
        _, dists, _ = OBJECTIVE_TABLE[self.name]
        if self.time_dist not in TIME_DISTS:
            raise choice_error("time distribution", self.time_dist, TIME_DISTS)
        if self.time_dist not in dists:
            raise ConfigError(f"--time-dist {self.time_dist} does not apply to the {self.name} objective; it takes "
                              f"{', '.join(dists)}")
        for name, v in (("--time-loc", self.time_loc), ("--time-scale", self.time_scale)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise ConfigError(f"{name} is a finite number, got {v!r}")
        if self.time_dist == "uniform" and (self.time_loc is not None or self.time_scale is not None):
            raise ConfigError("--time-loc and --time-scale shape a logit-normal or lognormal time distribution, not "
                              "a uniform one")
        if self.time_scale is not None and not 0 < self.time_scale <= 10:
            raise ConfigError(f"--time-scale is the std of the time distribution's normal, in (0, 10], got "
                              f"{self.time_scale}")
        if self.time_loc is not None and not -10 <= self.time_loc <= 10:
            raise ConfigError(f"--time-loc is the mean of the time distribution's normal, in [-10, 10], got "
                              f"{self.time_loc}")
        check_shift(self.shift)
        if self.shift != 1.0 and self.name != "flow":
            raise ConfigError(f"--shift shifts a flow's times; the {self.name} objective has none")
        if self.sigma_data is not None and not (math.isfinite(self.sigma_data) and self.sigma_data > 0):
            raise ConfigError(f"sigma_data is the data's std, a finite number > 0, got {self.sigma_data}")
        w, band = self.foreground_weight, self.foreground_band
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (math.isfinite(w) and 0 <= w <= 100):
            raise ConfigError(f"--foreground-weight is an extra loss weight in [0, 100] (0: none), got {w!r}")
        self.foreground_band = check_foreground_band(band)
        if w > 0 and self.name != "flow":
            raise ConfigError(f"--foreground-weight weighs a flow objective's loss; the {self.name} objective does "
                              f"not take it (give --objective flow)")

    @property
    def path_name(self) -> str:
        return OBJECTIVE_TABLE[self.name][0]

    def time_params(self) -> tuple[str, float | None, float | None]:
        """(distribution, loc, scale) with the objective's defaults filled in."""
        _, _, (dist, loc, scale) = OBJECTIVE_TABLE[self.name]
        if self.time_dist != dist:
            loc, scale = 0.0, 1.0
        return self.time_dist, (loc if self.time_loc is None else self.time_loc), \
            (scale if self.time_scale is None else self.time_scale)


@dataclass
class ParentConfig:
    """A derived run's parent (DESIGN: derived runs): what it was made from, by path and checksum, and how.
    kind "reflow": a flow trained on (noise, sample) pairs of the teacher's ODE (Liu et al. 2023);
    kind "progressive": a student whose one DDIM step learned two of its teacher's, halving `rounds` times down to
    `steps` (Salimans & Ho 2022); kind "consistency": a consistency model distilled on `levels` noise levels down to
    the VE level `boundary` (Song et al. 2023); kind "lora": the parent's network with rank-`rank` adapters on its
    `targets` layers, trained on new data (Hu et al. 2022); only the adapters are stored."""

    kind: str
    path: str                       # the parent run directory (import: the diffusers folder), absolute
    sha256: str                     # of its model.safetensors (import: the folder's weights) when this run was made
    pairs: int = 0                  # reflow: how many pairs
    sampler: str = "dpmpp-2m"       # reflow: the teacher's ODE solver and its steps
    steps: int = 20                 # reflow: the teacher's ODE steps; progressive: the student's steps K
    guidance: float | None = None   # the teacher's guidance scale (conditional teachers; None: w = 1); a student
                                    # has it folded in and samples at w = 1
    seed: int = 0                   # reflow: the pairs' noises
    rounds: int = 0                 # progressive: halvings, from K * 2^rounds teacher steps down to K
    substeps: int = 1               # progressive: the first round's teacher steps per half interval (DPM-Solver++(2M))
    spacing: str = "time"           # progressive: those steps uniform in "time" or in "log-snr"
    levels: int = 0                 # consistency: the noise levels of the teacher's ODE steps
    boundary: float | None = None   # consistency: s_min, where the consistency function is the identity
    target_ema: float = 0.0         # consistency: the target network's EMA rate (0: the student, stop-gradient)
    guidance_range: list | None = None  # progressive: [lo, hi], the guidance scales w a student reads as an input
                                    # (Meng et al. 2023); it samples at any w in it (default: the midpoint)
    guidance_interval: list | None = None  # progressive, consistency: [lo, hi], the noise levels where the folded-in
                                    # guidance applies (runs/distill.py: folded_interval); None: the teacher's own
    reads: list | None = None       # import of a Stable-Diffusion-style pipeline: the folder's parts the run reads
                                    # when it samples (vae, text_encoder, tokenizer), checked on every load against
                                    # the run's folder record (store/folder.py)
    rank: int = 0                   # lora: the adapters' rank r (nn/lora.py)
    targets: str | None = None      # lora: the layers that take adapters (nn.lora.TARGETS)


# import: a diffusers folder (runs/interop.py); lora: a base run fine-tuned through adapters, finetune: with every
# weight (runs/finetune.py)
KINDS_OF_PARENT = ("reflow", "progressive", "consistency", "import", "lora", "finetune")


@dataclass
class TrainConfig:
    steps: int = 3000               # x batch_size: 3.1M points (~16 s on a 2-core CPU; presets.SHORT_POINTS: 1200)
    batch_size: int = 1024          # a CPU runs 1024 points per step at ~2x the cost of 256: more data per second
    lr: float = 2e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05      # cosine decay ends at lr * min_lr_ratio
    weight_decay: float = 0.0
    grad_clip: float = 1.0          # max global gradient norm
    ema_halflife: float = 50_000    # EMA half-life in training points seen (Karras et al. 2022, sec. C); 0: none
                                    # (model.safetensors then holds the final weights)
    ema_rampup: float = 0.1         # half-life <= this fraction of points seen so far
    p_uncond: float = 0.1           # label dropout to the null class (conditional runs only)
    min_snr_gamma: float = 0.0      # > 0: Min-SNR-gamma loss weights (Hang et al. 2023); 0: L_simple
    seed: int = 0
    # intra-op CPU threads while training; 0: decided on the machine at every start (training/autotune.py:
    # one thread or all the process's cores, whichever runs this run's step clearly faster)
    threads: int = 0
    # autocast of the network: "auto" (bf16 where the device runs it natively and, on a CPU, a probe of this
    # run's step finds it faster; else fp32; decided at every start), "fp32", "bf16" or "fp16" (with a
    # gradient scaler; see devices.py)
    precision: str = "auto"
    checkpoint_every: int = 1000    # steps between checkpoints (the first comes at a tenth of it)
    keep_checkpoints: int = 2       # resumable states kept in train_state/
    log_every: int = 50
    lr_cycles: int = 1              # the warm-up and cosine decay repeat this many times over the steps (a
                                    # progressive student: once per halving round)


@dataclass
class SamplingConfig:
    """Sampling defaults of a run (every one can be overridden when sampling)."""

    # noise levels (sigma_lo, sigma_hi], VE units, where classifier-free guidance applies; w = 1 elsewhere
    # (Kynkaanniemi et al. 2024). None: at every level. Image presets set a measured interval.
    guidance_interval: Interval = None
    # clip x0_hat to the training data's range at every step (points: their bounding box; images: the pixel
    # range [-1, 1]); image presets turn it off (measured, see presets.py)
    clip_x0: bool = True
    # the run's own sampler and steps when none is asked for (None: ddim at its default steps; image presets:
    # dpmpp-2m at 20); a distilled student records the ones it was distilled for
    sampler: str | None = None
    steps: int | None = None
    # the run's own timestep spacing when none is asked for (None: each sampler's default); an imported run
    # records diffusers-<its scheduler's timestep_spacing>, so each sampler takes the timesteps diffusers' would
    spacing: str | None = None
    # options of the run's own sampler, used when it samples with that sampler and not given (image presets: shapes'
    # dpmpp-2m-sde injects noise only at levels <= s_tmax); {}: the sampler's defaults
    options: dict = field(default_factory=dict)


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    network: object = field(default_factory=MLPConfig)  # any registered network config (nn/registry.py)
    prediction: str = "v"
    train: TrainConfig = field(default_factory=TrainConfig)
    fitted: FittedStats = field(default_factory=FittedStats)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    parent: ParentConfig | None = None

    @property
    def reflowed(self) -> bool:
        """A student trained on a teacher's (noise, sample) pairs (runs/reflow.py)."""
        return self.parent is not None and self.parent.kind == "reflow"

    @property
    def distilled(self) -> bool:
        """A student distilled from a teacher to few sampling steps (runs/distill.py)."""
        return self.parent is not None and self.parent.kind in ("progressive", "consistency")

    def path(self) -> NoiseSchedule:
        """The run's Gaussian path as the samplers see it: the VP schedule (ddpm), or a flow / EDM path (path.py)."""
        o = self.objective
        if o.name == "ddpm":
            return self.schedule.build()
        return path_for(o.name, num_timesteps=self.schedule.num_timesteps, shift=o.shift, sigma_data=o.sigma_data or 1.0)

    def x0_clip(self, clip: bool | None = None) -> float | None:
        """The bound x0_hat is clipped to when sampling: the fitted x0 bound if clip (None: sampling.clip_x0)."""
        return self.fitted.x0_bound if (self.sampling.clip_x0 if clip is None else clip) else None

    def validate(self) -> RunConfig:
        check_prediction(self.prediction)
        self.objective.check()
        check_prediction_on(self.objective.path_name, self.prediction, self.objective.name)
        if self.objective.name != "ddpm":
            if self.train.min_snr_gamma > 0:
                raise ConfigError(f"Min-SNR weighting is for the ddpm objective; {self.objective.name} weights its "
                                  "loss its own way")
            if self.schedule.name != "linear" or self.schedule.zero_terminal_snr:
                raise ConfigError(f"--schedule and --zero-terminal-snr choose a ddpm schedule; the "
                                  f"{self.objective.name} objective has its own path")
        if self.parent is not None and self.parent.kind not in KINDS_OF_PARENT:
            raise choice_error("kind of parent run", self.parent.kind, KINDS_OF_PARENT)
        span = self.parent.guidance_range if self.parent is not None else None
        if span is not None and not (isinstance(span, (list, tuple)) and len(span) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in span) and 0 <= span[0] < span[1]):
            raise ConfigError(f"parent.guidance_range must be [lo, hi] with 0 <= lo < hi, got {span!r}")
        if self.parent is not None:
            check_guidance_interval(self.parent.guidance_interval, "parent.guidance_interval")
        if self.fitted.kind not in DATA_KINDS:
            raise choice_error("fitted data kind", self.fitted.kind, DATA_KINDS)
        self.schedule.build()
        if self.schedule.zero_terminal_snr and self.prediction == "epsilon":
            raise ConfigError("a zero-terminal-SNR schedule cannot be trained with epsilon prediction (x0 is not "
                              "recoverable from eps at alpha_bar = 0); use --prediction v or x0")
        t = self.train
        for name in ("steps", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every", "lr_cycles"):
            if getattr(t, name) <= 0:
                raise ConfigError(f"{name.replace('_', ' ')} must be a positive integer, got {getattr(t, name)}")
        if t.lr_cycles > t.steps:
            raise ConfigError(f"{t.lr_cycles} learning-rate cycles do not fit in {t.steps} steps")
        if t.precision not in PRECISIONS:
            raise choice_error("training precision", t.precision, PRECISIONS)
        if t.threads < 0:
            raise ConfigError(f"threads must be >= 0 (0: decided on the machine at each start), got {t.threads}")
        if not t.ema_halflife >= 0:
            raise ConfigError(f"ema_halflife must be >= 0 (0: no averaging), got {t.ema_halflife}")
        if not isinstance(self.sampling.clip_x0, bool):
            raise ConfigError(f"sampling.clip_x0 must be true or false, got {self.sampling.clip_x0!r}")
        if not t.lr > 0:
            raise ConfigError(f"the learning rate must be positive, got {t.lr}")
        if not t.min_snr_gamma >= 0:
            raise ConfigError(f"min_snr_gamma must be >= 0 (0 turns the Min-SNR weighting off), got {t.min_snr_gamma}")
        if not 0 <= t.p_uncond < 1:
            raise ConfigError(f"p_uncond (the label dropout rate) must be in [0, 1), got {t.p_uncond}")
        if self.network.num_classes and not self.data.cond:
            raise ConfigError("network.num_classes > 0 is set from the data's labels; set data.cond instead")
        if self.data.text and self.data.cond:
            raise ConfigError("--text and --cond are two kinds of conditioning (prompts, class labels); choose one")
        if bool(self.data.text) != bool(getattr(self.network, "context_dim", 0)):
            raise ConfigError("a text run needs a network with cross-attention (context_dim > 0, set from the text "
                              "encoder), and only a text run has one; runs.default_config(..., text=...) sets it")
        check_sampling_options(self.sampling)
        self.sampling.guidance_interval = check_guidance_interval(self.sampling.guidance_interval,
                                                                  "sampling.guidance_interval")
        if hasattr(self.network, "check"):
            self.network.check()
        self.network.num_timesteps = self.schedule.num_timesteps
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["network"] = network_to_dict(self.network)
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "diffkit_version": __version__, **d}

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise CheckpointError("config.json is not a diffkit run config; expected one written by `diffkit train`")
        if d.get("format_version", 0) > FORMAT_VERSION:
            raise CheckpointError(f"config.json has format version {d.get('format_version')}; "
                                  f"this diffkit reads up to {FORMAT_VERSION}")
        try:
            if d.get("format_version", 0) < 2:  # version 1 kept the fitted statistics inside "data"
                data = dict(d["data"])
                fitted = {k: data.pop(k) for k in ("normalizer", "x0_bound", "class_names") if k in data}
                shape = [d["network"].get("dim", 2)] if fitted.get("normalizer") else None
                d = {**d, "data": data, "fitted": {"kind": "points", "shape": shape, **fitted}}
            if d.get("format_version", 0) < 3 and d["train"].get("precision") == "bf16":
                # version 2 wrote the image presets' bf16 default into every image run, asked for or not; it is
                # read as auto, so such a run resumed on a CPU without native bf16 is not slowed down by it
                d = {**d, "train": {**d["train"], "precision": "auto"}}
            return cls(data=_build(DataConfig, d["data"]), schedule=_build(ScheduleConfig, d["schedule"]),
                       network=network_from_dict(d["network"]), prediction=d["prediction"],
                       train=_build(TrainConfig, d["train"]), fitted=_build(FittedStats, d["fitted"]),
                       sampling=_build(SamplingConfig, d.get("sampling", {})),
                       objective=_build(ObjectiveConfig, d.get("objective", {})),
                       parent=_build(ParentConfig, d["parent"]) if d.get("parent") else None).validate()
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"config.json is incomplete or malformed ({e}); expected one written by `diffkit train`") from None


def check_sampling_options(sampling: SamplingConfig) -> None:
    """sampling.options: a mapping of option names to numbers, for a run that names its own sampler (which options a
    sampler takes is checked when it runs)."""
    opts = sampling.options
    if not isinstance(opts, dict) or not all(isinstance(k, str) and isinstance(v, (int, float))
                                             and not isinstance(v, bool) for k, v in opts.items()):
        raise ConfigError(f"sampling.options must map option names to numbers, got {opts!r}")
    if opts and sampling.sampler is None:
        raise ConfigError("sampling.options are the options of the run's own sampler; set sampling.sampler too")


def _build(kind, values: dict):
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = set(values) - known
    if unknown:
        raise TypeError(f"unknown {kind.__name__} keys {sorted(unknown)}")
    return kind(**values)
