"""A Stable-Diffusion-style pipeline folder in (runs/interop_sd.py): a tiny random StableDiffusionPipeline (a
UNet2DConditionModel, an AutoencoderKL, a CLIP text tower with a CLIP tokenizer of our own small vocabulary, a
scheduler) built with diffusers and transformers, saved, imported, and sampled by diffkit from the same latents as
diffusers' own pipeline, guided and not, latents and decoded images (<= 1e-4 relative); the folder's quick check
on every load and the full one on --verify; bad folders refused in one sentence with nothing written."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import diffusers
import numpy as np
import pytest
import torch
import transformers
from test_cli import run
from test_images_cli import assert_user_error
from test_interop import assert_parity, noise_of

from diffkit.runs import load_run, sample_run
from diffkit.runs.interop import import_diffusers

TOKENS = 16  # the tokenizer's max length (CLIP's is 77)
PROMPTS = ["a red square", "a small blue circle at the top"]
SCHEDULER = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
             "clip_sample": False, "steps_offset": 1}  # Stable Diffusion's betas and offset; latents are not clipped


def tiny_tokenizer() -> transformers.CLIPTokenizer:
    """CLIP's byte-level BPE with a vocabulary of single letters and digits (no merges): no download needed."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz0123456789.,":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    return transformers.CLIPTokenizer(vocab=vocab, merges=[], model_max_length=TOKENS)


def tiny_pipeline() -> diffusers.StableDiffusionPipeline:
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    text = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=TOKENS, bos_token_id=0, eos_token_id=1, pad_token_id=1)).eval()
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8).eval()
    vae = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(16, 32), latent_channels=4, norm_num_groups=8,
        sample_size=16).eval()
    return diffusers.StableDiffusionPipeline(
        vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=diffusers.DDIMScheduler(**SCHEDULER),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd")
    tiny_pipeline().save_pretrained(root / "sd")
    import_diffusers(root / "sd", root / "sd-run")
    return root


def their_pipeline(folder, scheduler=None):
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    if scheduler is not None:
        pipe.scheduler = scheduler.from_config(pipe.scheduler.config)
    return pipe


def start(seed: int) -> torch.Tensor:
    return noise_of(seed, (len(PROMPTS), 4, 8, 8))


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_ddim_reproduces_the_pipeline_latents_and_images(sd, guidance):
    pipe = their_pipeline(sd / "sd")
    kwargs = {"prompt": PROMPTS, "num_inference_steps": 6, "guidance_scale": guidance, "eta": 0.0,
              "latents": start(1)}
    latents = pipe(output_type="latent", **kwargs).images
    images = pipe(output_type="np", **kwargs).images
    r = load_run(sd / "sd-run")
    assert r.config.fitted.kind == "latents" and r.config.fitted.pixel_shape == [3, 16, 16]
    assert r.config.sampling.spacing == "diffusers-leading+1" and r.config.schedule.name == "scaled_linear"
    assert r.config.fitted.latent_scale == pytest.approx(pipe.vae.config.scaling_factor)
    w = None if guidance == 1.0 else guidance  # (the pipeline skips guidance at w <= 1)
    ours = sample_run(r, 1, "ddim", 6, prompt=PROMPTS, guidance=w, noise=start(1).numpy())
    assert_parity(ours.transpose(0, 2, 3, 1), images)
    raw = sample_run(dataclasses.replace(r, decoder=None), 1, "ddim", 6, prompt=PROMPTS, guidance=w,
                     noise=start(1).numpy())  # latents / scale: the VAE's own latents
    assert_parity(raw * r.config.fitted.latent_scale, latents.numpy())
    assert np.abs(latents.numpy()).max() > 0.1 and images.std() > 0.01  # (a real picture, not a constant)


@pytest.mark.parametrize("sampler, scheduler", [("dpmpp-2m", diffusers.DPMSolverMultistepScheduler),
                                                ("euler", diffusers.EulerDiscreteScheduler)])
def test_guided_solvers_reproduce_the_pipeline_with_their_schedulers(sd, sampler, scheduler):
    pipe = their_pipeline(sd / "sd", scheduler)
    theirs = pipe(prompt=PROMPTS, num_inference_steps=8, guidance_scale=4.0, latents=start(2),
                  output_type="latent").images
    r = load_run(sd / "sd-run")
    ours = sample_run(dataclasses.replace(r, decoder=None), 1, sampler, 8, prompt=PROMPTS, guidance=4.0,
                      noise=start(2).numpy(), clip=False)
    assert_parity(ours * r.config.fitted.latent_scale, theirs.numpy())


def test_the_null_prompt_is_the_pipelines_empty_prompt(sd):
    """Unconditional sampling (no prompt) is the pipeline's at prompt "" without guidance."""
    pipe = their_pipeline(sd / "sd")
    theirs = pipe(prompt=["", ""], num_inference_steps=4, guidance_scale=1.0, latents=start(3),
                  output_type="np").images
    ours = sample_run(sd / "sd-run", 2, "ddim", 4, noise=start(3).numpy())
    assert_parity(ours.transpose(0, 2, 3, 1), theirs)


def test_cli_import_and_sample_a_prompt_from_given_latents(sd, tmp_path, capsys):
    code, out, err = run(["import", "--diffusers", sd / "sd", "--out", tmp_path / "r"], capsys)
    assert code == 0 and "StableDiffusionPipeline" in out and "[4, 8, 8] latents -> [3, 16, 16] pixels" in out, err
    assert "reads text_encoder, tokenizer, vae from the folder" in out
    np.save(tmp_path / "x_T.npy", start(4)[:1].numpy())
    code, _, err = run(["sample", "--run", tmp_path / "r", "--prompt", PROMPTS[1], "--guidance", 2, "--noise",
                        tmp_path / "x_T.npy", "--sampler", "ddim", "--steps", 5, "--out", tmp_path / "s.npy",
                        "--quiet"], capsys)
    assert code == 0, err
    pipe = their_pipeline(sd / "sd")
    theirs = pipe(prompt=PROMPTS[1], num_inference_steps=5, guidance_scale=2.0, latents=start(4)[:1],
                  output_type="np").images
    assert_parity(np.load(tmp_path / "s.npy").transpose(0, 2, 3, 1), theirs)


def test_a_changed_folder_is_refused_and_verify_tells_touched_from_changed(sd, tmp_path, capsys):
    folder = tmp_path / "sd"
    shutil.copytree(sd / "sd", folder)
    import_diffusers(folder, tmp_path / "r")
    sample_run(tmp_path / "r", 1, "ddim", 2)  # loads: the quick check passes
    vae = folder / "vae" / "diffusion_pytorch_model.safetensors"
    os.utime(vae, ns=(1, 1))  # touched, same bytes
    with pytest.raises(Exception, match="vae/diffusion_pytorch_model.safetensors has changed.*import --verify"):
        load_run(tmp_path / "r")
    code, out, err = run(["import", "--verify", tmp_path / "r"], capsys)
    assert code == 0 and "match the import's checksum" in out, err
    load_run(tmp_path / "r")  # the refreshed record lets it load again
    data = bytearray(vae.read_bytes())
    data[-4:] = bytes(4) if data[-4:] != bytes(4) else b"\1\1\1\1"  # one weight's bytes, the header unchanged
    vae.write_bytes(bytes(data))  # (a new mtime: the quick check sees it; same size and header)
    code, _, err = run(["import", "--verify", tmp_path / "r"], capsys)
    assert_user_error(code, err, "differ byte for byte")
    code, _, err = run(["sample", "--run", tmp_path / "r", "--out", tmp_path / "s.npy", "--n", 1], capsys)
    assert_user_error(code, err, "has changed")  # (the refused verify left the old record: still refused)
    assert not (tmp_path / "s.npy").exists()


def _break(folder, case):
    index = folder / "model_index.json"
    if case == "no tokenizer":
        shutil.rmtree(folder / "tokenizer")
    elif case == "a controlnet":
        index.write_text(json.dumps({**json.loads(index.read_text()), "controlnet": ["diffusers", "ControlNetModel"]}))
    elif case == "pickled unet":
        (folder / "unet" / "diffusion_pytorch_model.safetensors").rename(folder / "unet" / "diffusion_pytorch_model.bin")
    elif case == "an SDXL unet":
        cfg = folder / "unet" / "config.json"
        cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "addition_embed_type": "text_time"}))
    elif case == "wrong width":
        cfg = folder / "text_encoder" / "config.json"
        cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "hidden_size": 48}))


BAD = {"no tokenizer": "without its tokenizer/ folder", "a controlnet": "components diffkit does not take: controlnet",
       "pickled unet": "only as a pickle", "an SDXL unet": "addition_embed_type",
       "wrong width": "gives 48-wide tokens but the U-Net cross-attends to 32-wide ones"}


@pytest.mark.parametrize("case", BAD)
def test_bad_pipelines_are_one_sentence_and_nothing_is_written(sd, tmp_path, capsys, case):
    folder = tmp_path / "sd"
    shutil.copytree(sd / "sd", folder)
    _break(folder, case)
    code, _, err = run(["import", "--diffusers", folder, "--out", tmp_path / "r"], capsys)
    assert_user_error(code, err, BAD[case])
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name", ["DDIMScheduler", "DDPMScheduler", "DPMSolverMultistepScheduler",
                                  "EulerDiscreteScheduler"])
def test_diffkits_scheduler_adapters_run_inside_the_pipeline(sd, name):
    """diffkit's diffusers-compatible schedulers (diffkit.schedulers) in StableDiffusionPipeline in place of
    diffusers' own, from the pipeline's config (other schedulers' keys in it ignored, as diffusers does): the same
    latents to <= 1e-5 of their range, guided, the stochastic DDPM from the same generator."""
    from diffkit import schedulers

    pipe = their_pipeline(sd / "sd", getattr(diffusers, name))
    kwargs = {"prompt": PROMPTS, "num_inference_steps": 6, "guidance_scale": 3.0, "latents": start(5),
              "output_type": "latent"}
    theirs = pipe(generator=torch.Generator().manual_seed(1), **kwargs).images
    pipe.scheduler = getattr(schedulers, name).from_config(pipe.scheduler.config)
    ours = pipe(generator=torch.Generator().manual_seed(1), **kwargs).images
    assert type(pipe.scheduler).__module__ == "diffkit.schedulers"
    assert float((ours - theirs).abs().max()) <= 1e-5 * max(1.0, float(theirs.abs().max()))


def test_an_imported_pipeline_exports_to_onnx_and_samples_without_torch(sd, tmp_path, capsys):
    """The pipeline's UNet2DConditionModel as network.onnx (it ignores the prompt's mask, so the graph takes none),
    its AutoencoderKL's decoder as decoder.onnx, the prompts encoded by its CLIP tower at export: the NumPy +
    onnxruntime sampler reproduces diffkit's decoded images from the same latents, guided and not."""
    from test_export import sample_without_torch

    folder = tmp_path / "onnx"
    code, _, err = run(["export", "--run", sd / "sd-run", "--out", folder, "--steps", "6", "--prompts", *PROMPTS],
                       capsys)
    assert code == 0, err
    plan = json.loads((folder / "plan.json").read_text())
    assert plan["onnx_vs_torch"] <= 1e-4 and plan["decoder_vs_torch"] <= 1e-4 and plan["shape"] == [4, 8, 8]
    noise = start(3).numpy()
    for prompt, w in ((PROMPTS[0], 7.5), (PROMPTS[1], 1.0)):
        theirs = sample_without_torch(folder, tmp_path, noise, "--prompt", prompt, "--guidance", w)
        ours = sample_run(sd / "sd-run", len(noise), "dpmpp-2m", 6, noise=noise, prompt=prompt, guidance=w,
                          precision="fp32")
        assert theirs.shape == ours.shape == (2, 3, 16, 16)  # decoded pixels
        assert np.abs(theirs - ours).max() <= 1e-3 and ours.std() > 0.01


def test_export_to_diffusers_of_an_imported_pipeline_is_refused_in_one_sentence(sd, tmp_path, capsys):
    code, _, err = run(["export", "--run", sd / "sd-run", "--format", "diffusers", "--out", tmp_path / "dm"], capsys)
    assert_user_error(code, err, "does not map onto a diffusers UNet2DModel pipeline")
    assert not (tmp_path / "dm").exists()
