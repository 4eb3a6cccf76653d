"""The library's front door: train a run directory, sample from it, evaluate samples.

The CLI and the benchmarks are thin layers over these three functions.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from .cond import class_id, class_labels, to_device
from .config import DataConfig, RunConfig
from .data.fingerprint import absolute_spec, check_unchanged, content_hash
from .data.images import IMAGE_DATASETS, is_image_spec, load_images
from .data.labeled import CLASS_NAMES, LABELED_MAKERS
from .data.normalize import Normalizer
from .data.points import DATASETS, PointSource, _check_spec
from .data.source import TensorSource
from .devices import module_device, randn
from .errors import CheckpointError, ConfigError, DataError, StorageError, TrainingInterrupted, notice
from .memory import require_memory
from .metrics.points import evaluate_points
from .nn import registry
from .nn.mlp import MLPConfig
from .presets import image_config
from .sampling import sample as run_sampler
from .training.checkpoint import CONFIG, MODEL, STATE_DIR, Run, checkpoint_steps, load_run, read_config
from .training.lock import RunLock
from .training.distributed import Runtime
from .training.trainer import LOG, Trainer

RUN_FILES = (CONFIG, MODEL, STATE_DIR, LOG)
BUILTIN = (*DATASETS, *IMAGE_DATASETS)  # data names that are not user paths
FEW_POINTS = 100  # a point file smaller than this gets a notice


def is_run_dir(path) -> bool:
    return any((Path(path) / f).exists() for f in RUN_FILES)


def train_run(config: RunConfig | None, out, *, resume: bool = False, overwrite: bool = False,
              steps: int | None = None, progress: bool = True, callback=None, runtime: Runtime | None = None) -> dict:
    """Train into `out`. resume: continue `out` from its newest checkpoint, to the steps its config.json set
    (`steps`, when given, must agree). overwrite: train into a new folder beside `out` and swap it in at its
    first checkpoint (the old run survives an interruption before that). Never silently replaces a run.
    runtime: device, micro-batching, compile and this process's rank (training.distributed.start); only rank 0
    writes, the other ranks train alongside it."""
    out, runtime = Path(out), runtime or Runtime()
    if out.exists() and not out.is_dir():
        raise StorageError(f"{out} is a file, not a folder; give --out a folder name (new, or a run to resume)")
    if resume:
        return _resume(out, steps, progress, callback, runtime)
    config = (config or RunConfig()).validate()
    config.data.spec = absolute_spec(config.data.spec, BUILTIN)
    if not is_run_dir(out):
        trainer = make_trainer(config, out, progress=progress, callback=callback, runtime=runtime)
        return {**trainer.train(), "run_dir": str(out), "final_step": trainer.step}
    if not overwrite:
        if not checkpoint_steps(out) and not (out / MODEL).exists():
            raise CheckpointError(f"{out} holds a run that stopped before its first checkpoint; pass --resume to "
                                  "start it again from step 0 or --overwrite to replace it")
        raise CheckpointError(f"{out} already holds a run; pass --overwrite to replace it or --resume to continue it")
    if not runtime.is_main:  # rank 0 swaps the new run in; the others only train beside it
        trainer = make_trainer(config, out, progress=progress, callback=callback, runtime=runtime)
        return {**trainer.train(), "run_dir": str(out), "final_step": trainer.step}
    return _overwrite(config, out, progress, callback, runtime)


def _resume(out: Path, steps, progress, callback, runtime: Runtime) -> dict:
    # read_config says what is wrong with a missing run; only rank 0 locks (and writes)
    with RunLock(out) if out.is_dir() and runtime.is_main else nullcontext():
        config = read_config(out)
        trainer = make_trainer(config, out, progress=progress, callback=callback, runtime=runtime)
        trainer.lock_held = True
        return _continue(trainer, out, steps)


def _continue(trainer: Trainer, out: Path, steps) -> dict:
    total = trainer.cfg.steps
    if not trainer.load_state():
        notice(f"{out} stopped before its first checkpoint; training starts again from step 0")
    if steps is not None and steps != total:
        raise ConfigError(f"--resume continues this run to its {total} steps (its learning-rate schedule ends "
                          f"there; it has done {trainer.step}); --steps {steps} would make it a different run, so "
                          "start a new run with --steps instead")
    if trainer.step >= total:
        raise ConfigError(f"{out} already finished its {total} steps; sample it, or start a new run with more --steps")
    return {**trainer.train(), "run_dir": str(out), "final_step": trainer.step}


def _overwrite(config: RunConfig, out: Path, progress, callback, runtime: Runtime) -> dict:
    """Train into .OUT.new-PID beside `out`; at the first checkpoint the new folder takes out's place."""
    with RunLock(out):  # nobody may be training in the run being replaced
        new = out.parent / f".{out.name}.new-{os.getpid()}"
        shutil.rmtree(new, ignore_errors=True)
        trainer = make_trainer(config, new, progress=progress, callback=callback, runtime=runtime)
        swapped = []

        def swap(step: int) -> None:
            if swapped:
                return
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            try:
                os.rename(out, old)
                os.rename(new, out)
            except OSError as e:
                raise StorageError(f"could not put the new run in place of {out} ({e.strerror}); it is in {new}") from None
            trainer.run_dir = out
            swapped.append(step)
            shutil.rmtree(old, ignore_errors=True)

        trainer.checkpointed = swap
        try:
            summary = trainer.train()
        except KeyboardInterrupt:
            if not swapped:
                raise TrainingInterrupted(f"stopped before the first checkpoint; {out} still holds the previous run") from None
            raise
        finally:
            if not swapped:
                shutil.rmtree(new, ignore_errors=True)
    return {**summary, "run_dir": str(out), "final_step": trainer.step}


def default_config(spec: str, *, cond: bool = False, net: str | None = None, dit_size: str = "small",
                   patch_size: int | None = None, latent=None, text: str | None = None) -> RunConfig:
    """The default run for a data set: the MLP for points, a measured U-Net preset for images (net "dit": a
    DiT of the size preset `dit_size`). latent: a VAE run directory; the network is then sized for its
    latents and trains on them. text: a text encoder ("minilm"): condition on the data's captions."""
    if text is not None:
        from .text.config import text_config

        return text_config(default_config(spec, cond=cond, net=net, dit_size=dit_size, patch_size=patch_size,
                                          latent=latent), text)
    if latent is not None:
        from .latent import latent_config

        return latent_config(spec, latent, cond=cond, net=net or "unet", dit_size=dit_size, patch_size=patch_size)
    if is_image_spec(spec):
        data = load_images(spec)
        return image_config(spec, data.shape, cond=cond, net=net or "unet", dit_size=dit_size, patch_size=patch_size)
    if net not in (None, "mlp"):
        raise ConfigError(f"{spec} holds points, which the MLP models; --net {net} is for images")
    return RunConfig(data=DataConfig(spec=spec, cond=cond))


def make_trainer(config: RunConfig, out, *, progress: bool = True, callback=None,
                 runtime: Runtime | None = None) -> Trainer:
    """A Trainer on the config's data (and labels, for a conditional run), filling in what training
    measures on the data (config.fitted: kind, shape, normalizer, x0 bound, class names)."""
    return Trainer(config, make_source(config), out, progress=progress, callback=callback, runtime=runtime)


def make_source(config: RunConfig) -> TensorSource:
    """The training source of a run, after filling in (or, on resume, checking) config.fitted."""
    spec, fitted, data = config.data.spec, config.fitted, None
    if config.data.latent is not None:  # images through the VAE: its latents, scaled to unit variance
        from .latent import image_spec, latent_training_data

        data = load_images(image_spec(spec), seed=config.train.seed)
        x, labels, names, normalizer = latent_training_data(config, data)
        kind, x0_bound = "latents", None
    elif is_image_spec(spec):
        data = load_images(spec, seed=config.train.seed)
        x, labels, kind, names = data.train, data.train_labels, "images", data.class_names
        normalizer, x0_bound = Normalizer(mean=[0.5], std=[0.5]), 1.0  # pixels [0, 1] -> [-1, 1]
    else:
        x, labels = PointSource(_check_spec(spec)).train_labeled(config.data.num_points, config.train.seed)
        if len(x) < FEW_POINTS and fitted.normalizer is None:
            notice(f"{spec} holds only {len(x)} points; a model trained on so few mostly memorises them "
                   f"(a few thousand are usual)")
        kind, names = "points", CLASS_NAMES.get(spec)
        normalizer = Normalizer(**fitted.normalizer) if fitted.normalizer else Normalizer.fit(x)
        x0_bound = None
    shape = list(x.shape[1:])
    if spec not in BUILTIN:
        if fitted.data_sha256 is None:
            fitted.data_sha256 = content_hash(spec)
        else:
            check_unchanged(spec, fitted.data_sha256)
    if fitted.shape is not None and (fitted.kind, fitted.shape) != (kind, shape):
        raise DataError(f"{spec} now holds {kind} of shape {shape} but the run was trained on "
                        f"{fitted.kind} of shape {fitted.shape}")
    _check_network(config, kind, shape)
    labels = _conditional_labels(config, labels, names) if config.data.cond else None
    if fitted.normalizer is None:
        fitted.kind, fitted.normalizer = kind, normalizer.to_config()
    if fitted.shape is None:
        fitted.shape = shape
    x0 = torch.from_numpy(Normalizer(**fitted.normalizer).apply(x))
    if fitted.x0_bound is None:
        fitted.x0_bound = x0_bound if x0_bound is not None else float(x0.abs().max())
    if config.data.text:  # the captions of the same images, encoded once
        from .text.data import text_source

        return text_source(config, x0, data)
    return TensorSource(x0, labels, flip=config.data.flip)


def _check_network(config: RunConfig, kind: str, shape: list) -> None:
    net = config.network
    if kind == "latents" and registry.kind_of(net) not in registry.IMAGE_NETWORKS:
        raise ConfigError("latents are diffused by a U-Net or a DiT; an autoencoder is trained on images")
    if kind in ("images", "latents"):
        if registry.kind_of(net) not in (*registry.IMAGE_NETWORKS, "vae"):
            raise ConfigError(f"{config.data.spec} holds images; train them with a U-Net or a DiT (runs.default_config "
                              f"picks one), not a {type(net).__name__}")
    elif not isinstance(net, MLPConfig):
        raise ConfigError(f"{config.data.spec} holds points; train them with the MLP, not a {type(net).__name__}")
    net.check_input(shape, config.data.spec)  # channels / dimensions, and what tiles (or pads) the input
    if config.data.flip and kind != "images":
        raise ConfigError("flip mirrors images; it does not apply to point data")


def _conditional_labels(config: RunConfig, labels, names) -> torch.Tensor:
    """The labels as a tensor, after setting (or checking, on resume) the network's class count from them."""
    if labels is None:
        raise DataError(f"{config.data.spec} has no labels, so a conditional model cannot be trained on it; use "
                        f"labeled data ({', '.join(LABELED_MAKERS)}, digits, mnist5k, shapes, an .npz with y, "
                        "a CSV of x, y, label rows, or a folder with one subfolder per class)")
    num_classes = int(labels.max()) + 1
    if config.network.num_classes == 0:
        config.network.num_classes = num_classes
        config.fitted.class_names = list(names or [str(c) for c in range(num_classes)])
    elif config.network.num_classes != num_classes:
        raise DataError(f"{config.data.spec} now has {num_classes} classes but the run was trained with "
                        f"{config.network.num_classes}")
    return torch.from_numpy(labels)


def sample_run(run: Run | str | Path, n: int, sampler: str = "ddim", steps: int | None = None, *,
               seed: int = 0, spacing: str | None = None, callback=None, clip: bool | None = None,
               cond=None, guidance: float | None = None, guidance_interval="run", device=None,
               prompt=None, **options) -> np.ndarray:
    """n samples in the data's own coordinates, float32 [n, D] (points) or [n, C, H, W] in [0, 1] (images);
    same seed => bitwise identical on one device, and the same noise on every device (drawn on the CPU).

    clip: clip x0_hat to the training data's bounding box (see FittedStats.x0_bound; images: the pixel range);
        None: the run's default (config.sampling.clip_x0).
    callback: receives each sampler step's StepRecord (normalized coordinates) and may stop the loop.
    cond: for a conditional run, a class (id or name) for all n samples, or n class ids (a mixed batch);
        None samples the unconditional model (the null class).
    guidance: classifier-free guidance scale w (default 1: the plain conditional model; 0: unconditional).
    guidance_interval: (sigma_lo, sigma_hi) where guidance applies, None for every level; "run": the run's default.
    device: where to sample a run given by its path (a loaded Run samples where its network is).
    prompt: for a text run, a prompt or a list of prompts: n samples of each (prompt 0's first); None samples
        the unconditional model (the null prompt).
    """
    if not isinstance(run, Run):
        run = load_run(run, device=device)
    device = module_device(run.network)
    if run.config.data.text or prompt is not None:
        from .text.data import text_labels

        labels, n = text_labels(run.config, prompt, cond, n, guidance, device)
    else:
        labels = class_labels(run.config, cond, n)
    if run.config.network.num_classes and run.config.train.p_uncond == 0 and (labels is None or guidance not in (None, 1)):
        raise ConfigError("this run was trained with p_uncond 0, so its null class never saw training and guidance "
                          "(w != 1) or unconditional sampling would be noise; sample a class at w = 1, or train with "
                          "--p-uncond > 0")
    changes = {} if clip is None else {"clip_x0": run.config.x0_clip(clip)}
    if guidance is not None:
        if labels is None:
            raise ConfigError("a guidance scale needs a class to guide towards; give one (--class)")
        changes["guidance_scale"] = guidance
    if guidance_interval != "run":
        changes["guidance_interval"] = guidance_interval
    denoiser = run.denoiser.replace(**changes) if changes else run.denoiser
    shape = tuple(run.config.fitted.shape)
    check_sample_memory(n, shape)
    g = torch.Generator().manual_seed(seed)  # on the CPU: the same x_T and noise on every device
    x_T = randn((n, *shape), g, device=device)
    labels = to_device(labels, device)
    x = run_sampler(denoiser, x_T, sampler, steps, spacing, generator=g, callback=callback, cond=labels, **options)
    return to_data(run, x)


def to_data(run: Run, x: torch.Tensor) -> np.ndarray:
    """Normalized samples back in the data's coordinates (images: pixels clipped to [0, 1]; latents: decoded
    by the run's VAE into pixels)."""
    if run.decoder is not None:
        return run.decoder(x.detach())
    out = run.normalizer.invert(x.detach().cpu().numpy())
    return np.clip(out, 0.0, 1.0) if run.config.fitted.kind == "images" else out


# sampling holds about this many copies of the batch at once (x_T, x, x0_hat, eps_hat, the multistep history,
# the result in the data's coordinates)
SAMPLE_COPIES = 8


def check_sample_memory(n: int, shape) -> None:
    """Refuse, before any work, a sample count whose arrays would not fit in the memory available now."""
    require_memory(n * int(np.prod(shape)) * 4 * SAMPLE_COPIES,
                   f"{n} samples of shape {list(shape)} need about {{need}} GiB but {{free}} GiB are available; "
                   "ask for fewer (--n) or sample in parts")


def eval_samples(samples: np.ndarray, spec: str, *, n_reference: int = 4000, seed: int = 0) -> dict:
    """Metrics of samples against fresh data, with the data-vs-data floor (mean and spread over FLOOR_DRAWS
    draws) beside each. Built-in sets: every draw is new data. A data file: the reference and each floor draw
    are disjoint subsets of the file (the floor compares real points with other real points, never with
    themselves)."""
    from .metrics.points import FLOOR_DRAWS, metric_memory

    source = PointSource(_check_spec(spec))
    samples = samples[:n_reference]
    if source.is_builtin:
        n = min(n_reference, len(samples))
        _check_eval_memory(len(samples), n, metric_memory(len(samples), n))
        reference = source.fresh(n, seed)
        floors = [source.fresh(n, seed + 1 + k) for k in range(FLOOR_DRAWS)]
    else:
        x = source.fresh(10**12, seed)  # the whole file, shuffled
        if len(x) < 12:
            raise DataError(f"{spec} holds {len(x)} points; evaluation needs at least 12 to split into a reference "
                            "and real-data floor draws")
        n = min(n_reference, len(samples), len(x) // 3)  # the rest holds >= 2n points, so floor draws differ
        _check_eval_memory(len(samples), n, metric_memory(len(samples), n))
        reference, rest = x[:n], x[n:]
        floors = [rest[np.random.default_rng(seed + 1 + k).permutation(len(rest))[:n]] for k in range(FLOOR_DRAWS)]
    return evaluate_points(samples, reference, floors, circle=spec == "circle")


def _check_eval_memory(n: int, m: int, need: int) -> None:
    require_memory(need, f"scoring {n} samples against {m} reference points needs about {{need}} GiB but {{free}} "
                         "GiB are available; use a smaller --n-ref")


def eval_image_samples(samples, spec: str, *, cls=None, labels=None, seed: int = 0, progress: bool = True,
                       device=None) -> dict:
    """Image samples (an .npy path or an array [N, C, H, W] in [0, 1]) scored by the data's judge against its
    held-out test split; cls: the class (id or name) every sample was drawn for, or labels: one per sample.
    device: where the judge runs (default the CPU)."""
    from .metrics.images import check_images, evaluate_images
    from .metrics.judge import load_or_train_judge

    data = load_images(spec)
    x = _read_image_samples(samples) if isinstance(samples, (str, Path)) else np.asarray(samples)
    x = check_images(x, data)  # before the judge, which may take a while to train
    if cls is not None:
        if not data.num_classes:
            raise ConfigError(f"{spec} has no labels, so class accuracy cannot be measured; drop --class")
        c = class_id(cls, list(data.class_names or []), data.num_classes, owner=spec)
        labels = np.full(len(x), c)
    judge = load_or_train_judge(data, progress=progress)
    if device is not None:
        judge.to(device)
    if cls is not None:  # samples of one class are compared with that class's images (FD, P/R and their floor)
        data = dataclasses.replace(data, train=data.train[data.train_labels == c], test=data.test[data.test_labels == c],
                                   train_labels=data.train_labels[data.train_labels == c],
                                   test_labels=data.test_labels[data.test_labels == c])
    return evaluate_images(x, data, judge, labels=labels, seed=seed)


def _read_image_samples(path) -> np.ndarray:
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise DataError(f"image samples are read from the .npy file `diffkit sample` writes, got {path}")
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"sample file {path} does not exist") from None
    except (ValueError, OSError, EOFError):
        raise DataError(f"cannot read {path} as a numeric .npy array of images [N, C, H, W]") from None
