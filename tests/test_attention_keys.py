"""`--attention-keys N` (UNetConfig.attention_keys): self-attention whose keys and values are average-pooled to at
most N positions (PVT v2's linear spatial-reduction attention), the default of the 32 px preset. It is the full
attention where the map is small enough or piecewise constant over the pooling windows (partial edge windows
included), costs fewer FLOPs where it pools, and travels through training, the config, the ONNX export and the
diffusers export (a UNet2DModel subclass shipped in the folder, loaded with trust_remote_code=True)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_cli import run
from test_images_cli import TINY_FLAGS, assert_user_error
from torch.utils.flop_counter import FlopCounterMode

from diffkit.errors import ConfigError
from diffkit.nn.registry import network_from_dict
from diffkit.nn.unet import SelfAttention, UNet, UNetConfig, key_pool
from diffkit.runs import sample_run, train_config
from diffkit.runs.presets import unet_preset

CFG = UNetConfig(in_channels=3, channels=16, channel_mult=(1, 2), attention_levels=(0, 1), head_channels=8)


def attention(keys: int, seed: int = 0) -> SelfAttention:
    layer = SelfAttention(dataclasses.replace(CFG, attention_keys=keys), 16).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():  # the output projection too (it starts at zero)
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return layer


def test_the_window_is_the_smallest_power_of_two_that_leaves_at_most_n_positions():
    assert [key_pool(16, 16, 64), key_pool(16, 16, 63), key_pool(16, 16, 256), key_pool(8, 8, 64)] == [2, 4, 1, 1]
    assert key_pool(7, 7, 16) == 2 and key_pool(32, 32, 0) == 1 and key_pool(5, 9, 4) == 8  # ceil: 1 x 2 positions


def test_pooled_attention_is_the_formula_and_the_full_one_where_nothing_pools():
    x = torch.randn(2, 16, 8, 8)
    full, pooled = attention(0), attention(16)
    pooled.load_state_dict(full.state_dict())
    assert torch.equal(attention(64)(x), attention(0)(x))  # 64 positions: nothing to pool
    with torch.no_grad():  # by hand: 2 heads of 8 channels, keys and values averaged over 2x2 windows
        q, k, v = full.qkv(full.norm(x)).chunk(3, dim=1)
        k, v = (F.avg_pool2d(a, 2).reshape(2, 2, 8, 16) for a in (k, v))
        q = q.reshape(2, 2, 8, 64)
        weights = torch.softmax(q.transpose(-1, -2) @ k / math.sqrt(8), dim=-1)  # [B, heads, 64 queries, 16 keys]
        h = (weights @ v.transpose(-1, -2)).transpose(-1, -2).reshape(2, 16, 8, 8)
        want = x + full.out(h)
        assert torch.allclose(pooled(x), want, atol=1e-5)
        assert not torch.allclose(pooled(x), full(x), atol=1e-3)


@pytest.mark.parametrize("side, keys", [(8, 16), (7, 16), (6, 4)])
def test_on_a_map_constant_over_the_windows_pooling_changes_nothing(side, keys):
    # n equal keys weigh as one key with log n added to its score: the softmax is unchanged, partial windows too
    r = key_pool(side, side, keys)
    coarse = torch.randn(3, 16, -(-side // r), -(-side // r))
    x = coarse.repeat_interleave(r, dim=2).repeat_interleave(r, dim=3)[..., :side, :side]
    full, pooled = attention(0, seed=1), attention(keys, seed=1)
    with torch.no_grad():
        assert r > 1 and torch.allclose(pooled(x), full(x), atol=1e-5), (side, r)


def test_it_costs_fewer_flops_and_the_config_checks_it():
    def flops(keys):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            UNet(dataclasses.replace(CFG, attention_keys=keys))(torch.randn(1, 3, 32, 32), torch.rand(1))
        return counter.get_total_flops()

    assert flops(64) < 0.8 * flops(0)
    full, pooled = (dataclasses.replace(CFG, attention_keys=k) for k in (0, 64))
    assert pooled.activation_floats((3, 32, 32)) < full.activation_floats((3, 32, 32))  # the memory check knows
    for bad in (-1, 2.5, True):
        with pytest.raises(ConfigError, match="attention_keys"):
            dataclasses.replace(CFG, attention_keys=bad).check()


def test_the_flag_trains_exports_to_onnx_and_bad_values_are_refused(tmp_path, capsys):
    out = tmp_path / "r"
    code, _, err = run(["train", "--data", "digits", "--out", out, "--steps", "4", "--attention-keys", "4",
                        *TINY_FLAGS], capsys)
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["network"]["attention_keys"] == 4
    code, _, err = run(["export", "--run", out, "--out", tmp_path / "onnx", "--steps", "4"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "onnx" / "plan.json").read_text())["onnx_vs_torch"] <= 1e-4
    for flags, fragment in [(["--attention-keys", "-1"], "--attention-keys must be an integer >= 0"),
                            (["--attention-keys", "8", "--net", "dit"], "shape the U-Net")]:
        code, _, err = run(["train", "--data", "digits", "--out", tmp_path / "bad", *flags], capsys)
        assert_user_error(code, err, fragment)
        assert not (tmp_path / "bad").exists()


def test_the_preset_pools_from_32_px_and_an_older_config_attends_everywhere():
    assert unet_preset((3, 32, 32), 3).attention_keys == 64 and unet_preset((3, 64, 64)).attention_keys == 64
    assert unet_preset((1, 28, 28), 10).attention_keys == 0 and unet_preset((1, 8, 8)).attention_keys == 0
    assert train_config({"data": "shapes", "cond": True, "attention_keys": 0}).network.attention_keys == 0
    old = {k: v for k, v in dataclasses.asdict(CFG).items() if k != "attention_keys"}  # before the field
    assert network_from_dict({"kind": "unet", **old}).attention_keys == 0


def test_a_pooled_run_exports_to_a_diffusers_folder_that_samples_its_images(tmp_path, capsys):
    from diffusers import DiffusionPipeline

    out, folder = tmp_path / "r", tmp_path / "pipe"
    code, _, err = run(["train", "--data", "digits", "--objective", "flow", "--out", out, "--steps", "6",
                        "--channels", "32", "--attention", "0,1", "--attention-keys", "16", "--quiet"], capsys)
    assert code == 0, err
    code, printed, err = run(["export", "--run", out, "--format", "diffusers", "--out", folder], capsys)
    assert code == 0 and "unet/: PooledUNet2DModel" in printed and "trust_remote_code=True" in printed, err
    with pytest.raises(ValueError):  # diffusers runs the folder's code only when asked to
        DiffusionPipeline.from_pretrained(folder)
    pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe.unet).__name__ == "PooledUNet2DModel" and pipe.unet.config.attention_keys == 16
    theirs = pipe(batch_size=4, generator=torch.Generator().manual_seed(5), num_inference_steps=8,
                  output_type="np").images
    noise = torch.randn((4, 1, 8, 8), generator=torch.Generator().manual_seed(5))  # as diffusers' randn_tensor
    ours = sample_run(out, 4, "euler", 8, noise=noise.numpy(), spacing="diffusers-linspace", precision="fp32")
    assert np.abs(ours.transpose(0, 2, 3, 1) - theirs).max() <= 1e-4 and theirs.std() > 0.01
    # and back: `diffkit import` builds the pooled U-Net from diffkit's own module, never the folder's copy
    (folder / "unet" / "diffusers_pooled_unet.py").write_text("raise SystemExit('the folder code ran')\n")
    code, _, err = run(["import", "--diffusers", folder, "--out", tmp_path / "back"], capsys)
    assert code == 0, err
    back = sample_run(tmp_path / "back", 4, "euler", 8, noise=noise.numpy(), spacing="diffusers-linspace",
                      precision="fp32")
    assert np.abs(back - ours).max() <= 1e-4
    config = json.loads((folder / "unet" / "config.json").read_text())
    for keys, fragment in ((0, "a whole number >= 1"), (None, "got None"), (True, "got True")):
        (folder / "unet" / "config.json").write_text(json.dumps({**config, "attention_keys": keys}))
        code, _, err = run(["import", "--diffusers", folder, "--out", tmp_path / f"bad{keys}"], capsys)
        assert_user_error(code, err, fragment)
        assert not (tmp_path / f"bad{keys}").exists()


def test_partial_windows_export_to_onnx(tmp_path):
    import onnxruntime as ort

    layer, x = attention(16, seed=2), torch.randn(2, 16, 7, 7)  # 7x7 pooled 2x2: windows of 4, 2 and 1 pixels
    path = tmp_path / "attention.onnx"
    torch.onnx.export(layer, (x,), str(path), input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}},
                      dynamo=False)
    session = ort.InferenceSession(str(path))
    for batch in (2, 3):
        x = torch.randn(batch, 16, 7, 7)
        with torch.no_grad():
            want = layer(x).numpy()
        assert np.abs(session.run(None, {"x": x.numpy()})[0] - want).max() <= 1e-4
