"""`diffkit import --diffusers FOLDER --out RUN`: a local diffusers UNet2DModel (a model folder, or a DDPM / DDIM
pipeline folder) as a run directory (runs/interop.py)."""

from __future__ import annotations


def import_parser(sub) -> None:
    i = sub.add_parser("import", help="make a run directory from a local diffusers folder (UNet2DModel pipelines)")
    i.add_argument("--diffusers", required=True, help="a local folder that save_pretrained wrote: a DDPMPipeline / "
                   "DDIMPipeline (model_index.json) or a UNet2DModel with its scheduler_config.json beside it")
    i.add_argument("--out", required=True, help="the new run directory")


def cmd_import(a) -> None:
    from ..runs.interop import import_diffusers

    config = import_diffusers(a.diffusers, a.out)
    classes = f", {config.network.num_classes} classes" if config.network.num_classes else ""
    print(f"imported {a.diffusers} -> {a.out}: UNet2DModel {config.fitted.shape}{classes}, {config.schedule.name} "
          f"betas, {config.prediction} prediction, {config.sampling.spacing} timesteps"
          f"{', x0 clipped to [-1, 1]' if config.sampling.clip_x0 else ''}")
