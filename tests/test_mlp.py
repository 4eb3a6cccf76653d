"""The MLP's sampling path (one time for the whole batch, biases folded) computes the same function."""

from __future__ import annotations

import pytest
import torch

from diffkit.nn.mlp import MLP, MLPConfig


@pytest.mark.parametrize("cfg", [MLPConfig(), MLPConfig(norm=True), MLPConfig(num_classes=3),
                                 MLPConfig(fourier_features=0, depth=2)], ids=["default", "norm", "classes", "plain"])
def test_shared_time_path_matches_module_by_module(cfg):
    torch.manual_seed(0)
    net = MLP(cfg)
    for p in net.parameters():  # non-zero everywhere, including the zero-initialised output layer
        torch.nn.init.normal_(p, std=0.3)
    net.eval()
    x, t = torch.randn(300, 2), torch.full((300,), 321.5)
    cond = torch.full((300,), 1) if cfg.num_classes else None
    with torch.no_grad():
        fast = net(x, t, cond)
    reference = net(x, t, cond)  # autograd on: the generic path
    assert reference.requires_grad and not fast.requires_grad
    assert reference.abs().max() > 0.1
    torch.testing.assert_close(fast, reference.detach(), rtol=1e-5, atol=1e-5)
    # and a different time gives a different output (the embedding reaches the folded biases)
    with torch.no_grad():
        assert (net(x, torch.full((300,), 20.0), cond) - fast).abs().max() > 1e-3


@pytest.mark.parametrize("same_time", [True, False], ids=["shared", "per-point-time"])
def test_chunked_passes_match_one_pass(monkeypatch, same_time):
    """Without gradients a batch runs in chunks of SHARED_CHUNK points; the chunk seams change nothing."""
    from diffkit.nn import mlp

    torch.manual_seed(1)
    net = MLP(MLPConfig()).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(300, 2)
    t = torch.full((300,), 77.0) if same_time else torch.linspace(0, 999, 300)
    reference = net(x, t).detach()  # autograd on: one generic pass
    monkeypatch.setattr(mlp, "SHARED_CHUNK", 128)  # 300 = 128 + 128 + 44
    with torch.no_grad():
        chunked = net(x, t)
    torch.testing.assert_close(chunked, reference, rtol=1e-5, atol=1e-5)
    assert chunked.shape == (300, 2)
