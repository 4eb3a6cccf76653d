"""`diffkit import --diffusers FOLDER --out RUN`: a local diffusers UNet2DModel (a model folder, or a DDPM / DDIM
pipeline folder) or Stable-Diffusion-style pipeline as a run directory (runs/interop.py, runs/interop_sd.py);
`diffkit import --verify RUN`: the full check of the folder an imported pipeline run reads; `diffkit export --run
RUN --format onnx --out DIR`: the run's network as ONNX with a NumPy + onnxruntime sampler (runs/export.py);
`--format diffusers`: a pixel U-Net run as a diffusers pipeline folder (runs/export_diffusers.py)."""

from __future__ import annotations


def import_parser(sub) -> None:
    i = sub.add_parser("import", help="make a run directory from a local diffusers folder (UNet2DModel and Stable "
                       "Diffusion pipelines), or check an imported run's folder")
    what = i.add_mutually_exclusive_group(required=True)
    what.add_argument("--diffusers", help="a local folder that save_pretrained wrote: a DDPMPipeline / DDIMPipeline / "
                      "StableDiffusionPipeline (model_index.json) or a UNet2DModel with its scheduler_config.json "
                      "beside it")
    what.add_argument("--verify", metavar="RUN", help="hash the folder an imported Stable Diffusion run reads again "
                      "and compare with the import's checksum (refreshes the run's quick check of it)")
    i.add_argument("--out", help="the new run directory (with --diffusers)")
    e = sub.add_parser("export", help="export a run: its network as ONNX with a sampler that needs no torch, or a "
                       "pixel U-Net run as a diffusers pipeline folder")
    e.add_argument("--run", required=True, help="a run directory (onnx: points, pixels, latents, text with --prompts)")
    e.add_argument("--format", choices=("onnx", "diffusers"), default="onnx", help="onnx (default): network.onnx, "
                   "plan.json, sample.py; diffusers: model_index.json, unet/, scheduler/, README.md")
    e.add_argument("--out", required=True, help="the new folder")
    e.add_argument("--sampler", help="ddim, dpmpp-2m or dpmpp-3m (default: the run's own, else dpmpp-2m)")
    e.add_argument("--steps", type=int, help="sampler steps (default: the run's own, else 20)")
    e.add_argument("--prompts", nargs="+", help="onnx, a text run: the prompts to encode now for sample.py --prompt")


def cmd_import(a) -> None:
    from ..errors import ConfigError
    from ..runs.interop import import_diffusers, verify_import

    if a.verify is not None:
        if a.out is not None:
            raise ConfigError("--verify checks an imported run in place; drop --out")
        print(verify_import(a.verify))
        return
    if a.out is None:
        raise ConfigError("--diffusers needs --out, the new run directory to write")
    config = import_diffusers(a.diffusers, a.out)
    f = config.fitted
    classes = f", {config.network.num_classes} classes" if config.network.num_classes else ""
    what = (f"UNet2DModel {f.shape}{classes}" if f.kind == "images" else
            f"StableDiffusionPipeline: UNet2DConditionModel {f.shape} latents -> {f.pixel_shape} pixels through its "
            f"AutoencoderKL (latent scale {f.latent_scale:g}), its text encoder and tokenizer")
    reads = (f"; the run reads {', '.join(config.parent.reads)} from the folder (checked on every load)"
             if config.parent.reads else "")
    print(f"imported {a.diffusers} -> {a.out}: {what}, {config.schedule.name} betas, {config.prediction} prediction, "
          f"{config.sampling.spacing} timesteps{', x0 clipped to [-1, 1]' if config.sampling.clip_x0 else ''}{reads}")


def cmd_export(a) -> None:
    from ..errors import ConfigError
    from ..runs.export import export_onnx

    if a.format == "diffusers":
        from ..runs.export_diffusers import PIPELINES, SPACINGS, export_diffusers

        if a.sampler is not None or a.steps is not None or a.prompts:
            raise ConfigError("--sampler, --steps and --prompts belong to --format onnx; a diffusers pipeline takes "
                              "its steps when it is called (num_inference_steps)")
        s, unet = export_diffusers(a.run, a.out)
        what = (f"{s['beta_schedule']} betas, {s['prediction_type']}, trailing timesteps" if "beta_schedule" in s
                else "velocity, shift 1")
        custom = unet != "UNet2DModel"  # a pooled-attention U-Net ships as a custom component
        print(f"exported {a.run} -> {a.out}: a {PIPELINES[s['_class_name']]} folder (unet/: {unet}, scheduler/: "
              f"{s['_class_name']}, {what}; diffkit's same timesteps: --sampler {SPACINGS[s['_class_name']][0]} "
              f"--spacing {SPACINGS[s['_class_name']][1]}), README.md"
              + ("; load it with from_pretrained(DIR, trust_remote_code=True)" if custom else ""))
        return
    if a.steps is not None and a.steps <= 0:
        raise ConfigError(f"--steps must be a positive integer, got {a.steps}")
    plan = export_onnx(a.run, a.out, a.sampler, a.steps, a.prompts)
    print(f"exported {a.run} -> {a.out}: network.onnx (onnxruntime within {plan['onnx_vs_torch']:.1e} of torch), "
          f"{plan['sampler']} at {len(plan['steps'])} steps in plan.json, sample.py (NumPy + onnxruntime)")
