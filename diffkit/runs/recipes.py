"""Recipes: data + flags -> the whole RunConfig, before any training (as NVlabs/edm's train.py builds and saves
its config first). Defaults per data kind (presets.py), latent and text settings, and the one table of the
flags a run is configured by, which --resume checks against the run's config.json.

After a recipe returns, nothing edits the RunConfig but the data source recording what it fitted (`fitted`).
"""

from __future__ import annotations

from pathlib import Path

from ..config import OBJECTIVE_TABLE, OBJECTIVES, RunConfig, ScheduleConfig
from ..data.fingerprint import absolute_spec
from ..data.images import is_image_spec, load_images
from ..errors import ConfigError, choice_error
from ..nn import registry
from ..nn.unet import UNetConfig
from ..prediction import PATH_PREDICTIONS
from ..text.encoder import DEFAULT_ENCODER, load_encoder
from .presets import (
    TEXT_LATENT,
    default_foreground_weight,
    default_objective,
    default_sampler,
    default_time_loc,
    image_config,
    own_guidance_interval,
    points_config,
    vae_config,
)
from .sources import BUILTIN, image_spec, settle_classes
from .vae import load_vae

# every flag a diffusion run is configured by -> the RunConfig fields it sets (dotted paths into config.json).
# A new run applies them; --resume compares the given ones with the run's config.json and refuses a difference.
TRAIN_FLAGS = {
    "data": ("data.spec",), "cond": ("data.cond",), "flip": ("data.flip",), "latent": ("data.latent",),
    "pixel": ("data.latent",), "text": ("data.text",),
    "net": ("network.kind",), "dit_size": ("network.width", "network.depth", "network.heads"),
    "patch_size": ("network.patch_size",),
    "channels": ("network.channels",), "channel_mult": ("network.channel_mult",),
    "res_blocks": ("network.num_res_blocks",), "attention": ("network.attention_levels",),
    "attention_keys": ("network.attention_keys",),
    "cross_attention": ("network.cross_attention_levels",), "dropout": ("network.dropout",),
    "schedule": ("schedule.name",), "timesteps": ("schedule.num_timesteps",),
    "zero_terminal_snr": ("schedule.zero_terminal_snr",), "prediction": ("prediction",),
    "objective": ("objective.name",), "time_dist": ("objective.time_dist",), "time_loc": ("objective.time_loc",),
    "time_scale": ("objective.time_scale",), "shift": ("objective.shift",),
    "foreground_weight": ("objective.foreground_weight",), "foreground_band": ("objective.foreground_band",),
    "steps": ("train.steps",), "batch_size": ("train.batch_size",), "lr": ("train.lr",), "seed": ("train.seed",),
    "p_uncond": ("train.p_uncond",), "checkpoint_every": ("train.checkpoint_every",),
    "keep_checkpoints": ("train.keep_checkpoints",),
}
# an autoencoder run's flags (diffkit train-vae), the same way
VAE_FLAGS = {
    "data": ("data.spec",), "factor": ("network.factor",), "latent_channels": ("network.latent_channels",),
    "kl_weight": ("network.kl_weight",), "steps": ("train.steps",), "batch_size": ("train.batch_size",),
    "lr": ("train.lr",), "seed": ("train.seed",),
}
# how a run runs, not what it is: these may differ on every start, --resume included
HOW_FLAGS = ("precision", "threads")
# the U-Net's flags -> UNetConfig fields
UNET_FIELDS = {"channels": "channels", "channel_mult": "channel_mult", "res_blocks": "num_res_blocks",
               "attention": "attention_levels", "attention_keys": "attention_keys",
               "cross_attention": "cross_attention_levels", "dropout": "dropout"}
TRAIN_FIELDS = ("steps", "batch_size", "lr", "seed", "p_uncond", "checkpoint_every", "keep_checkpoints", *HOW_FLAGS)


def default_config(spec: str, *, cond: bool = False, net: str | None = None, dit_size: str = "small",
                   patch_size: int | None = None, latent=None, text: str | None = None,
                   objective: str | None = None) -> RunConfig:
    """The default run for a data set: the MLP for points, a measured U-Net preset for images (net "dit": a
    DiT of the size preset `dit_size`). latent: a VAE run directory; the network is then sized for its
    latents and trains on them. text: a text encoder ("minilm"): condition on the data's captions.
    objective: ddpm, edm or flow with its own defaults; None: the data set's measured default
    (presets.default_objective: flow on the pixels of mnist5k and shapes, ddpm elsewhere)."""
    name = objective or default_objective(spec, latent=latent is not None, text=text is not None)
    if name not in OBJECTIVES:
        raise choice_error("objective", name, OBJECTIVES)
    config = _network_config(spec, cond=cond, net=net, dit_size=dit_size, patch_size=patch_size, latent=latent,
                             objective=name)
    if text is not None:
        config = text_config(config, text)
    if name != "ddpm":
        set_objective(config, name)
        if latent is None and text is None and name == default_objective(spec):  # the data's measured times
            config.objective.time_loc = default_time_loc(spec)
            config.objective.foreground_weight = default_foreground_weight(spec)
            interval = own_guidance_interval(spec)
            if interval is not None:
                config.sampling.guidance_interval = interval
            own = default_sampler(spec)  # and sampler, where it is not the image runs' reference
            if own is not None:
                config.sampling.sampler, config.sampling.steps, options = own
                config.sampling.options = dict(options)
    return config


def _network_config(spec: str, *, cond: bool, net: str | None, dit_size: str, patch_size: int | None,
                    latent, objective: str) -> RunConfig:
    """The data's network and training preset, on the ddpm objective."""
    if latent is not None:
        return latent_config(spec, latent, cond=cond, net=net or "unet", dit_size=dit_size, patch_size=patch_size)
    if is_image_spec(spec):
        data = load_images(spec)
        return image_config(spec, data.shape, cond=cond, net=net or "unet", dit_size=dit_size, patch_size=patch_size)
    if net not in (None, "mlp"):
        raise ConfigError(f"{spec} holds points, which the MLP models; --net {net} is for images")
    return points_config(spec, cond=cond, objective=objective)


def latent_config(spec: str, vae_run, **image_options) -> RunConfig:
    """The default run (presets.image_config) of a data set diffused in the latent space of `vae_run`: the
    network sized for the latents, data.latent the VAE run's absolute path."""
    vae_config_, _ = load_vae(vae_run)
    config = image_config(image_spec(spec), vae_config_.network.latent_shape(vae_config_.fitted.shape),
                          latent=True, **image_options)
    config.data.latent = str(Path(vae_run).resolve())
    return config


def text_config(config: RunConfig, encoder: str = DEFAULT_ENCODER) -> RunConfig:
    """`config` (an image run from default_config) made text-conditional through `encoder`: the network's
    context width is the encoder's; a U-Net cross-attends at every level (UNetConfig.cross_attention_levels None)
    and in its mid block, a DiT in every block."""
    if not is_image_spec(config.data.spec):
        raise ConfigError(f"--text conditions images on captions; {config.data.spec} holds points")
    if registry.kind_of(config.network) not in registry.IMAGE_NETWORKS:
        raise ConfigError("text-to-image trains a U-Net or a DiT")
    name = encoder if encoder == DEFAULT_ENCODER else str(Path(encoder).expanduser().resolve())
    config.data.text = name
    config.network.context_dim = load_encoder(name).dim
    # guidance at every noise level: on shapes at w = 5, all four attributes right 98.1% of the time against
    # 92.0% with the image preset's interval (0.2, 1] (benchmarks/text.py)
    config.sampling.guidance_interval = None
    preset = TEXT_LATENT.get(config.data.spec)
    if preset is not None and config.data.latent is not None and isinstance(config.network, UNetConfig):
        config.network.channels, config.train.steps = preset["channels"], preset["steps"]
    return config


def train_config(flags: dict) -> RunConfig:
    """The RunConfig of `diffkit train` (and the lab's training jobs) from its flags, a dict of TRAIN_FLAGS and
    HOW_FLAGS names (None or absent: not given, the default stays)."""
    def get(key):
        return flags.get(key)

    check_pixel(flags)
    if get("p_uncond") is not None and not (get("cond") or get("text")):
        raise ConfigError("--p-uncond is the label (or prompt) dropout of a conditional model; give --cond or --text")
    if (get("dit_size") or get("patch_size")) and get("net") != "dit":
        raise ConfigError("--dit-size and --patch-size shape a DiT; give --net dit too")
    config = default_config(get("data") or "spiral", cond=bool(get("cond")), net=get("net"),
                            dit_size=get("dit_size") or "small", patch_size=get("patch_size"), latent=get("latent"),
                            text=get("text"), objective=_objective_of(flags))
    _apply_network_flags(config, flags)
    _apply_objective_flags(config, flags)
    if get("schedule") is not None or get("timesteps") is not None or get("zero_terminal_snr"):
        config.schedule = ScheduleConfig(name=get("schedule") or config.schedule.name,
                                         num_timesteps=get("timesteps") or 1000,
                                         zero_terminal_snr=bool(get("zero_terminal_snr")))
    if get("prediction") is not None:
        config.prediction = get("prediction")
    for key in TRAIN_FIELDS:
        if get(key) is not None:
            setattr(config.train, key, get(key))
    config.data.spec = absolute_spec(config.data.spec, BUILTIN)
    return settle_classes(config.validate())


def check_pixel(flags: dict) -> None:
    if flags.get("pixel") and flags.get("latent") is not None:
        raise ConfigError("--pixel trains on pixels and --latent on a VAE's latents; give one of them")


def pixel_std(spec: str) -> float:
    """The std of an image set's training pixels in [-1, 1], to 3 decimals: EDM's sigma_data (Karras et al. 2022
    take 0.5 for CIFAR-10, whose pixels have about that std). Measured on digits (benchmarks/paths.py --images
    digits): its pixels' std is 0.75, and sigma_data 0.75 against 0.5 took the guided FD at 20 calls from 1.75x to
    1.59x the floor (2,000 samples, dpmpp-2m, w = 3)."""
    return round(float((load_images(spec).train * 2.0 - 1.0).std()), 3)


DDPM_ONLY = ("schedule", "timesteps", "zero_terminal_snr")
PATH_ONLY = ("time_dist", "time_loc", "time_scale", "shift")


def set_objective(config: RunConfig, name: str) -> None:
    """Put `config` on the edm or flow objective with that objective's defaults: its path's own
    parametrization, its time distribution, sigma_data from the data (pixels: the training
    images' std in [-1, 1]; 1 for standardized points and unit-variance latents)."""
    o = config.objective
    o.name, o.time_dist = name, OBJECTIVE_TABLE[name][2][0]
    o.time_loc = o.time_scale = None
    o.shift = 1.0
    pixels = is_image_spec(config.data.spec) and config.data.latent is None
    o.sigma_data = pixel_std(config.data.spec) if pixels else 1.0
    config.schedule = ScheduleConfig()
    config.prediction = PATH_PREDICTIONS[o.path_name][0]


def _objective_of(flags: dict) -> str | None:
    """The objective the flags ask for: --objective, else ddpm where a ddpm-only flag (--schedule, --timesteps,
    --zero-terminal-snr) is given, else None (the data set's default)."""
    name = flags.get("objective")
    if name is None and any(flags.get(k) is not None and flags.get(k) is not False for k in DDPM_ONLY):
        return "ddpm"
    return name


def _apply_objective_flags(config: RunConfig, flags: dict) -> None:
    """--objective's flags onto a config already on its objective (default_config): the time distribution and
    its parameters, the shift; each objective's flags refused under another."""
    name = config.objective.name
    foreign = [flag_name(k) for k in (DDPM_ONLY if name != "ddpm" else PATH_ONLY)
               if flags.get(k) is not None and flags.get(k) is not False]
    if foreign:
        owner = "a ddpm schedule" if name != "ddpm" else "the time distribution of a flow or edm objective"
        raise ConfigError(f"{', '.join(foreign)} shape {owner}; the {name} objective does not take them"
                          + (" (give --objective flow or edm)" if name == "ddpm" else ""))
    prediction, allowed = flags.get("prediction"), PATH_PREDICTIONS[config.objective.path_name]
    if flags.get("objective") is None and name != "ddpm" and prediction is not None and prediction not in allowed:
        raise ConfigError(f"--prediction {prediction} does not apply to the {name} objective, {config.data.spec}'s "
                          f"default; it takes {', '.join(allowed)} (or give --objective ddpm)")
    _apply_foreground_flags(config, flags)
    if name == "ddpm":
        return
    o = config.objective
    if flags.get("time_dist") not in (None, o.time_dist):  # another distribution: its own parameters
        o.time_dist, o.time_loc, o.time_scale = flags["time_dist"], None, None
    for key in ("time_loc", "time_scale"):
        if flags.get(key) is not None:
            setattr(o, key, flags[key])
    o.shift = 1.0 if flags.get("shift") is None else flags["shift"]


def _apply_foreground_flags(config: RunConfig, flags: dict) -> None:
    """--foreground-weight and --foreground-band: a flow objective on pixels only (ObjectiveConfig.check refuses
    another objective)."""
    o = config.objective
    for key in ("foreground_weight", "foreground_band"):
        if flags.get(key) is not None:
            setattr(o, key, flags[key])
    if flags.get("foreground_band") is not None and o.foreground_weight == 0:
        raise ConfigError("--foreground-band places --foreground-weight's extra weight; give --foreground-weight "
                          "W > 0 too")
    if o.foreground_weight > 0 and (config.data.latent is not None or not is_image_spec(config.data.spec)):
        what = "a VAE's latents" if config.data.latent is not None else "points"
        raise ConfigError(f"--foreground-weight weighs the foreground pixels of images; this run trains on {what}")


def _apply_network_flags(config: RunConfig, flags: dict) -> None:
    """--flip and the U-Net flags onto an image run's config (refused for points and for a DiT)."""
    given = [k for k in UNET_FIELDS if flags.get(k) is not None]
    net, flip = flags.get("net"), bool(flags.get("flip"))
    if given and net == "dit":
        raise ConfigError(f"{', '.join(flag_name(k) for k in given)} shape the U-Net; a DiT takes "
                          "--dit-size and --patch-size")
    if net != "dit":
        if (given or flip) and not isinstance(config.network, UNetConfig):
            flags_ = [flag_name(k) for k in given] + (["--flip"] if flip else [])
            raise ConfigError(f"{', '.join(flags_)} shape the image U-Net; {config.data.spec} holds points")
        if flags.get("cross_attention") is not None and not flags.get("text"):
            raise ConfigError("--cross-attention places the U-Net's attention to a prompt; give --text too")
        for key in given:
            setattr(config.network, UNET_FIELDS[key], flags[key])
    config.data.flip = flip


def vae_train_config(flags: dict) -> RunConfig:
    """The RunConfig of `diffkit train-vae` from its flags (VAE_FLAGS and HOW_FLAGS names)."""
    spec = flags.get("data")
    if spec is None:
        raise ConfigError("train-vae needs --data: an image set (digits, mnist5k, shapes), a folder or an .npz")
    if not is_image_spec(spec):
        raise ConfigError(f"{spec} is not image data; an autoencoder compresses images (digits, mnist5k, "
                          "shapes, a folder of PNG/JPEG or an image .npz)")
    config = vae_config(spec, load_images(spec).shape, factor=flags.get("factor") or 4,
                        latent_channels=flags.get("latent_channels") or 4)
    for key in ("steps", "batch_size", "lr", "seed", *HOW_FLAGS):
        if flags.get(key) is not None:
            setattr(config.train, key, flags[key])
    if flags.get("kl_weight") is not None:
        config.network.kl_weight = flags["kl_weight"]
    config.data.spec = absolute_spec(config.data.spec, BUILTIN)
    return config.validate()


def flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def given_flags(flags: dict, table: dict) -> list[str]:
    """The table's flags that were given (not None, and not a False switch)."""
    return [k for k in table if flags.get(k) is not None and flags.get(k) is not False]


def resume_conflicts(flags: dict, saved: RunConfig, *, vae: bool = False) -> list[str]:
    """For --resume: each given flag whose value differs from the run's config.json, as '--flag X (the run
    has Y)'. The flags are built into a config as for a new run and compared field by field, so `--data
    spiral --lr 0.002` agrees with a run that has them, and defaults that depend on the data agree too."""
    table = VAE_FLAGS if vae else TRAIN_FLAGS
    given = [k for k in given_flags(flags, table) if k != "steps"]  # train_run checks --steps, saying why
    if not given:
        return []
    given_values = {k: flags.get(k) for k in (*table, *HOW_FLAGS)}
    given_values["data"] = given_values["data"] or saved.data.spec  # `--resume --latent X` alone: the run's data
    fresh = (vae_train_config if vae else train_config)(given_values)
    new, old = _flat(fresh.to_dict()), _flat(saved.to_dict())
    out = []
    for key in given:
        fields = [f for f in table[key] if new.get(f) != old.get(f)]
        if fields:
            shown = ", ".join(f"{f} {old.get(f)!r}" for f in fields)
            out.append(f"{flag_name(key)} {_shown(flags[key])} (the run has {shown})")
    return out


def _shown(value) -> str:
    if value is True:
        return "given"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out
