"""Evaluation entry points: samples against their data (points: the metrics beside the data-vs-data floor;
images: the data's judge on its held-out split), and how well a VAE run reconstructs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..cond import class_id
from ..data.images import load_images
from ..data.points import PointSource, check_spec
from ..errors import ConfigError, DataError
from ..memory import require_memory
from ..metrics.classes import ClassJudge
from ..metrics.images import check_images, evaluate_images, psnr
from ..metrics.judge import load_or_train_judge
from ..metrics.points import FLOOR_DRAWS, evaluate_points, metric_memory
from .vae import load_vae, reconstruct


def eval_samples(samples: np.ndarray, spec: str, *, n_reference: int = 4000, seed: int = 0) -> dict:
    """Metrics of samples against fresh data, with the data-vs-data floor (mean and spread over FLOOR_DRAWS
    draws) beside each. Built-in sets: every draw is new data. A data file: the reference and each floor draw
    are disjoint subsets of the file (the floor compares real points with other real points, never with
    themselves)."""
    samples = samples[:n_reference]
    reference, floors = reference_draws(spec, min(n_reference, len(samples)), seed)
    return evaluate_points(samples, reference, floors, circle=spec == "circle")


def reference_draws(spec: str, n: int, seed: int = 0, draws: int = FLOOR_DRAWS) -> tuple[np.ndarray, list]:
    """Up to n real points to score samples against, and `draws` other draws of real points for the floor (see
    eval_samples)."""
    source = PointSource(check_spec(spec))
    if source.is_builtin:
        _check_eval_memory(n, n, metric_memory(n, n))
        return source.fresh(n, seed), [source.fresh(n, seed + 1 + k) for k in range(draws)]
    x = source.fresh(10**12, seed)  # the whole file, shuffled
    if len(x) < 12:
        raise DataError(f"{spec} holds {len(x)} points; evaluation needs at least 12 to split into a reference "
                        "and real-data floor draws")
    n = min(n, len(x) // 3)  # the rest holds >= 2n points, so floor draws differ
    _check_eval_memory(n, n, metric_memory(n, n))
    rest = x[n:]
    return x[:n], [rest[np.random.default_rng(seed + 1 + k).permutation(len(rest))[:n]] for k in range(draws)]


def _check_eval_memory(n: int, m: int, need: int) -> None:
    require_memory(need, f"scoring {n} samples against {m} reference points needs about {{need}} GiB but {{free}} "
                         "GiB are available; use a smaller --n-ref")


def eval_image_samples(samples, spec: str, *, cls=None, labels=None, seed: int = 0, progress: bool = True,
                       device=None) -> dict:
    """Image samples (an .npy path or an array [N, C, H, W] in [0, 1]) scored by the data's judge against its
    held-out test split; cls: the class (id or name) every sample was drawn for, or labels: one per sample.
    device: where the judge runs (default the CPU)."""
    data = load_images(spec)
    x = read_image_samples(samples) if isinstance(samples, (str, Path)) else np.asarray(samples)
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


def read_image_samples(path) -> np.ndarray:
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise DataError(f"image samples are read from the .npy file `diffkit sample` writes, got {path}")
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"sample file {path} does not exist") from None
    except (ValueError, OSError, EOFError):
        raise DataError(f"cannot read {path} as a numeric .npy array of images [N, C, H, W]") from None


def vae_report(run_dir, *, progress: bool = False, device=None) -> dict:
    """How well a VAE run reconstructs its data's held-out test split: PSNR (dB), and, where the data has a
    judge (labels), the classifier-feature FD of the reconstructions beside its floor and the share the judge
    still classifies right (against its own accuracy on the originals)."""
    config, vae = load_vae(run_dir, device)
    data = load_images(config.data.spec, seed=config.train.seed)
    rec = reconstruct(vae, data.test)
    out = {"psnr": psnr(rec, data.test), "n": len(rec), "factor": config.network.factor,
           "latent_shape": list(config.network.latent_shape(data.shape))}
    if data.num_classes:
        judge = load_or_train_judge(data, progress=progress)
        m = evaluate_images(rec, data, judge, labels=data.test_labels)
        out.update(fd=m["fd"], fd_floor=m["fd_floor"], accuracy=m["class_accuracy"], judge_accuracy=m["judge_accuracy"])
    return out


def adherence_judge(config, device=None):
    """What reads the class of a run's samples: the data set's image judge (images), or nearest real labelled
    neighbours (points: 4000 fresh labelled points)."""
    if config.fitted.image_shape is not None:
        judge = load_or_train_judge(load_images(config.data.spec), progress=False)
        return judge if device is None else judge.to(device)
    ref, labels = PointSource(config.data.spec).fresh_labeled(4000, 1)
    if labels is None:
        raise DataError("the run's data has no labels to check adherence against")
    return ClassJudge(ref, labels)


def adherence(judge, x: np.ndarray, cls: int) -> float:
    """The share of samples x the judge reads as class cls."""
    return float((judge.predict(x) == cls).mean())
