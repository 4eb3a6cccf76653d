"""The MLP's sampling fast path (fold_for_sampling: biases folded; one time for the whole batch, or each distinct
time and class embedded once) computes the same function as MLP.forward, and the front door's chunking changes
nothing."""

from __future__ import annotations

import pytest
import torch

from diffkit import Denoiser, NoiseSchedule
from diffkit.nn.mlp import MLP, MLPConfig
from diffkit.nn.mlp_fast import FoldedMLP, fold_for_sampling, shares_one_time
from diffkit.nn.registry import for_sampling


def _random_mlp(cfg, seed=0):
    torch.manual_seed(seed)
    net = MLP(cfg)
    for p in net.parameters():  # non-zero everywhere, including the zero-initialised output layer
        torch.nn.init.normal_(p, std=0.3)
    return net.eval()


@pytest.mark.parametrize("cfg", [MLPConfig(), MLPConfig(norm=True), MLPConfig(num_classes=3),
                                 MLPConfig(fourier_features=0, depth=2)], ids=["default", "norm", "classes", "plain"])
@pytest.mark.parametrize("classes", ["one", "mixed"])
@pytest.mark.parametrize("times", ["shared", "levels", "distinct"])
def test_folded_path_matches_plain_forward(cfg, classes, times):
    net = _random_mlp(cfg)
    folded = fold_for_sampling(net)
    x, t = torch.randn(300, 2), torch.tensor([321.5]).expand(300)  # shared time, stride 0
    if times == "levels":  # a distillation teacher's batch: a few levels (fractional), each on many rows
        t = torch.tensor([0.0, 12.25, 321.5, 998.0])[torch.randint(0, 4, (300,))]
    elif times == "distinct":
        t = torch.rand(300) * 999
    cond = None
    if cfg.num_classes:
        cond = torch.tensor([1]).expand(300) if classes == "one" else torch.randint(0, 4, (300,))
    with torch.no_grad():
        fast = folded(x, t, cond)
        plain = net(x, t.contiguous(), None if cond is None else cond.contiguous())
    assert plain.abs().max() > 0.1
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    # a different time gives a different output (the embedding reaches the folded biases)
    with torch.no_grad():
        assert (folded(x, torch.tensor([20.0]).expand(300), cond) - fast).abs().max() > 1e-3
        if times != "shared":  # and each row reads its own time: rows moved to another time change alone
            t2 = t.clone()
            t2[:10] = 20.0
            moved = folded(x, t2, cond)
            assert (moved[:10] - fast[:10]).abs().max() > 1e-3
            torch.testing.assert_close(moved[10:], fast[10:], rtol=1e-5, atol=1e-5)


def test_folded_path_is_taken_without_gradients_and_class_blends(monkeypatch):
    net = _random_mlp(MLPConfig(num_classes=3))
    folded = fold_for_sampling(net)
    calls = []
    monkeypatch.setattr(MLP, "forward", lambda self, *a: calls.append(1) or torch.zeros(len(a[0]), 2))
    with torch.no_grad():
        folded(torch.randn(10, 2), torch.tensor([5.0]).expand(10))  # expanded: folded, no plain call
        folded(torch.randn(10, 2), torch.linspace(0, 999, 10), torch.randint(0, 4, (10,)))  # per-row: folded too
        assert calls == []
        folded(torch.randn(10, 2), torch.linspace(0, 999, 10), torch.rand(10, 4))  # a class blend: the plain forward
        assert calls == [1]
    assert shares_one_time(torch.tensor([3.0]).expand(4)) and not shares_one_time(torch.full((4,), 3.0))


def test_folded_path_is_a_snapshot_without_gradients():
    net = _random_mlp(MLPConfig())
    folded = FoldedMLP(net)
    x = torch.randn(50, 2, requires_grad=True)
    out = folded(x, torch.tensor([10.0]).expand(50))  # gradients on: falls back to the plain forward
    assert out.requires_grad


@pytest.mark.parametrize("same_time", [True, False], ids=["shared", "per-point-time"])
def test_front_door_chunks_match_one_pass(same_time):
    """The sampling front door runs the folded MLP in chunks; the chunk seams change nothing."""
    net = _random_mlp(MLPConfig(), seed=1)
    schedule = NoiseSchedule.from_name("linear", 1000)
    plain = Denoiser(net, schedule, "v")
    fast_net, chunk = for_sampling(net, fast=True)
    assert isinstance(fast_net, FoldedMLP) and chunk == 25_000
    fast = Denoiser(fast_net, schedule, "v", chunk=128)  # 300 = 128 + 128 + 44
    x = torch.randn(300, 2)
    t = 77.0 if same_time else torch.linspace(0, 999, 300)
    with torch.no_grad():
        for a, b in zip(fast(x, t), plain(x, t)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_folded_path_under_an_enclosing_bf16_autocast_stays_float32():
    """A distillation step timed or trained in bf16 calls its MLP teacher's folded path inside torch.autocast: the
    folded path keeps its float32 arithmetic (in-place matmuls would mix dtypes) and gives the float32 result."""
    net = _random_mlp(MLPConfig())
    folded = fold_for_sampling(net)
    x, t = torch.randn(64, 2), torch.rand(64) * 999
    with torch.no_grad():
        plain = folded(x, t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            inside = folded(x, t)
    assert inside.dtype == torch.float32 and torch.equal(inside, plain)
