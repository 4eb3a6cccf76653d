"""`diffkit export --format diffusers` (runs/export_diffusers.py): diffkit's U-Net maps one to one onto diffusers'
UNet2DModel (random weights everywhere, several shapes: equal outputs), an exported run loads offline with
`DiffusionPipeline.from_pretrained` and samples diffkit's images from the same x_T, and what does not map is refused
in one sentence with nothing written."""

from __future__ import annotations

import json

import diffusers
import numpy as np
import pytest
import torch
from test_cli import run
from test_images_cli import TINY_FLAGS, assert_user_error

from diffkit.nn.diffusers_pooled_unet import PooledUNet2DModel
from diffkit.nn.unet import UNet, UNetConfig
from diffkit.runs import load_run, sample_run
from diffkit.runs.export_diffusers import unet2d_config, unet2d_weights

SHAPES = {  # the digits, 28x28 and 32x32 presets (attention at the lowest level; at 16, 8 and 4 px, its keys pooled to
    # 64 positions as the preset does, and every position attended), keys pooled on a 7x7 map (partial windows), more
    # blocks
    "digits": (UNetConfig(in_channels=1, channels=32, channel_mult=(1, 2), num_classes=10), (1, 8, 8)),
    "mnist5k": (UNetConfig(in_channels=1, channels=32, channel_mult=(1, 1, 2), attention_levels=(2,),
                           num_classes=10), (1, 28, 28)),
    "shapes": (UNetConfig(in_channels=3, channels=32, channel_mult=(1, 1, 2, 2), attention_levels=(1, 2, 3),
                          attention_keys=64, num_classes=10), (3, 32, 32)),
    "shapes-full": (UNetConfig(in_channels=3, channels=32, channel_mult=(1, 1, 2, 2), attention_levels=(1, 2, 3),
                               num_classes=10), (3, 32, 32)),
    "pooled-7x7": (UNetConfig(in_channels=1, channels=32, channel_mult=(1, 1, 2), attention_levels=(2,),
                              attention_keys=16), (1, 28, 28)),
    "rgb": (UNetConfig(in_channels=3, channels=16, channel_mult=(1, 2), num_res_blocks=2, attention_levels=(0, 1),
                       head_channels=8, groups=4), (3, 16, 16)),
}


@pytest.mark.parametrize("name", SHAPES)
def test_every_weight_maps_onto_unet2dmodel(name):
    cfg, shape = SHAPES[name]
    torch.manual_seed(0)
    ours = UNet(cfg).eval()
    with torch.no_grad():
        for p in ours.parameters():  # every weight random (the zero-initialised output layers too)
            p.normal_(0, 0.2)
    config = unet2d_config(ours, shape)
    model = PooledUNet2DModel if cfg.attention_keys else diffusers.UNet2DModel  # the export's custom component
    assert config.get("_class_name", "UNet2DModel") == model.__name__
    theirs = model(**{k: v for k, v in config.items() if not k.startswith("_")}).eval()
    theirs.load_state_dict(unet2d_weights(ours), strict=True)  # every key on both sides
    x, t = torch.randn(5, *shape), torch.tensor([0.0, 3.0, 250.0, 640.0, 999.0])
    labels = torch.tensor([0, 4, 9, 10, 2]) if cfg.num_classes else None  # 10: the null class
    with torch.no_grad():
        a = ours(x, t, labels)
        b = theirs(x, t, class_labels=labels).sample
    assert (a - b).abs().max() <= 1e-5 * a.abs().max()


def _train(root, name, *flags):
    from diffkit.cli import main

    assert main(["train", "--data", "digits", *flags, "--out", str(root / name), "--steps", "30", *TINY_FLAGS]) == 0
    return root / name


def noise_of(seed: int, shape) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))  # as diffusers' randn_tensor on a CPU


def test_an_exported_run_samples_diffkits_images_in_a_diffusers_pipeline(tmp_path, capsys, fp32_sampling):
    r = _train(tmp_path, "uncond")
    code, out, err = run(["export", "--run", r, "--format", "diffusers", "--out", tmp_path / "pipe"], capsys)
    assert code == 0 and "DDIMPipeline" in out and "v_prediction" in out and "diffusers-trailing" in out, err
    card = (tmp_path / "pipe" / "README.md").read_text()
    assert "library_name: diffusers" in card and "ddim --spacing diffusers-trailing" in card
    assert "for 30 steps in " in card and "last logged loss" in card
    pipe = diffusers.DiffusionPipeline.from_pretrained(tmp_path / "pipe", local_files_only=True)
    assert type(pipe).__name__ == "DDIMPipeline" and pipe.scheduler.config.beta_schedule == "squaredcos_cap_v2"
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(batch_size=4, generator=torch.Generator().manual_seed(3), num_inference_steps=10, eta=0.0,
                  output_type="np").images
    ours = sample_run(r, 4, "ddim", 10, noise=noise_of(3, (4, 1, 8, 8)).numpy(), spacing="diffusers-trailing")
    assert np.abs(ours.transpose(0, 2, 3, 1) - theirs).max() <= 1e-4
    assert theirs.std() > 0.01  # images, not a constant


def test_an_exported_class_run_samples_its_classes_in_diffusers_loop(tmp_path, capsys, fp32_sampling):
    r = _train(tmp_path, "cond", "--cond")
    assert run(["export", "--run", r, "--format", "diffusers", "--out", tmp_path / "pipe"], capsys)[0] == 0
    assert json.loads((tmp_path / "pipe" / "unet" / "config.json").read_text())["num_class_embeds"] == 11
    unet = diffusers.UNet2DModel.from_pretrained(tmp_path / "pipe" / "unet")
    sched = diffusers.DDIMScheduler.from_pretrained(tmp_path / "pipe" / "scheduler")
    sched.set_timesteps(8)
    x, labels = noise_of(4, (6, 1, 8, 8)), torch.tensor([0, 1, 2, 7, 8, 9])
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(x, t, class_labels=labels).sample, t, x, eta=0.0).prev_sample
    ours = sample_run(r, 6, "ddim", 8, noise=noise_of(4, (6, 1, 8, 8)).numpy(), cond=labels.tolist(), guidance=1.0,
                      spacing="diffusers-trailing")
    assert np.abs(ours - (x / 2 + 0.5).clamp(0, 1).numpy()).max() <= 1e-4


def test_an_exported_flow_run_samples_diffkits_images_in_ddpm_pipeline(tmp_path, capsys, fp32_sampling):
    r = _train(tmp_path, "flow", "--objective", "flow")
    code, out, err = run(["export", "--run", r, "--format", "diffusers", "--out", tmp_path / "pipe"], capsys)
    assert code == 0 and "DDPMPipeline" in out and "--sampler euler --spacing diffusers-linspace" in out, err
    pipe = diffusers.DiffusionPipeline.from_pretrained(tmp_path / "pipe", local_files_only=True)
    assert type(pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(batch_size=4, generator=torch.Generator().manual_seed(5), num_inference_steps=8,
                  output_type="np").images
    ours = sample_run(r, 4, "euler", 8, noise=noise_of(5, (4, 1, 8, 8)).numpy(), spacing="diffusers-linspace")
    assert np.abs(ours.transpose(0, 2, 3, 1) - theirs).max() <= 1e-4
    assert theirs.std() > 0.01
    # and back: `diffkit import` reads the flow scheduler as the flow objective; the run samples the same images
    assert run(["import", "--diffusers", tmp_path / "pipe", "--out", tmp_path / "back"], capsys)[0] == 0
    back = load_run(tmp_path / "back").config
    assert (back.objective.name, back.prediction, back.sampling.spacing) == ("flow", "flow", "diffusers-linspace")
    again = sample_run(tmp_path / "back", 4, "euler", 8, noise=noise_of(5, (4, 1, 8, 8)).numpy())
    assert np.abs(again - ours).max() <= 1e-4


@pytest.mark.parametrize("change, fragment", [
    ({"shift": 3.0}, "shift = 3.0 is not representable"),
    ({"use_dynamic_shifting": True}, "use_dynamic_shifting = true is not representable"),
    ({"use_karras_sigmas": True}, "use_karras_sigmas = true"),
    ({"shift_terminal": 0.1}, "shift_terminal = 0.1"),
    ({"num_train_timesteps": 0}, "num_train_timesteps 0 is not a whole number"),
    ({"num_train_timesteps": 500}, "num_train_timesteps 500 is not representable for a flow"),
    ({"sigma_schedule": "x"}, "cannot represent sigma_schedule"),
])
def test_a_flow_scheduler_that_does_not_map_is_refused_on_import(tmp_path, capsys, change, fragment):
    r = _train(tmp_path, "flow", "--objective", "flow")
    assert run(["export", "--run", r, "--format", "diffusers", "--out", tmp_path / "pipe"], capsys)[0] == 0
    path = tmp_path / "pipe" / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    code, _, err = run(["import", "--diffusers", tmp_path / "pipe", "--out", tmp_path / "back"], capsys)
    assert_user_error(code, err, fragment)
    assert not (tmp_path / "back").exists()


@pytest.mark.parametrize("flags, fragment", [
    (["--objective", "edm"], "trains the edm objective"),
    (["--objective", "flow", "--shift", "3"], "shift 3"),
])
def test_what_does_not_map_is_refused_in_one_sentence(tmp_path, capsys, flags, fragment):
    r = _train(tmp_path, "r", *flags)
    code, _, err = run(["export", "--run", r, "--format", "diffusers", "--out", tmp_path / "out"], capsys)
    assert_user_error(code, err, fragment)
    assert not (tmp_path / "out").exists()


def test_points_text_runs_and_an_existing_folder_are_refused(tiny_run, digits_text_run, tmp_path, capsys):
    for r, fragment in ((tiny_run, "pixel U-Net runs"), (digits_text_run, "latent and text runs")):
        code, _, err = run(["export", "--run", r, "--format", "diffusers", "--out", tmp_path / "out"], capsys)
        assert_user_error(code, err, fragment)
        assert not (tmp_path / "out").exists()
    (tmp_path / "out").mkdir()
    code, _, err = run(["export", "--run", tiny_run, "--format", "diffusers", "--out", tmp_path / "out"], capsys)
    assert_user_error(code, err, "already exists")
    code, _, err = run(["export", "--run", tiny_run, "--format", "diffusers", "--steps", "4", "--out",
                        tmp_path / "o2"], capsys)
    assert_user_error(code, err, "belong to --format onnx")
    assert load_run(tiny_run) is not None


def test_a_class_run_comes_back_from_its_export_guiding_as_it_did(tmp_path, capsys, fp32_sampling):
    """diffkit.json carries what diffusers' configs cannot: imported again, the run has its 10 classes (not the 11
    class embeddings), their names, its trained null class and its guidance interval, and guides as the original."""
    r = _train(tmp_path, "cond", "--cond")
    original = load_run(r).config
    assert run(["export", "--run", r, "--format", "diffusers", "--out", tmp_path / "pipe"], capsys)[0] == 0
    record = json.loads((tmp_path / "pipe" / "diffkit.json").read_text())
    assert record["num_classes"] == record["null_class"] == 10 and record["p_uncond"] == original.train.p_uncond > 0
    assert run(["import", "--diffusers", tmp_path / "pipe", "--out", tmp_path / "back"], capsys)[0] == 0
    back = load_run(tmp_path / "back").config
    assert back.network.num_classes == 10 and back.fitted.class_names == original.fitted.class_names
    assert back.train.p_uncond == original.train.p_uncond
    assert back.sampling.guidance_interval == original.sampling.guidance_interval is not None
    noise, labels = noise_of(5, (6, 1, 8, 8)).numpy(), [0, 1, 2, 7, 8, 9]
    ours, theirs = (sample_run(run_dir, 6, "ddim", 8, noise=noise, cond=labels, guidance=3.0,
                               spacing="diffusers-trailing") for run_dir in (r, tmp_path / "back"))
    assert np.abs(ours - theirs).max() <= 1e-4 and ours.std() > 0.01
    assert np.isfinite(sample_run(tmp_path / "back", 4, "ddim", 8, seed=0)).all()  # unconditional: the null class


def test_an_export_record_that_does_not_fit_its_folder_is_refused(tmp_path, capsys):
    r = _train(tmp_path, "cond", "--cond")
    assert run(["export", "--run", r, "--format", "diffusers", "--out", tmp_path / "pipe"], capsys)[0] == 0
    path = tmp_path / "pipe" / "diffkit.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "null_class": 3}))
    code, _, err = run(["import", "--diffusers", tmp_path / "pipe", "--out", tmp_path / "back"], capsys)
    assert_user_error(code, err, "does not fit this folder", "11 class embeddings")
    assert not (tmp_path / "back").exists()
    path.unlink()  # no record: the U-Net's 11 class embeddings are 11 classes, no null class trained
    assert run(["import", "--diffusers", tmp_path / "pipe", "--out", tmp_path / "plain"], capsys)[0] == 0
    plain = load_run(tmp_path / "plain").config
    assert plain.network.num_classes == 11 and plain.train.p_uncond == 0.0
