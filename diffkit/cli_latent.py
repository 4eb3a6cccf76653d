"""`diffkit train-vae`: train the autoencoder of latent diffusion and report how well it reconstructs."""

from __future__ import annotations

import json

from .errors import ConfigError


def cmd_train_vae(a) -> None:
    from .data.images import is_image_spec, load_images
    from .devices import resolve_device
    from .latent import vae_report
    from .presets import vae_config
    from .runs import train_run
    from .training.distributed import Runtime

    runtime = Runtime(device=resolve_device(a.device), precision=a.precision if a.resume else None,
                      threads=a.threads if a.resume else None)
    if a.resume:
        given = [f"--{k.replace('_', '-')}" for k in ("data", "factor", "latent_channels", "batch_size", "lr",
                                                        "kl_weight", "seed") if getattr(a, k) is not None]
        if given:
            raise ConfigError(f"--resume continues the VAE run as configured in its config.json, so "
                              f"{', '.join(given)} cannot be given; only --steps and how it runs (--device, "
                              "--precision, --threads) may change")
        summary = train_run(None, a.out, resume=True, steps=a.steps, progress=not a.quiet, runtime=runtime)
    else:
        if a.data is None:
            raise ConfigError("train-vae needs --data: an image set (digits, mnist5k, shapes), a folder or an .npz")
        if not is_image_spec(a.data):
            raise ConfigError(f"{a.data} is not image data; an autoencoder compresses images (digits, mnist5k, "
                              "shapes, a folder of PNG/JPEG or an image .npz)")
        config = vae_config(a.data, load_images(a.data).shape, factor=a.factor or 4,
                            latent_channels=a.latent_channels or 4)
        for key in ("steps", "batch_size", "lr", "seed", "precision", "threads"):
            if getattr(a, key) is not None:
                setattr(config.train, key, getattr(a, key))
        if a.kl_weight is not None:
            config.network.kl_weight = a.kl_weight
        summary = train_run(config.validate(), a.out, overwrite=a.overwrite, progress=not a.quiet, runtime=runtime)
    print(f"trained {summary['steps']} steps in {summary['seconds']:.1f} s -> {a.out} (step {summary['final_step']})")
    report = vae_report(a.out, progress=not a.quiet, device=runtime.device)
    if a.json:
        print(json.dumps(report))
        return
    line = f"test split: PSNR {report['psnr']:.2f} dB, latents {report['latent_shape']} (factor {report['factor']})"
    if "fd" in report:
        line += (f"; reconstructions: FD {report['fd']:.3f} (floor {report['fd_floor']:.3f}), judge accuracy "
                 f"{report['accuracy']:.1%} (on the originals {report['judge_accuracy']:.1%})")
    print(line)
