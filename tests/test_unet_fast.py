"""The U-Net's sampling fast path (nn/unet_fast.py): channels_last activations and a chunk sized to the image; the
same samples as the plain path up to rounding, and the plain path one switch away (load_run(fast=False))."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_images_cli import TINY_FLAGS

from diffkit.cli import main
from diffkit.nn.unet_fast import ChannelsLast, sampling_chunk
from diffkit.runs import load_run, sample_run
from diffkit.runs.pipeline import with_precision


@pytest.mark.parametrize("shape, chunk, chunk_bf16", [((1, 8, 8), 512, 512), ((1, 28, 28), 32, 64),
                                                      ((3, 32, 32), 32, 64), ((4, 7, 7), 512, 512),
                                                      ((4, 16, 16), 128, 256),
                                                      ((3, 64, 64), 16, 16), ((3, 128, 128), 16, 16)])
def test_the_chunk_keeps_about_the_same_bytes_per_call(shape, chunk, chunk_bf16):
    """bf16 activations take half the bytes: twice the pixels per call (measured faster: unet_fast's docstring)."""
    assert sampling_chunk(shape) == sampling_chunk(shape, "fp32") == chunk
    assert sampling_chunk(shape, "bf16") == chunk_bf16


def test_a_bf16_run_samples_at_its_own_chunk(tmp_path):
    out = tmp_path / "mnist"
    assert main(["train", "--data", "mnist5k", "--cond", "--out", str(out), "--steps", "2", *TINY_FLAGS]) == 0
    assert load_run(out, precision="bf16").denoiser.chunk == 64
    assert load_run(out, precision="fp32").denoiser.chunk == 32
    assert with_precision(load_run(out, precision="fp32"), "bf16").denoiser.chunk == 64  # sample_run(precision=)
    assert with_precision(load_run(out, precision="bf16"), "fp32").denoiser.chunk == 32
    plain = with_precision(load_run(out, fast=False, precision="fp32"), "bf16")  # the plain path stays plain
    assert plain.denoiser.chunk is None and not any(
        getattr(m, "lean", False) for m in plain.network.modules())


def test_fast_unet_sampling_equals_the_plain_path_up_to_rounding(tmp_path):
    out = tmp_path / "digits"
    assert main(["train", "--data", "digits", "--cond", "--out", str(out), "--steps", "20", *TINY_FLAGS]) == 0
    fast, plain = load_run(out, precision="fp32"), load_run(out, fast=False, precision="fp32")
    assert isinstance(fast.denoiser.network, ChannelsLast) and fast.denoiser.chunk == 512
    assert not isinstance(plain.denoiser.network, ChannelsLast) and plain.denoiser.chunk is None
    blocks = [[m.lean for m in r.network.modules() if type(m).__name__ == "ResBlock"] for r in (fast, plain)]
    assert blocks[0] and all(blocks[0]) and not any(blocks[1])  # the lean residual blocks: the fast path's only
    assert fast.network.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    kw = {"cond": [i % 10 for i in range(600)], "guidance": 3.0, "seed": 2}  # 600 > one chunk: two calls a level
    a, b = sample_run(fast, 600, "dpmpp-2m", 8, **kw), sample_run(plain, 600, "dpmpp-2m", 8, **kw)
    assert a.shape == b.shape and 0 <= np.abs(a - b).max() < 1e-4 and a.std() > 0.05


def test_the_lean_residual_block_is_the_plain_one_up_to_rounding():
    """unet.ResBlock._lean_forward (in-place SiLU, one addcmul, the residual added in place) against forward, with
    every weight random (the zero-initialised output conv too) and a skip conv; autograd or train mode: plain."""
    from diffkit.nn.unet import ResBlock, UNetConfig

    torch.manual_seed(0)
    block = ResBlock(UNetConfig(), 16, 32, 64).eval()
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x, emb = torch.randn(4, 16, 12, 12), torch.randn(4, 64)
    x_before = x.clone()
    with torch.no_grad():
        plain = block(x, emb)
        block.lean = True
        lean = block(x, emb)
    assert plain.abs().max() > 0.5 and (plain - lean).abs().max() < 1e-5 and torch.equal(x, x_before)
    out = block(x, emb)  # autograd on: the plain path, which in-place ops would break
    out.sum().backward()
    assert torch.equal(x, x_before) and block.conv1.weight.grad is not None


def _norm_and_map(seed: int):
    """A GroupNorm(4, 16) with random affine parameters and a bf16 channels_last map whose channels differ in mean
    (up to 50 off zero) and scale, the first group's mean far from its spread, the last group nearly constant (its
    variance below eps)."""
    from diffkit.nn.unet import GroupNorm

    torch.manual_seed(seed)
    norm = GroupNorm(4, 16)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    std = torch.rand(1, 16, 1, 1) * 3 + 0.1
    std[:, 12:] = 1e-3
    mean = torch.linspace(-50, 50, 16).reshape(1, 16, 1, 1) * torch.rand(1, 16, 1, 1)
    mean[:, :4] = 40.0  # the first group: its pooled mean ~20 of its std off zero (the centred route)
    mean[:, 12:] = 5.0
    x = torch.randn(4, 16, 8, 8) * std + mean
    return norm, x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)


def _within_bf16_rounding(y: torch.Tensor, exact: torch.Tensor) -> bool:
    """y (bf16) is `exact` (float32) up to bf16's rounding of the coefficients and of the output: one bf16 step
    of the value (2^-7 relative) and half a step of the map's scale (where terms cancel), whatever the map's mean."""
    return bool(((y.float() - exact).abs() <= exact.abs() * 2.0**-7 + exact.abs().max() * 2.0**-8).all())


def test_group_norm_of_a_bf16_channels_last_map_keeps_its_layout_and_the_float32_statistics(monkeypatch):
    """unet.GroupNorm: a bf16 map in channels_last (the fast path under bf16 autocast) comes back in bf16 and
    channels_last; without autograd through `modulated` (float32 statistics: the float32 route's result to one
    bf16 step, at any offset of the mean), with autograd through float32 to the
    bit; NCHW and float32 maps take nn.GroupNorm's own path, to the bit."""
    from diffkit.nn.unet import GroupNorm

    norm, cl = _norm_and_map(0)
    exact = torch.nn.functional.group_norm(cl.float(), 4, norm.weight, norm.bias, norm.eps)
    calls = []
    modulated = GroupNorm.modulated
    monkeypatch.setattr(GroupNorm, "modulated", lambda self, *a: calls.append(1) or modulated(self, *a))
    with torch.no_grad():
        y = norm(cl)
    assert calls and y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    assert not y.is_contiguous() and _within_bf16_rounding(y, exact)
    torch.testing.assert_close(y[:, 12:].float(), norm.bias[12:].reshape(1, 4, 1, 1).expand(4, 4, 8, 8), rtol=0,
                               atol=1e-2)  # a constant group: its bias
    centred = torch.randn(4, 16, 8, 8).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():  # means near zero: folded into the offset, one pass
        y = norm(centred)
    assert _within_bf16_rounding(y, torch.nn.functional.group_norm(centred.float(), 4, norm.weight, norm.bias,
                                                                    norm.eps))
    calls.clear()
    with torch.enable_grad():
        assert torch.equal(norm(cl), exact.to(torch.bfloat16)) and not calls
    x = cl.float().contiguous()
    assert torch.equal(norm(x), torch.nn.GroupNorm.forward(norm, x))
    nchw = x.to(torch.bfloat16)
    assert torch.equal(norm(nchw), torch.nn.GroupNorm.forward(norm, nchw)) and not calls


def test_the_modulated_norm_applies_the_adaptive_scale_and_shift():
    """GroupNorm.modulated(x, scale, shift) = norm(x) * (1 + scale) + shift, per image and channel (adaptive group
    norm): a bf16 map to one bf16 step of the float32 arithmetic on it, the scale and shift as `.chunk` views
    (as the residual block passes them); float32 through torch's kernel and one addcmul, to the bit."""
    norm, cl = _norm_and_map(1)
    scale, shift = (torch.randn(4, 32, 1, 1) * 0.3).chunk(2, dim=1)
    with torch.no_grad():
        y = norm.modulated(cl, scale.to(torch.bfloat16), shift.to(torch.bfloat16))
        x = cl.float()
        assert torch.equal(norm.modulated(x, scale, shift), torch.addcmul(shift, norm(x), 1 + scale))
    exact = torch.nn.functional.group_norm(cl.float(), 4, norm.weight, norm.bias, norm.eps) * (
        1 + scale.to(torch.bfloat16).float()) + shift.to(torch.bfloat16).float()
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    assert _within_bf16_rounding(y, exact)


def test_the_lean_block_under_bf16_autocast_is_as_close_to_float32_as_the_plain_one():
    """The production call: a residual block on the fast path (lean, channels_last, bf16 autocast) against the same
    block in float32; its error is of the plain bf16 block's size (NCHW, torch's norms), not larger."""
    from diffkit.nn.unet import ResBlock, UNetConfig

    torch.manual_seed(2)
    block = ResBlock(UNetConfig(), 16, 32, 64).eval()
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x, emb = torch.randn(8, 16, 12, 12) * 2 + 1, torch.randn(8, 64)
    with torch.no_grad():
        reference = block(x, emb)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain = block(x, emb).float()
            block.lean = True
            lean = block(x.contiguous(memory_format=torch.channels_last), emb)
    assert lean.is_contiguous(memory_format=torch.channels_last) and reference.abs().max() > 1
    error, plain_error = (lean.float() - reference).abs().max(), (plain - reference).abs().max()
    assert 0 < plain_error and error <= 2 * plain_error, (error, plain_error)
