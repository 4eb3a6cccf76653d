"""The front door: what the faces (CLI, lab, demos, benchmarks) and Python users call.

    recipes.py   data + flags -> a complete RunConfig, before any training
    sources.py   data -> the source a run trains on; fills config.fitted once
    pipeline.py  Run: a loaded run and its sample(...)
    train.py     train / resume / overwrite a run directory
    vae_beside.py  --latent auto: a latent run's VAE trained on first use, beside it
    evaluate.py  samples against their data, a VAE's reconstructions, class adherence
    score.py     oracle samples, score error, likelihoods
"""

from ..store.rundir import read_config
from .distill import distill_config, distill_run
from .evaluate import (
    adherence,
    adherence_judge,
    eval_image_samples,
    eval_samples,
    read_image_samples,
    vae_report,
)
from .pipeline import (
    RUN_DEFAULT,
    Run,
    check_sample_memory,
    conditioning,
    load_run,
    make_denoiser,
    run_sampling,
    sample_run,
    snapshot_run,
    student_guidance,
    to_data,
)
from .recipes import default_config, resume_conflicts, train_config, vae_train_config
from .reflow import reflow_config, reflow_run
from .score import (
    likelihood_model,
    nll_run,
    run_oracle,
    sample_oracle,
    score_error,
    straightness_run,
    time_log_snr,
    trajectories_run,
)
from .sources import make_source
from .train import is_run_dir, make_trainer, train_run
from .vae_beside import prepare_vae

__all__ = [
    "RUN_DEFAULT", "Run", "adherence", "adherence_judge", "check_sample_memory", "conditioning", "default_config",
    "distill_config", "distill_run",
    "eval_image_samples", "eval_samples", "is_run_dir", "likelihood_model", "load_run", "make_denoiser",
    "make_source", "make_trainer", "nll_run", "prepare_vae", "read_config", "read_image_samples", "reflow_config", "reflow_run",
    "resume_conflicts", "run_oracle", "run_sampling", "sample_oracle", "sample_run", "student_guidance", "score_error", "snapshot_run",
    "straightness_run", "time_log_snr", "to_data", "train_config", "train_run", "trajectories_run", "vae_report",
    "vae_train_config",
]
