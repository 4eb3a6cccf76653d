"""Data -> the source a run trains on: points, images, a VAE's latents of images, or images with captions.
make_source fills config.fitted (kind, shape, normalizer, x0 bound, class names, VAE checksum and latent scale)
the first time, and checks it against the data on resume."""

from __future__ import annotations

import hashlib

import torch

from ..config import RunConfig
from ..data.fingerprint import check_unchanged, content_hash
from ..data.images import IMAGE_DATASETS, is_image_spec, load_images
from ..data.labeled import CLASS_NAMES, LABELED_MAKERS
from ..data.normalize import Normalizer
from ..data.points import DATASETS, PointSource, check_spec
from ..data.source import TensorSource
from ..errors import ConfigError, DataError, notice
from ..nn import registry
from ..nn.mlp import MLPConfig
from ..text.data import TextSource, training_captions
from .captions import encode_captions
from .pairs import pair_source
from .vae import encode_images, latent_scale, load_vae, vae_sha256

BUILTIN = (*DATASETS, *IMAGE_DATASETS)  # data names that are not user paths
FEW_POINTS = 100  # a point file smaller than this gets a notice


def image_spec(spec: str) -> str:
    if not is_image_spec(spec):
        raise ConfigError(f"--latent diffuses in a VAE's latent space of images; {spec} is not image data")
    return spec


def make_source(config: RunConfig) -> TensorSource:
    """The training source of a run, after filling in (or, on resume, checking) config.fitted."""
    if config.reflowed:  # the teacher's pairs; fitted is the teacher's
        return pair_source(config)
    spec, fitted, data = config.data.spec, config.fitted, None
    if config.data.latent is not None:  # images through the VAE: its latents, scaled to unit variance
        data = load_images(image_spec(spec), seed=config.train.seed)
        x, labels, names, normalizer = latent_training_data(config, data)
        kind, x0_bound = "latents", None
    elif is_image_spec(spec):
        data = load_images(spec, seed=config.train.seed)
        x, labels, kind, names = data.train, data.train_labels, "images", data.class_names
        normalizer, x0_bound = Normalizer(mean=[0.5], std=[0.5]), 1.0  # pixels [0, 1] -> [-1, 1]
    else:
        x, labels = PointSource(check_spec(spec)).train_labeled(config.data.num_points, config.train.seed)
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


def settle_classes(config: RunConfig) -> RunConfig:
    """A class-conditional run's class count (network.num_classes) from its data's training labels, before any
    training (recipes call it once the split seed is known); make_source checks it against what it draws."""
    if not config.data.cond or config.network.num_classes:
        return config
    spec = config.data.spec
    if config.data.latent is not None or is_image_spec(spec):
        labels = load_images(image_spec(spec), seed=config.train.seed).train_labels
    else:
        labels = PointSource(check_spec(spec)).train_labeled(config.data.num_points, config.train.seed)[1]
    config.network.num_classes = _class_count(config, labels)
    return config


def _class_count(config: RunConfig, labels) -> int:
    if labels is None:
        raise DataError(f"{config.data.spec} has no labels, so a conditional model cannot be trained on it; use "
                        f"labeled data ({', '.join(LABELED_MAKERS)}, digits, mnist5k, shapes, an .npz with y, "
                        "a CSV of x, y, label rows, or a folder with one subfolder per class)")
    return int(labels.max()) + 1


def _conditional_labels(config: RunConfig, labels, names) -> torch.Tensor:
    """The labels as a tensor, after setting (a config built by hand) or checking the network's class count, and
    recording the class names once."""
    num_classes = _class_count(config, labels)
    if config.network.num_classes == 0:
        config.network.num_classes = num_classes
    elif config.network.num_classes != num_classes:
        raise DataError(f"{config.data.spec} now has {num_classes} classes but the run was trained with "
                        f"{config.network.num_classes}")
    if config.fitted.class_names is None:
        config.fitted.class_names = list(names or [str(c) for c in range(num_classes)])
    return torch.from_numpy(labels)


# --- latent diffusion: images through the VAE, scaled to unit variance --------------------------------------

def encoded_data(config, data):
    """(latents [N, c, h, w] float32 of the train split, VAE checksum) for a latent run on ImageData `data`,
    checked: the VAE run must be a trained VAE of this data's image shape (and, on resume, the same VAE)."""
    vae_config, vae = load_vae(config.data.latent)
    if list(vae_config.fitted.shape) != list(data.shape):
        raise DataError(f"the VAE in {config.data.latent} was trained on images of shape {vae_config.fitted.shape} "
                        f"but {config.data.spec} holds {list(data.shape)}; train a VAE on this data (diffkit "
                        f"train-vae --data {config.data.spec})")
    sha = vae_sha256(config.data.latent)
    if config.fitted.vae_sha256 not in (None, sha):
        raise DataError(f"the VAE in {config.data.latent} changed since this run started (its weights' checksum "
                        "differs); a latent run needs the VAE it was trained with")
    key = hashlib.sha256(f"{sha}|{data.fingerprint()}".encode()).hexdigest()
    return encode_images(vae, data.train, key), sha


def latent_training_data(config, data):
    """(latents, labels, class names, normalizer) of a latent run's train split (ImageData `data`, loaded with
    the run's split seed), filling in (or, on resume, keeping) config.fitted's VAE checksum, latent scale and
    pixel shape."""
    fitted = config.fitted
    x, fitted.vae_sha256 = encoded_data(config, data)
    fitted.latent_scale = fitted.latent_scale or latent_scale(x)
    fitted.pixel_shape = list(data.shape)
    return x, data.train_labels, data.class_names, Normalizer(mean=[0.0], std=[1.0 / fitted.latent_scale])


# --- text: every image with its captions, encoded once ------------------------------------------------------

def text_source(config, x0: torch.Tensor, data) -> TextSource:
    """The TextSource of a text run on ImageData `data` (None: not images), whose train split, normalized (pixels
    or latents), is x0."""
    if data is None:
        raise ConfigError(f"--text conditions images on captions; {config.data.spec} holds points")
    if config.data.flip:
        raise ConfigError("--flip mirrors images, which turns 'left' in a caption into a lie; drop it for text runs")
    captions, choices, keep = training_captions(data)
    if len(choices) != len(x0):
        raise DataError(f"{config.data.spec} gave {len(choices)} captioned images for {len(x0)} training images")
    cond = encode_captions(config.data.text, captions)
    if cond["tokens"].shape[-1] != config.network.context_dim:
        raise ConfigError(f"the text encoder gives {cond['tokens'].shape[-1]}-wide token embeddings but the network "
                          f"reads {config.network.context_dim}")
    keep_t = torch.from_numpy(keep)
    return TextSource(x0[keep_t], choices[keep], cond)
