"""LoRA fine-tuning (nn/lora.py through peft, runs/finetune.py): a derived run that stores only its adapters, starts
as its base, loads as base + adapters merged, resumes bitwise, merges into a full run, refuses a replaced base; on
a U-Net, an MLP and an imported diffusers U-Net."""

from __future__ import annotations

import json
import shutil

import diffusers
import numpy as np
import pytest
import torch
from test_cli import run
from test_images_cli import assert_user_error

from diffkit.errors import CheckpointError, ConfigError
from diffkit.nn import lora
from diffkit.runs import load_run, sample_run, train_run
from diffkit.runs.finetune import finetune_config, finetune_run, merge_run
from diffkit.runs.interop import import_diffusers
from diffkit.store.manifest import sha256
from diffkit.store.rundir import MODEL


@pytest.fixture(scope="module")
def tuned(edit_digits_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "tuned"
    finetune_run(edit_digits_dir, "digits", out, rank=4, train_steps=12, progress=False)
    return out


def test_the_run_stores_only_adapters_and_records_its_base(edit_digits_dir, tuned):
    before = sha256((edit_digits_dir / MODEL).read_bytes())
    cfg = json.loads((tuned / "config.json").read_text())
    assert cfg["parent"]["kind"] == "lora" and cfg["parent"]["rank"] == 4 and cfg["parent"]["sha256"] == before
    from safetensors.torch import load_file

    stored = load_file(tuned / MODEL)
    assert stored and all("lora_" in k for k in stored)
    adapters, params = lora.count(lora.attach(load_run(edit_digits_dir).network, 4, cfg["parent"]["targets"]))
    assert sum(v.numel() for v in stored.values()) == adapters < 0.1 * params  # (the tiny net: 6%)
    assert sha256((edit_digits_dir / MODEL).read_bytes()) == before  # the base untouched
    assert any(float(v.abs().max()) > 0 for k, v in stored.items() if "lora_B" in k)  # B left zero: it trained


def test_loading_merges_the_adapters_and_merge_writes_the_same_network(tuned, tmp_path):
    run = load_run(tuned, fast=False)
    base = load_run(run.config.parent.path, fast=False)
    adapted = lora.attach(base.network, 4, run.config.parent.targets)
    from safetensors.torch import load_file

    adapted.load_state_dict(load_file(tuned / MODEL), strict=False)
    x, t, c = torch.randn(3, 1, 8, 8), torch.tensor([10.0, 400.0, 900.0]), torch.tensor([1, 2, 3])
    torch.testing.assert_close(run.network(x, t, c), adapted(x, t, c), atol=1e-5, rtol=1e-5)
    merge_run(tuned, tmp_path / "merged")
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["parent"] is None
    np.testing.assert_array_equal(sample_run(tmp_path / "merged", 6, "ddim", 8, cond=2, guidance=2),
                                  sample_run(tuned, 6, "ddim", 8, cond=2, guidance=2))
    with pytest.raises(ConfigError, match="already exists"):
        merge_run(tuned, tmp_path / "merged")


def test_a_lora_run_starts_as_its_base(edit_digits_dir):
    base = load_run(edit_digits_dir, fast=False).network
    adapted = lora.attach(load_run(edit_digits_dir, fast=False).network, 8, "all")
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([100.0, 700.0])
    torch.testing.assert_close(adapted(x, t, torch.tensor([0, 9])), base(x, t, torch.tensor([0, 9])))


def test_resume_is_bitwise(edit_digits_dir, tmp_path):
    config = finetune_config(edit_digits_dir, "digits", rank=2, train_steps=8)
    config.train.checkpoint_every = 4
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_run(config, straight, progress=False)
    train_run(config, split, progress=False, callback=lambda s: s.step >= 4)  # stops at a checkpoint
    train_run(None, split, resume=True, progress=False)
    assert (straight / MODEL).read_bytes() == (split / MODEL).read_bytes()


def test_a_replaced_base_is_refused_when_loading_and_resuming(edit_digits_dir, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(edit_digits_dir, base)
    out = tmp_path / "tuned"
    config = finetune_config(base, "digits", rank=2, train_steps=6)
    config.train.checkpoint_every = 3
    train_run(config, out, progress=False, callback=lambda s: s.step >= 3)
    (base / MODEL).write_bytes((base / MODEL).read_bytes()[:-4] + b"\0\0\0\0")  # other weights in its place
    with pytest.raises(CheckpointError, match="changed since this LoRA run was made"):
        load_run(out)
    with pytest.raises(CheckpointError, match="changed since this LoRA run was made"):
        train_run(None, out, resume=True, progress=False)


def test_points_and_an_imported_diffusers_unet_take_adapters(tiny_run, tmp_path):
    out = tmp_path / "pts"
    finetune_run(tiny_run, "spiral", out, rank=2, targets="all", train_steps=20, progress=False)
    x = sample_run(out, 64, "ddim", 10)
    assert x.shape == (64, 2) and np.isfinite(x).all()
    assert np.abs(x - sample_run(tiny_run, 64, "ddim", 10)).mean() > 1e-3

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(16, 32), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8)
    diffusers.DDIMPipeline(unet=unet, scheduler=diffusers.DDIMScheduler()).save_pretrained(tmp_path / "pipe")
    import_diffusers(tmp_path / "pipe", tmp_path / "imported")
    finetune_run(tmp_path / "imported", "digits", tmp_path / "imported-lora", rank=4, targets="attention",
                 train_steps=4, progress=False)
    stored = json.loads((tmp_path / "imported-lora" / "config.json").read_text())["parent"]
    assert stored["kind"] == "lora"
    y = sample_run(tmp_path / "imported-lora", 4, "ddim", 6)
    assert y.shape == (4, 1, 8, 8) and np.isfinite(y).all()


def test_a_full_fine_tune_trains_every_weight(edit_digits_dir, tmp_path):
    finetune_run(edit_digits_dir, "digits", tmp_path / "full", full=True, train_steps=3, progress=False)
    cfg = json.loads((tmp_path / "full" / "config.json").read_text())
    assert cfg["parent"]["kind"] == "finetune" and cfg["parent"]["rank"] == 0
    from safetensors.torch import load_file

    assert set(load_file(tmp_path / "full" / MODEL)) == set(load_run(edit_digits_dir).network.state_dict())


@pytest.mark.parametrize("flags, fragment", [
    (["--data", "mnist5k"], "mnist5k holds images of shape [1, 28, 28] but the base run makes [1, 8, 8]"),
    (["--data", "spiral"], "the base run was trained on images, but spiral holds points"),
    (["--data", "digits", "--lora-rank", "0"], "--lora-rank must be a positive integer"),
    (["--data", "digits", "--full", "--lora-rank", "4"], "--full trains every weight"),
    (["--data", "digits", "--lora-targets", "everything"], "invalid choice"),
])
def test_cli_finetune_bad_input_is_one_sentence_and_writes_nothing(edit_digits_dir, tmp_path, capsys, flags,
                                                                   fragment):
    code, _, err = run(["finetune", "--run", edit_digits_dir, "--out", tmp_path / "o", *flags], capsys)
    assert_user_error(code, err, fragment)
    assert not (tmp_path / "o").exists()


def test_cli_finetune_of_a_vae_and_merge_of_a_plain_run_are_refused(digits_vae, edit_digits_dir, tmp_path, capsys):
    code, _, err = run(["finetune", "--run", digits_vae, "--data", "digits", "--out", tmp_path / "o"], capsys)
    assert_user_error(code, err, "is a VAE run")
    code, _, err = run(["merge", "--run", edit_digits_dir, "--out", tmp_path / "m"], capsys)
    assert_user_error(code, err, "is not a LoRA run")
    assert not (tmp_path / "o").exists() and not (tmp_path / "m").exists()


def test_cli_finetune_then_sample(edit_digits_dir, tmp_path, capsys):
    code, out, err = run(["finetune", "--run", edit_digits_dir, "--data", "digits", "--out", tmp_path / "t",
                          "--train-steps", 3, "--quiet"], capsys)
    assert code == 0, err
    assert "sample it with" in out
    code, _, err = run(["sample", "--run", tmp_path / "t", "--class", 3, "--n", 4, "--out", tmp_path / "s.npy",
                        "--quiet"], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "s.npy").shape == (4, 1, 8, 8)
