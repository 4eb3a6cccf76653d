"""`diffkit train --latent auto`: the autoencoder of a latent run trained on first use, as a run directory of its
own beside the run (OUT-vae), which the run records as its VAE (data.latent, with its weights' checksum). It is a
run like any `diffkit train-vae` run: clearing a cache never removes it, a second run beside it reuses it, and an
interrupted one is resumed from its checkpoint."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..nn.vae import VAEConfig
from ..store.rundir import CONFIG, MODEL, checkpoint_steps, read_config
from .recipes import vae_train_config
from .train import is_run_dir, train_run

AUTO = "auto"


def vae_beside(out) -> Path:
    """Where `--latent auto` keeps the VAE of the run in `out`: the folder OUT-vae next to it."""
    out = Path(out).expanduser().resolve()
    return out.parent / f"{out.name}-vae"


def vae_done(path: Path, steps: int) -> bool:
    """Whether the VAE run in `path` trained all its `steps` (its config's)."""
    done = checkpoint_steps(path)
    return (path / MODEL).exists() and bool(done) and done[-1] >= steps


def prepare_vae(spec: str, out, *, how: dict | None = None, progress: bool = True, runtime=None,
                may_train: bool = True) -> str:
    """The VAE run for `--latent auto` of a run of `spec` in `out`, trained first where it is not there yet
    (the default autoencoder of `diffkit train-vae --data spec`; resumed where an earlier one was interrupted).
    how: --precision / --threads for a new one. may_train False (a rank started by torchrun) refuses instead of
    training one. Returns its absolute path."""
    path = vae_beside(out)
    config = vae_train_config({"data": spec, **(how or {})})  # refuses points and unknown data in one sentence
    existing = is_run_dir(path)
    if existing:
        saved = _saved_vae(path)
        if saved.data.spec != config.data.spec:
            raise ConfigError(f"{path} holds a VAE of {saved.data.spec}, not of {spec}; remove it, or give --latent "
                              f"a VAE run of {spec}")
        if vae_done(path, saved.train.steps):
            return str(path)
    if not may_train:
        raise ConfigError(f"--latent auto trains a VAE in {path} first, which the ranks of one job cannot share; "
                          f"run `diffkit train-vae --data {spec} --out {path}` (or use --nproc, which trains it "
                          "before starting the ranks), then start the job again")
    print(f"latent: training the autoencoder of {spec} on first use in {path}", flush=True)
    if existing:
        summary = train_run(None, path, resume=True, progress=progress, runtime=runtime)
    else:
        summary = train_run(config, path, progress=progress, runtime=runtime)
    print(f"latent: VAE trained {summary['steps']} steps in {summary['seconds']:.1f} s -> {path}", flush=True)
    return str(path)


def _saved_vae(path: Path):
    if not (path / CONFIG).exists():
        raise ConfigError(f"{path} is in the way of --latent auto's VAE (it is not a finished run); remove it, or "
                          "give --latent a VAE run directory")
    saved = read_config(path)
    if not isinstance(saved.network, VAEConfig):
        raise ConfigError(f"{path} holds a run that is not a VAE; remove it, or give --latent a VAE run directory")
    return saved
