"""A derived run's teacher (reflow, distillation): checked before anything is derived from it, recorded by path and
the checksum of its weights, and refused by name once replaced; and the objective a distilled student trains
under, built from its config alone (so that resuming needs nothing else)."""

from __future__ import annotations

from ..cond import null_untrained
from ..config import RunConfig
from ..errors import CheckpointError, ConfigError
from ..nn import registry
from ..store.rundir import MODEL, model_sha256, read_config
from ..training.consistency import ConsistencyObjective
from ..training.distill import ProgressiveObjective
from .pipeline import load_run


def teacher_sha256(teacher) -> str:
    checksum = model_sha256(teacher)
    if checksum is None:
        raise CheckpointError(f"{teacher} holds no trained model ({MODEL}); give a run directory written by "
                              "`diffkit train`")
    return checksum


def check_teacher(teacher, what: str, guidance: float | None) -> RunConfig:
    """The config of a run that `what` (reflow, distillation) may derive a student from, at this guidance."""
    config = read_config(teacher)
    if registry.kind_of(config.network) == "vae":
        raise CheckpointError(f"{teacher} is a VAE run (an autoencoder, not a diffusion model); {what} needs a "
                              "diffusion or flow run as its teacher")
    if config.fitted.normalizer is None:
        raise CheckpointError(f"{teacher} never trained (no fitted statistics); train it first")
    if guidance is not None and not (config.network.num_classes or config.data.text):
        raise ConfigError("--guidance guides a class-conditional or text teacher; this one is unconditional")
    if guidance not in (None, 1) and null_untrained(config):
        raise ConfigError("the teacher was trained with p_uncond 0, so its null condition never saw training and "
                          "guidance (w != 1) would be noise; drop --guidance (w = 1)")
    return config


def check_unchanged(parent, what: str) -> None:
    """Refuse a derived run whose teacher's weights are no longer the ones it was made from."""
    if teacher_sha256(parent.path) != parent.sha256:
        raise CheckpointError(f"the teacher {parent.path} changed since this {what} run was made (its weights' "
                              "checksum differs); restore that run")


def distill_objective(config: RunConfig, device=None):
    """The objective of a distilled student (config.parent records how): its teacher loaded and checked, guided
    at the recorded scale (folded into the student)."""
    parent = config.parent
    check_unchanged(parent, "distilled")
    denoiser = load_run(parent.path, device=device, precision="fp32").denoiser  # targets in float32, as measured
    if parent.guidance is not None:
        denoiser = denoiser.replace(guidance_scale=parent.guidance)
    if parent.guidance_interval is not None:  # where the folded guidance applies (runs/distill.py: folded_interval)
        denoiser = denoiser.replace(guidance_interval=parent.guidance_interval)
    if parent.kind == "consistency":
        return ConsistencyObjective(config, config.path(), denoiser, levels_n=parent.levels,
                                    target_ema=parent.target_ema)
    stages = parent.rounds + (parent.guidance_range is not None)  # a guidance stage as long as one round
    per = config.train.steps // stages
    return ProgressiveObjective(config, config.path(), denoiser, steps=parent.steps, rounds=parent.rounds,
                                steps_per_round=per, first_substeps=parent.substeps, first_spacing=parent.spacing,
                                guidance_range=parent.guidance_range, guidance_steps=per)
