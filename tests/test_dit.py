"""The DiT (Peebles & Xie 2023): shapes, adaLN-Zero start, what it reads, where each token's patch lands, the
registry, and a DiT run through the CLI (train, guided sampling, resume, bad patch sizes)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from test_cli import run
from test_images import randomized
from test_images_cli import assert_user_error

from diffkit.cli import main
from diffkit.nn.dit import DiT, DiTConfig, dit_preset, sincos_2d
from diffkit.nn.registry import build_network, network_from_dict, network_to_dict
from diffkit.runs import default_config, train_run

TINY = {"patch_size": 2, "width": 16, "depth": 2, "heads": 2}


@pytest.mark.parametrize("C, H, W, p", [(1, 8, 8, 2), (3, 16, 12, 4), (4, 7, 7, 7), (2, 6, 10, 1)])
def test_dit_keeps_the_shape_and_starts_at_zero(C, H, W, p):
    net = DiT(DiTConfig(in_channels=C, **{**TINY, "patch_size": p}))
    x, t = torch.randn(3, C, H, W), torch.tensor([0.0, 500.0, 999.0])
    assert torch.equal(net(x, t), torch.zeros(3, C, H, W))  # zero-initialised final layer
    out = randomized(net)(x, t)
    assert out.shape == (3, C, H, W) and out.abs().max() > 1e-3


def test_adaln_zero_blocks_start_as_the_identity():
    net = DiT(DiTConfig(**TINY))
    tokens, c = torch.randn(2, 16, 16), torch.randn(2, 16)
    for block in net.blocks:
        assert torch.equal(block(tokens, c), tokens)


def test_dit_reads_time_class_and_every_patch():
    net = randomized(DiT(DiTConfig(num_classes=3, **TINY)))
    x, t = torch.randn(2, 1, 8, 8), torch.full((2,), 300.0)
    base = net(x, t, torch.tensor([0, 0]))
    assert (net(x, t + 200, torch.tensor([0, 0])) - base).abs().max() > 1e-4
    assert (net(x, t, torch.tensor([2, 2])) - base).abs().max() > 1e-4
    assert (net(x, t) - net(x, t, torch.tensor([3, 3]))).abs().max() == 0  # no cond = the null class 3
    x2 = x.clone()
    x2[:, :, 0, 0] += 1.0  # attention is global: one corner pixel reaches the opposite patch
    assert (net(x2, t, torch.tensor([0, 0])) - base)[:, :, -1, -1].abs().max() > 1e-6
    torch.testing.assert_close(net(x[:1], t[:1], torch.tensor([0])), base[:1])  # rows are independent


def test_each_token_comes_back_as_its_own_patch():
    """With identity blocks (zero gates), the output at a pixel depends only on the patch holding it: the
    unpatchify puts token (i, j) back at rows i p.., columns j p.."""
    net = DiT(DiTConfig(in_channels=2, patch_size=2, width=16, depth=1, heads=2))
    torch.manual_seed(0)
    for layer in (net.patchify, net.out):
        torch.nn.init.normal_(layer.weight, std=0.3)
    x, t = torch.randn(1, 2, 6, 8), torch.tensor([100.0])
    base = net(x, t)
    for i, j in [(0, 0), (1, 3), (2, 1)]:
        x2 = x.clone()
        x2[:, :, 2 * i, 2 * j + 1] += 1.0
        changed = (net(x2, t) - base).abs().sum(1)[0] > 1e-6  # [H, W]
        expected = torch.zeros(6, 8, dtype=torch.bool)
        expected[2 * i:2 * i + 2, 2 * j:2 * j + 2] = True
        assert torch.equal(changed, expected), (i, j)


def test_position_embeddings_tell_rows_from_columns():
    pos = sincos_2d(16, 3, 4)
    assert pos.shape == (12, 16)
    assert len({tuple(r) for r in pos.round(decimals=5).tolist()}) == 12  # every position distinct
    torch.testing.assert_close(pos[0, :8], pos[1, :8])  # same row: the row half agrees
    torch.testing.assert_close(pos[0, 8:], pos[4, 8:])  # same column: the column half agrees


def test_dit_config_round_trips_and_presets_tile_the_input():
    cfg = DiTConfig(in_channels=3, num_classes=4, **TINY)
    d = json.loads(json.dumps(network_to_dict(cfg)))
    assert d["kind"] == "dit" and network_from_dict(d) == cfg and isinstance(build_network(cfg), DiT)
    assert dit_preset((1, 8, 8)).patch_size == 2 and dit_preset((1, 28, 28)).patch_size == 4
    assert dit_preset((3, 30, 30)).patch_size == 2  # 4 does not divide 30
    with pytest.raises(Exception, match="unknown DiT size"):
        dit_preset((1, 8, 8), size="huge")


def test_a_dit_run_trains_samples_with_guidance_and_resumes_bitwise(tmp_path, capsys):
    flags = ["--data", "digits", "--cond", "--net", "dit", "--dit-size", "tiny", "--steps", "20",
             "--batch-size", "32", "--checkpoint-every", "10", "--quiet"]
    assert main(["train", *flags, "--out", str(tmp_path / "a")]) == 0
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["network"]["kind"] == "dit" and cfg["network"]["num_classes"] == 10

    class Stop(Exception):
        pass

    def stop_at_11(rec):
        if rec.step == 11:
            raise Stop

    config = default_config("digits", cond=True, net="dit", dit_size="tiny")
    config.train.steps, config.train.batch_size, config.train.checkpoint_every = 20, 32, 10
    with pytest.raises(Stop):
        train_run(config, tmp_path / "b", progress=False, callback=stop_at_11)
    train_run(None, tmp_path / "b", resume=True, progress=False)
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    code, _, err = run(["sample", "--run", tmp_path / "a", "--out", tmp_path / "s.npy", "--n", "8", "--class", "3",
                        "--guidance", "3", "--sampler", "dpmpp-2m", "--steps", "5", "--seed", "1", "--quiet"], capsys)
    assert code == 0, err


@pytest.mark.parametrize("flags, fragment", [
    (["--net", "dit", "--patch-size", "3"], "DiT patch size 3 does not divide digits's 8x8; use one of 1, 2, 4, 8"),
    (["--patch-size", "2"], "give --net dit too"),
    (["--net", "dit", "--channels", "8"], "shape the U-Net; a DiT takes"),
    (["--net", "transformer"], "invalid choice"),
])
def test_bad_dit_flags_are_one_sentence(tmp_path, capsys, flags, fragment):
    code, _, err = run(["train", "--data", "digits", "--out", tmp_path / "r", "--steps", 2, *flags], capsys)
    assert_user_error(code, err, fragment)
    assert not (tmp_path / "r").exists()


def test_net_dit_on_points_is_refused(tmp_path, capsys):
    code, _, err = run(["train", "--data", "moons", "--out", tmp_path / "r", "--net", "dit"], capsys)
    assert_user_error(code, err, "--net dit is for images")
