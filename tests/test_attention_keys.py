"""`--attention-keys N` (UNetConfig.attention_keys): self-attention whose keys and values are average-pooled to at
most N positions (PVT v2's linear spatial-reduction attention). It is the full attention where the map is small
enough or piecewise constant over the pooling windows, costs fewer FLOPs where it pools, and travels through
training, the config and the ONNX export; diffusers' UNet2DModel, which attends to every position, refuses it."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F
from test_cli import run
from test_images_cli import TINY_FLAGS, assert_user_error
from torch.utils.flop_counter import FlopCounterMode

from diffkit.errors import ConfigError
from diffkit.nn.unet import SelfAttention, UNet, UNetConfig, key_pool

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


def test_on_a_map_constant_over_the_windows_pooling_changes_nothing():
    # four equal keys weigh as one key with log 4 added to every score: the softmax is unchanged
    coarse = torch.randn(3, 16, 4, 4)
    x = F.interpolate(coarse, scale_factor=2.0, mode="nearest")
    full, pooled = attention(0, seed=1), attention(16, seed=1)
    with torch.no_grad():
        assert torch.allclose(pooled(x), full(x), atol=1e-5)


def test_it_costs_fewer_flops_and_the_config_checks_it():
    def flops(keys):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            UNet(dataclasses.replace(CFG, attention_keys=keys))(torch.randn(1, 3, 32, 32), torch.rand(1))
        return counter.get_total_flops()

    assert flops(64) < 0.8 * flops(0)
    for bad in (-1, 2.5, True):
        with pytest.raises(ConfigError, match="attention_keys"):
            dataclasses.replace(CFG, attention_keys=bad).check()


def test_the_flag_trains_exports_to_onnx_and_is_refused_where_it_does_not_map(tmp_path, capsys):
    out = tmp_path / "r"
    code, _, err = run(["train", "--data", "digits", "--out", out, "--steps", "4", "--attention-keys", "4",
                        *TINY_FLAGS], capsys)
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["network"]["attention_keys"] == 4
    code, _, err = run(["export", "--run", out, "--out", tmp_path / "onnx", "--steps", "4"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "onnx" / "plan.json").read_text())["onnx_vs_torch"] <= 1e-4
    code, _, err = run(["export", "--run", out, "--format", "diffusers", "--out", tmp_path / "pipe"], capsys)
    assert_user_error(code, err, "pools keys and values to at most 4 positions")
    assert not (tmp_path / "pipe").exists()
    for flags, fragment in [(["--attention-keys", "-1"], "--attention-keys must be an integer >= 0"),
                            (["--attention-keys", "8", "--net", "dit"], "shape the U-Net")]:
        code, _, err = run(["train", "--data", "digits", "--out", tmp_path / "bad", *flags], capsys)
        assert_user_error(code, err, fragment)
        assert not (tmp_path / "bad").exists()
