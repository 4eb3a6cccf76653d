"""Reading diffusers' files as saved by save_pretrained: JSON configs, safetensors weights (never a pickle), and
a scheduler config mapped exactly onto diffkit's schedule, prediction and timestep spacing, or refused by name
(runs/interop.py and runs/interop_sd.py import through here; runs/export_diffusers.py writes the same names)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..config import ObjectiveConfig, ScheduleConfig
from ..errors import ConfigError, notice
from ..store.folder import file_sha256

WEIGHTS = "diffusion_pytorch_model.safetensors"
EXPORT_RECORD = "diffkit.json"  # beside model_index.json in a folder diffkit exported: what its configs cannot say
PICKLED = ("diffusion_pytorch_model.bin", "pytorch_model.bin")
# diffusers' beta schedules with diffkit's name for them, at the beta range diffkit builds them with
BETAS = {("linear", 0.0001, 0.02): "linear", ("scaled_linear", 0.00085, 0.012): "scaled_linear",
         ("squaredcos_cap_v2", None, None): "cosine"}
PREDICTIONS = {"epsilon": "epsilon", "v_prediction": "v", "sample": "x0"}
# scheduler keys read below, and keys that may be there at any value because they do not change the model
READ = {"num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "prediction_type", "trained_betas",
        "rescale_betas_zero_snr", "clip_sample", "clip_sample_range", "timestep_spacing", "steps_offset",
        "set_alpha_to_one", "thresholding"}
NEUTRAL = {"variance_type", "dynamic_thresholding_ratio", "sample_max_value", "solver_order", "algorithm_type",
           "solver_type", "lower_order_final", "use_karras_sigmas", "interpolation_type", "timestep_type",
           "skip_prk_steps", "final_sigmas_type", "euler_at_final", "lambda_min_clipped"}


def read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not a readable JSON {what} ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} holds a JSON {type(data).__name__}, not a {what}")
    return data


def safetensors_path(folder: Path, name: str = WEIGHTS) -> Path:
    """A model folder's weights file, or a refusal: a pickle is never loaded (unpickling can run code)."""
    path = folder / name
    if not path.is_file():
        pickled = [p for p in PICKLED if (folder / p).is_file()]
        if pickled:
            raise ConfigError(f"{folder} has its weights only as a pickle ({pickled[0]}), which diffkit never loads "
                              "(unpickling can run code); save the model with safe_serialization=True")
        raise ConfigError(f"{folder} has no {name}")
    return path


def read_weights(folder: Path, name: str = WEIGHTS) -> tuple[dict[str, torch.Tensor], str]:
    """(the weights of a model folder, their file's sha256); safetensors only."""
    path = safetensors_path(folder, name)
    try:
        weights = load_file(path)
    except (SafetensorError, OSError) as e:
        raise ConfigError(f"{path} is not a readable safetensors file ({e})") from None
    return weights, file_sha256(path)  # streamed: a multi-GB U-Net is not held twice in memory


def model_config(folder: Path, expected: str | tuple[str, ...], what: str) -> dict:
    """A model folder's config.json, refused unless it is the diffusers class `expected` (or one of them)."""
    config = read_json(folder / "config.json", "model config")
    name = config.get("_class_name")
    expected = (expected,) if isinstance(expected, str) else expected
    if name not in expected:
        raise ConfigError(f"{folder} holds a {name}; diffkit imports a {' or a '.join(expected)} ({what})")
    return config


# FlowMatchEulerDiscreteScheduler: the keys read (each at the one value diffkit's flow takes), and those that act
# only through a key read (dynamic shifting's)
FLOW = "FlowMatchEulerDiscreteScheduler"
FLOW_FIXED = {"shift": 1.0, "use_dynamic_shifting": False, "invert_sigmas": False, "shift_terminal": None,
              "use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False,
              "stochastic_sampling": False}
FLOW_NEUTRAL = {"base_shift", "max_shift", "base_image_seq_len", "max_image_seq_len", "time_shift_type"}


def read_scheduler(path: Path, unet: dict, flow: bool = True) -> dict:
    """diffkit's schedule, prediction, sampling defaults (and objective) for a diffusers scheduler config, or a
    refusal that names the setting it cannot represent. flow: a FlowMatchEulerDiscreteScheduler is read too."""
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; a model folder needs its scheduler_config.json beside config.json")
    cfg = read_json(path, "scheduler config")
    if cfg.get("_class_name") == FLOW:
        if not flow:
            raise ConfigError(f"{path}: a {FLOW} is read for UNet2DModel folders; this pipeline's is not imported")
        return read_flow_scheduler(path, cfg)
    refuse_unknown(path, cfg, READ | NEUTRAL)
    for key, ok in (("trained_betas", None), ("thresholding", False)):
        if cfg.get(key, ok) not in (ok,):
            raise ConfigError(f"{path}: {key} = {cfg[key]!r} is not representable in diffkit yet (it takes {ok!r})")
    offset = cfg.get("steps_offset", 0)
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 100:
        raise ConfigError(f"{path}: steps_offset {offset!r} is not a small integer >= 0")
    if not cfg.get("set_alpha_to_one", True):
        # DDIM / PNDM then stop one level short of the data, at alpha_bar_0 (diffusers' DPM-Solver and Euler
        # schedulers ignore the key); every diffkit sampler ends at x_0
        notice(f"{path} sets set_alpha_to_one false: diffusers' DDIM and PNDM stop their last step at alpha_bar_0 "
               "instead of clean data; diffkit's samplers, like diffusers' DPM-Solver and Euler, end at clean data")
    kind = cfg.get("beta_schedule", "linear")
    start, end = (None, None) if kind == "squaredcos_cap_v2" else (cfg.get("beta_start", 0.0001),
                                                                   cfg.get("beta_end", 0.02))
    if (kind, start, end) not in BETAS:
        raise ConfigError(f"{path}: beta_schedule {kind!r} with beta_start {start}, beta_end {end} is not one of "
                          f"diffkit's schedules ({', '.join(f'{k} {a}..{b}' for k, a, b in BETAS)})")
    prediction = cfg.get("prediction_type", "epsilon")
    if prediction not in PREDICTIONS:
        raise ConfigError(f"{path}: prediction_type {prediction!r} is not one of {', '.join(PREDICTIONS)}")
    clip = bool(cfg.get("clip_sample", True))
    if clip and cfg.get("clip_sample_range", 1.0) != 1.0:
        raise ConfigError(f"{path}: clip_sample_range {cfg['clip_sample_range']} is not representable (diffkit clips "
                          "x0_hat to the pixel range [-1, 1])")
    spacing = cfg.get("timestep_spacing", "leading")
    if spacing not in ("leading", "trailing", "linspace"):
        raise ConfigError(f"{path}: timestep_spacing {spacing!r} is not one of leading, trailing, linspace")
    schedule = ScheduleConfig(name=BETAS[(kind, start, end)],
                              num_timesteps=train_timesteps(path, cfg),
                              zero_terminal_snr=bool(cfg.get("rescale_betas_zero_snr", False)))
    own = f"diffusers-{spacing}" + (f"+{offset}" if offset and spacing == "leading" else "")  # (as diffusers)
    return {"schedule": schedule, "prediction": PREDICTIONS[prediction], "clip": clip, "spacing": own}


def read_flow_scheduler(path: Path, cfg: dict) -> dict:
    """A FlowMatchEulerDiscreteScheduler as diffkit's flow objective (the linear path; the network predicts the
    velocity eps - x0 at training time 1000 tau, as diffkit's export writes it): shift 1 and its plain sigmas only."""
    refuse_unknown(path, cfg, {"num_train_timesteps", *FLOW_FIXED, *FLOW_NEUTRAL})
    for key, ok in FLOW_FIXED.items():
        v = cfg.get(key, ok)
        if key == "shift_terminal" and not isinstance(v, bool) and v == 0:
            v = None  # diffusers: a shift_terminal of 0 is off, as None is
        if not _takes(v, ok):
            raise ConfigError(f"{path}: {key} = {json.dumps(v)} is not representable in diffkit yet (it takes "
                              f"{json.dumps(ok)})")
    steps = train_timesteps(path, cfg)
    if steps != 1000:  # the U-Net sees num_train_timesteps x sigma there, 1000 tau in diffkit (path.FlowPath)
        raise ConfigError(f"{path}: num_train_timesteps {steps} is not representable for a flow: diffkit's flow "
                          "network sees timestep 1000 tau (it takes 1000)")
    return {"schedule": ScheduleConfig(name="linear", num_timesteps=steps), "prediction": "flow", "clip": False,
            "spacing": "diffusers-linspace", "objective": ObjectiveConfig(name="flow")}


def _takes(v, ok) -> bool:
    """v is the value diffkit takes: the same bool or None, or an equal number (a bool is no number here)."""
    if ok is None or isinstance(ok, bool):
        return v is ok
    return not isinstance(v, bool) and v == ok


def refuse_unknown(path: Path, cfg: dict, known) -> None:
    """Refuse a scheduler config with keys diffkit does not read (nor knows to be neutral), naming them."""
    unknown = sorted(k for k in cfg if not k.startswith("_") and k not in known)
    if unknown:
        raise ConfigError(f"{path}: diffkit cannot represent {', '.join(unknown)}")


def train_timesteps(path: Path, cfg: dict) -> int:
    """A scheduler config's num_train_timesteps (default 1000), a whole number in 1..100000 or refused."""
    steps = cfg.get("num_train_timesteps", 1000)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 100_000:
        raise ConfigError(f"{path}: num_train_timesteps {steps!r} is not a whole number in 1..100000")
    return steps


def load_checked(module: torch.nn.Module, weights: dict[str, torch.Tensor], where) -> None:
    """Load weights into the module their config built, or a refusal naming the first mismatch."""
    try:
        module.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        first = str(e).split("\n")[1].strip() if "\n" in str(e) else str(e)
        raise ConfigError(f"{where}: the weights do not match their config.json ({first})") from None


def read_export_record(folder: Path, class_embeds: int) -> dict | None:
    """The conditioning diffkit recorded when it exported `folder` (runs/export_diffusers.py: export_record), checked
    against the U-Net's num_class_embeds: {num_classes, p_uncond, class_names, guidance_interval}; None where there is
    no record or the U-Net has no class embeddings. A record that does not fit the folder is refused in one sentence."""
    path = folder / EXPORT_RECORD
    if not path.is_file() or not class_embeds:
        return None
    r = read_json(path, "diffkit export record")
    k, names, interval, p = r.get("num_classes"), r.get("class_names"), r.get("guidance_interval"), r.get("p_uncond")
    fits = (isinstance(k, int) and not isinstance(k, bool) and k + 1 == class_embeds and r.get("null_class") == k
            and isinstance(p, (int, float)) and 0 <= p < 1
            and isinstance(names, list) and len(names) == k and all(isinstance(n, str) for n in names)
            and (interval is None or (isinstance(interval, list) and len(interval) == 2
                                      and all(isinstance(v, (int, float)) for v in interval)
                                      and interval[0] < interval[1])))
    if not fits:
        raise ConfigError(f"{path} does not fit this folder (its U-Net has {class_embeds} class embeddings: the record "
                          f"needs num_classes {class_embeds - 1}, null_class the same, p_uncond in [0, 1), that many "
                          f"class names and a guidance interval LO < HI or null); remove it to import the U-Net's "
                          f"{class_embeds} classes without a null class")
    return {"num_classes": k, "p_uncond": float(p), "class_names": names,
            "guidance_interval": tuple(interval) if interval else None}
