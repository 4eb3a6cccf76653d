"""`diffkit train` and `diffkit train-vae`: flags onto a run's config, then training (resume, overwrite, several
processes); train-vae ends with the autoencoder's reconstruction report."""

from __future__ import annotations

import json

from ..errors import ConfigError, RankFailed


def cmd_train(a) -> None:
    import os

    from ..devices import resolve_device
    from ..training import distributed
    from ..training.checkpoint import read_config
    from ..training.launch import launch

    device = resolve_device(a.device)
    config = _check_resume_flags(a) if a.resume else _train_config(a)
    if a.nproc is not None and "WORLD_SIZE" not in os.environ:  # the launcher: start the ranks, then wait
        runtime = distributed.Runtime(device=device, world_size=a.nproc, batch_per_device=a.batch_per_device)
        runtime.micro_batches((config or read_config(a.out)).train.batch_size)  # refused here, not in N processes
        launch(a.nproc, _without_nproc(a.argv), a.out)
        return
    runtime = distributed.start(device, batch_per_device=a.batch_per_device, compile=a.compile,
                                precision=a.precision if a.resume else None, threads=a.threads if a.resume else None)
    try:
        summary = _train(a, config, runtime)
    except Exception as e:
        if not (runtime.distributed and distributed.peer_lost(e)):
            raise
        lost = RankFailed(f"rank {runtime.rank} lost contact with another rank of the job ({str(e).splitlines()[0]})")
        lost.exit_code = distributed.PEER_LOST
        raise lost from None
    finally:
        distributed.stop()
    if runtime.is_main:
        print(f"trained {summary['steps']} steps in {summary['seconds']:.1f} s -> {a.out} (step {summary['final_step']})")


def _train(a, config, runtime) -> dict:
    from ..runs import train_run

    if a.resume:
        return train_run(None, a.out, resume=True, steps=a.steps, progress=not a.quiet, runtime=runtime)
    return train_run(config, a.out, overwrite=a.overwrite, progress=not a.quiet, runtime=runtime)


def _without_nproc(argv: list[str]) -> list[str]:
    """The train command line for the ranks: everything but --nproc N."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def _check_resume_flags(a) -> None:
    given = [f"--{k.replace('_', '-')}" for k in ("data", "batch_size", "schedule", "timesteps", "prediction",
                                                    "lr", "seed", "p_uncond", "checkpoint_every",
                                                    "keep_checkpoints") if getattr(a, k) is not None]
    given += ["--zero-terminal-snr"] if a.zero_terminal_snr else []
    given += ["--cond"] if a.cond else []
    given += ["--flip"] if a.flip else []
    given += [f"--{k.replace('_', '-')}" for k in (*NETWORK_FLAGS, "net", "dit_size", "patch_size", "latent", "text")
              if getattr(a, k) is not None]
    if given:
        raise ConfigError(f"--resume continues the run as configured in its config.json, so {', '.join(given)} "
                          "cannot be given; only --steps and how it runs (--device, --precision, --threads, --nproc, "
                          "--batch-per-device, --compile) may change")
    if a.overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; give one of them")


def _train_config(a):
    from ..config import ScheduleConfig
    from ..runs import default_config

    if a.p_uncond is not None and not (a.cond or a.text):
        raise ConfigError("--p-uncond is the label (or prompt) dropout of a conditional model; give --cond or --text")
    if (a.dit_size or a.patch_size) and a.net != "dit":
        raise ConfigError("--dit-size and --patch-size shape a DiT; give --net dit too")
    config = default_config(a.data or "spiral", cond=a.cond, net=a.net, dit_size=a.dit_size or "small",
                            patch_size=a.patch_size, latent=a.latent, text=a.text)
    _apply_network_flags(config, a)
    if a.schedule is not None or a.timesteps is not None or a.zero_terminal_snr:
        config.schedule = ScheduleConfig(name=a.schedule or config.schedule.name, num_timesteps=a.timesteps or 1000,
                                         zero_terminal_snr=a.zero_terminal_snr)
    if a.prediction is not None:
        config.prediction = a.prediction
    for key in ("steps", "batch_size", "lr", "seed", "p_uncond", "checkpoint_every", "keep_checkpoints", "precision",
                "threads"):
        if getattr(a, key) is not None:
            setattr(config.train, key, getattr(a, key))
    return config.validate()


NETWORK_FLAGS = {"channels": "channels", "channel_mult": "channel_mult", "res_blocks": "num_res_blocks",
                 "attention": "attention_levels", "cross_attention": "cross_attention_levels", "dropout": "dropout"}


def _apply_network_flags(config, a) -> None:
    """--flip and the U-Net flags onto an image run's config (refused for points)."""
    from ..nn.unet import UNetConfig

    given = [k for k in NETWORK_FLAGS if getattr(a, k) is not None]
    if given and a.net == "dit":
        raise ConfigError(f"{', '.join('--' + k.replace('_', '-') for k in given)} shape the U-Net; a DiT takes "
                          "--dit-size and --patch-size")
    if a.net == "dit":
        config.data.flip = a.flip
        return
    if (given or a.flip) and not isinstance(config.network, UNetConfig):
        flags = [f"--{k.replace('_', '-')}" for k in given] + (["--flip"] if a.flip else [])
        raise ConfigError(f"{', '.join(flags)} shape the image U-Net; {config.data.spec} holds points")
    if a.cross_attention is not None and not a.text:
        raise ConfigError("--cross-attention places the U-Net's attention to a prompt; give --text too")
    for key in given:
        setattr(config.network, NETWORK_FLAGS[key], getattr(a, key))
    config.data.flip = a.flip


def cmd_train_vae(a) -> None:
    from ..data.images import is_image_spec, load_images
    from ..devices import resolve_device
    from ..latent import vae_report
    from ..presets import vae_config
    from ..runs import train_run
    from ..training.distributed import Runtime

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
