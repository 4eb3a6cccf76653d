"""diffusers folders in (runs/interop.py, `diffkit import --diffusers`): tiny random UNet2DModels built with
diffusers and saved to disk, imported, and sampled by diffkit from the same x_T as diffusers' own pipeline and
scheduler loops (<= 1e-4 relative); every bad folder refused in one sentence with nothing written."""

from __future__ import annotations

import json
import shutil

import diffusers
import numpy as np
import pytest
import torch
from test_cli import run
from test_images_cli import assert_user_error

from diffkit.runs import load_run, sample_run
from diffkit.runs.interop import import_diffusers
from diffkit.sampling import SAMPLERS, STOCHASTIC

UNETS = {  # (with attention, unconditional) and (class-conditional, no attention)
    "attn": {"sample_size": 8, "in_channels": 1, "out_channels": 1, "layers_per_block": 1,
             "block_out_channels": (16, 32), "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
             "up_block_types": ("AttnUpBlock2D", "UpBlock2D"), "norm_num_groups": 8},
    "classes": {"sample_size": 8, "in_channels": 3, "out_channels": 3, "layers_per_block": 1,
                "block_out_channels": (8, 16), "down_block_types": ("DownBlock2D", "DownBlock2D"),
                "up_block_types": ("UpBlock2D", "UpBlock2D"), "norm_num_groups": 4, "num_class_embeds": 3},
}


def tiny_unet(name: str) -> diffusers.UNet2DModel:
    torch.manual_seed(0)
    return diffusers.UNet2DModel(**UNETS[name]).eval()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusers")
    pipe = diffusers.DDIMPipeline(unet=tiny_unet("attn"), scheduler=diffusers.DDIMScheduler(num_train_timesteps=1000))
    pipe.save_pretrained(root / "pipe")
    unet = tiny_unet("classes")
    unet.save_pretrained(root / "model")  # a model folder, its scheduler beside it (as google/ddpm-* ship)
    diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                            clip_sample=False).save_pretrained(root / "model")
    for name in ("pipe", "model"):
        import_diffusers(root / name, root / f"{name}-run")
    return root


def noise_of(seed: int, shape) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))  # as diffusers' randn_tensor on a CPU


def assert_parity(ours: np.ndarray, theirs: np.ndarray, tol: float = 1e-4):
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= tol * max(1.0, np.abs(theirs).max())


@pytest.mark.parametrize("clip", [True, False])
def test_ddim_reproduces_ddim_pipeline(folders, clip):
    pipe = diffusers.DDIMPipeline.from_pretrained(folders / "pipe")
    pipe.set_progress_bar_config(disable=True)
    if not clip:
        pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False)
    # diffkit re-derives eps from a clipped x0_hat, which is diffusers' use_clipped_model_output=True
    theirs = pipe(batch_size=4, generator=torch.Generator().manual_seed(3), num_inference_steps=10, eta=0.0,
                  use_clipped_model_output=clip, output_type="np").images
    r = load_run(folders / "pipe-run")
    assert r.config.sampling.clip_x0 and r.config.sampling.spacing == "diffusers-leading"
    ours = sample_run(r, 4, "ddim", 10, noise=noise_of(3, (4, 1, 8, 8)).numpy(), clip=clip)
    assert_parity(ours.transpose(0, 2, 3, 1), theirs)


def test_class_conditional_v_prediction_cosine_matches_diffusers_loop(folders):
    unet = diffusers.UNet2DModel.from_pretrained(folders / "model")
    sched = diffusers.DDIMScheduler.from_pretrained(folders / "model")
    sched.set_timesteps(8)
    x, labels = noise_of(4, (6, 3, 8, 8)), torch.tensor([0, 1, 2, 2, 1, 0])
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(x, t, class_labels=labels).sample, t, x, eta=0.0).prev_sample
    theirs = (x / 2 + 0.5).clamp(0, 1).numpy()
    r = load_run(folders / "model-run")
    assert (r.config.schedule.name, r.config.prediction, r.config.network.num_classes) == ("cosine", "v", 3)
    ours = sample_run(r, 6, "ddim", 8, noise=noise_of(4, (6, 3, 8, 8)).numpy(), cond=labels.tolist())
    assert_parity(ours, theirs)
    with pytest.raises(Exception, match="null class never saw training"):  # no null class was trained
        sample_run(r, 2, "ddim", 4, cond=1, guidance=3.0)


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp-2m", "euler"])
def test_steps_offset_is_stable_diffusions_leading_plus_one(folders, tmp_path, sampler):
    """steps_offset 1 (Stable Diffusion's schedulers) with leading spacing: every timestep one higher, in diffkit
    as in diffusers' DDIM, DPM-Solver and Euler schedulers."""
    folder = tmp_path / "pipe"
    shutil.copytree(folders / "pipe", folder)
    _edit_json(folder / "scheduler" / "scheduler_config.json", steps_offset=1, clip_sample=False)
    import_diffusers(folder, tmp_path / "r")
    r = load_run(tmp_path / "r")
    assert r.config.sampling.spacing == "diffusers-leading+1"
    unet = diffusers.UNet2DModel.from_pretrained(folder / "unet")
    kind = {"ddim": diffusers.DDIMScheduler, "dpmpp-2m": diffusers.DPMSolverMultistepScheduler,
            "euler": diffusers.EulerDiscreteScheduler}[sampler]
    sched = kind.from_pretrained(folder / "scheduler")
    sched.set_timesteps(8)
    ratio = 1000 // (8 + (sampler == "dpmpp-2m"))  # (the multistep solver places K + 1 and drops the lowest)
    assert ((sched.timesteps.long() - 1) % ratio == 0).all()  # every leading timestep one higher
    x = noise_of(7, (3, 1, 8, 8)) * sched.init_noise_sigma
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(sched.scale_model_input(x, t), t).sample, t, x).prev_sample
    ours = sample_run(r, 3, sampler, 8, noise=noise_of(7, (3, 1, 8, 8)).numpy(), clip=False)
    assert_parity(ours, (x / 2 + 0.5).clamp(0, 1).numpy())


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
def test_dpm_solver_2m_reproduces_ddpm_pipeline_with_diffusers_multistep(folders, tmp_path, spacing):
    pipe = diffusers.DDPMPipeline.from_pretrained(folders / "pipe", scheduler=diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, timestep_spacing=spacing))  # DDPMPipeline takes any scheduler with sigma_T = 1
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(batch_size=4, generator=torch.Generator().manual_seed(5), num_inference_steps=10,
                  output_type="np").images
    r = load_run(folders / "pipe-run")
    ours = sample_run(r, 4, "dpmpp-2m", 10, noise=noise_of(5, (4, 1, 8, 8)).numpy(), clip=False,
                      spacing=f"diffusers-{spacing}")  # (the solver does not clip: clip_sample is DDIM's)
    assert_parity(ours.transpose(0, 2, 3, 1), theirs)


@pytest.mark.parametrize("spacing", ["leading"])  # trailing / linspace start at sigma 157: 7.5e-4 (docs/diffusers.md)
def test_euler_reproduces_diffusers_euler_loop(folders, spacing):
    unet = diffusers.UNet2DModel.from_pretrained(folders / "pipe" / "unet")
    sched = diffusers.EulerDiscreteScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
    sched.set_timesteps(10)
    x = noise_of(6, (4, 1, 8, 8)) * sched.init_noise_sigma
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(sched.scale_model_input(x, t), t).sample, t, x).prev_sample
    ours = sample_run(folders / "pipe-run", 4, "euler", 10, noise=noise_of(6, (4, 1, 8, 8)).numpy(), clip=False,
                      spacing=f"diffusers-{spacing}")
    assert_parity(ours, (x / 2 + 0.5).clamp(0, 1).numpy())


def test_cli_import_then_sample_from_the_same_noise(folders, tmp_path, capsys):
    code, out, err = run(["import", "--diffusers", folders / "pipe", "--out", tmp_path / "r"], capsys)
    assert code == 0 and "UNet2DModel [1, 8, 8]" in out and "diffusers-leading timesteps" in out, err
    np.save(tmp_path / "x_T.npy", noise_of(9, (3, 1, 8, 8)).numpy())
    code, _, err = run(["sample", "--run", tmp_path / "r", "--noise", tmp_path / "x_T.npy", "--sampler", "ddim",
                        "--steps", 5, "--out", tmp_path / "s.npy", "--quiet"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"),
                                  sample_run(folders / "pipe-run", 3, "ddim", 5, noise=np.load(tmp_path / "x_T.npy")))


def _edit_json(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


BAD = {
    "neither": (lambda f: (f / "model_index.json").unlink(), "neither a model_index.json"),
    "controlnet": (lambda f: _edit_json(f / "model_index.json", _class_name="StableDiffusionControlNetPipeline"),
                   "is a StableDiffusionControlNetPipeline"),
    "class": (lambda f: _edit_json(f / "unet" / "config.json", _class_name="ControlNetModel"),
              "holds a ControlNetModel"),
    "pickle": (lambda f: (f / "unet" / "diffusion_pytorch_model.safetensors").rename(
        f / "unet" / "diffusion_pytorch_model.bin"), "only as a pickle (diffusion_pytorch_model.bin)"),
    "shapes": (lambda f: _edit_json(f / "unet" / "config.json", block_out_channels=[16, 48]),
               "the weights do not match their config.json"),
    "thresholding": (lambda f: _edit_json(f / "scheduler" / "scheduler_config.json", thresholding=True),
                     "thresholding = True is not representable"),
    "offset": (lambda f: _edit_json(f / "scheduler" / "scheduler_config.json", steps_offset=-1),
               "steps_offset -1 is not a small integer"),
    "betas": (lambda f: _edit_json(f / "scheduler" / "scheduler_config.json", beta_end=0.03),
              "beta_end 0.03 is not one of diffkit's schedules"),
    "unknown": (lambda f: _edit_json(f / "scheduler" / "scheduler_config.json", karras_rho=7.0),
                "cannot represent karras_rho"),
    "fourier": (lambda f: _edit_json(f / "unet" / "config.json", time_embedding_type="fourier"),
                "time_embedding_type 'fourier' is not imported"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_folders_are_one_sentence_and_nothing_is_written(folders, tmp_path, capsys, case):
    folder = tmp_path / "pipe"
    shutil.copytree(folders / "pipe", folder)
    damage, fragment = BAD[case]
    damage(folder)
    code, _, err = run(["import", "--diffusers", folder, "--out", tmp_path / "r"], capsys)
    assert_user_error(code, err, fragment)
    assert not (tmp_path / "r").exists() and not list(tmp_path.glob(".r.*"))


def test_an_existing_run_directory_is_never_overwritten(folders, tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "keep.txt").write_text("mine")
    code, _, err = run(["import", "--diffusers", folders / "pipe", "--out", tmp_path / "r"], capsys)
    assert_user_error(code, err, "already exists")
    assert (tmp_path / "r" / "keep.txt").read_text() == "mine"


def test_the_score_view_takes_an_imported_run(folders, capsys):
    """eval --nll on an imported pixel run (against held-out digits): the ODE likelihood and its ELBO bound, finite
    and in order; without --data there is no data of its own to score, one sentence."""
    code, out, err = run(["eval", "--nll", "--run", folders / "pipe-run", "--data", "digits", "--n", 8, "--probes", 1,
                          "--elbo-strata", 20, "--tol", "1e-3", "--json"], capsys)
    assert code == 0, err
    m = json.loads(out)
    assert np.isfinite(m["nll_ode"]) and m["unit"] == "bits/dim" and m["nll_elbo"] + 3 * m["nll_elbo_se"] > m["nll_ode"]
    code, _, err = run(["eval", "--nll", "--run", folders / "pipe-run", "--n", 8], capsys)
    assert_user_error(code, err, "is not image data")


def test_an_imported_run_exports_to_onnx(folders, tmp_path, capsys):
    import importlib.util

    code, _, err = run(["export", "--run", folders / "pipe-run", "--out", tmp_path / "onnx", "--sampler", "ddim",
                        "--steps", 5], capsys)
    assert code == 0, err
    spec = importlib.util.spec_from_file_location("exported_sample", tmp_path / "onnx" / "sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    noise = noise_of(8, (4, 1, 8, 8)).numpy()
    theirs = module.Exported(tmp_path / "onnx").sample(noise)
    assert_parity(theirs, sample_run(folders / "pipe-run", 4, "ddim", 5, noise=noise), tol=1e-3)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_samples_an_imported_run(folders, name):
    """An imported run goes through every diffkit sampler, unconditional and class-conditional (a diffusers class
    U-Net has no trained null class, so at w = 1): every step finite before the final clip to [0, 1]; bitwise the
    same again from the same seed; the class changes the images (the network and its cond are used); a stochastic
    sampler's own draws follow its seed (same x_T, another seed: other images)."""
    for folder, channels, kw in (("pipe-run", 1, {}), ("model-run", 3, {"cond": [0, 2]})):
        run_ = load_run(folders / folder)
        steps = 6 if name == "ddpm" else 3
        records = []
        a = sample_run(run_, 2, name, steps, seed=1, callback=records.append, **kw)
        assert a.shape == (2, channels, 8, 8) and records and all(bool(torch.isfinite(r.x).all()) for r in records)
        np.testing.assert_array_equal(a, sample_run(run_, 2, name, steps, seed=1, **kw))
        if kw:
            assert np.abs(a - sample_run(run_, 2, name, steps, seed=1, cond=[2, 0])).max() > 1e-3
        if name in STOCHASTIC:
            x_T = noise_of(5, (2, channels, 8, 8)).numpy()
            b, c = (sample_run(run_, 2, name, steps, seed=s, noise=x_T, **kw) for s in (1, 2))
            assert np.abs(b - c).max() > 1e-3


def test_an_imported_runs_samples_go_through_eval(folders, tmp_path, capsys):
    """`sample` then `eval` on an imported run (a 1x8x8 pipeline, scored against digits as any digits-shaped run):
    the judge's FD over its floor on the 64 samples; the straightness view takes the run too, as the library
    measures it."""
    from diffkit.runs.score import straightness_run

    code, _, err = run(["sample", "--run", folders / "pipe-run", "--n", 64, "--sampler", "ddim", "--steps", 5,
                        "--seed", 0, "--out", tmp_path / "s.npy", "--quiet"], capsys)
    assert code == 0, err
    code, out, err = run(["eval", "--samples", tmp_path / "s.npy", "--data", "digits", "--json"], capsys)
    assert code == 0, err
    m = json.loads(out)
    assert m["n"] == 64 and np.isfinite(m["fd"]) and m["fd"] > m["fd_floor"] > 0
    code, out, err = run(["eval", "--straightness", "--run", folders / "pipe-run", "--n", 16, "--steps", 10, "--json"],
                         capsys)
    assert code == 0, err
    s = json.loads(out)
    assert np.isfinite(s["straightness"]) and s["straightness"] >= 0
    assert s["straightness"] == pytest.approx(
        straightness_run(load_run(folders / "pipe-run"), 16, "ddim", 10)["straightness"], rel=1e-6)
