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


@pytest.mark.parametrize("shape, chunk", [((1, 8, 8), 512), ((1, 28, 28), 32), ((3, 32, 32), 32), ((4, 7, 7), 512),
                                          ((3, 64, 64), 16)])
def test_the_chunk_keeps_about_the_same_pixels_per_call(shape, chunk):
    assert sampling_chunk(shape) == chunk


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


def test_group_norm_of_a_bf16_channels_last_map_keeps_its_layout_and_the_float32_statistics():
    """unet.GroupNorm: a bf16 map in channels_last (the fast path under bf16 autocast) comes back in bf16 and
    channels_last; without autograd through `modulated` (float32 statistics, one pass x * a + b: within bf16's
    rounding of the float32 route), with autograd through float32 to the bit; NCHW and float32 maps take
    nn.GroupNorm's own path, to the bit."""
    from diffkit.nn.unet import GroupNorm

    torch.manual_seed(0)
    norm = GroupNorm(4, 16)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, 16, 6, 6) * 3 + 1  # an offset mean: E[x^2] - E[x]^2 must not lose the variance
    reference = torch.nn.functional.group_norm(x, 4, norm.weight, norm.bias, norm.eps)
    cl = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    exact = torch.nn.functional.group_norm(cl.float(), 4, norm.weight, norm.bias, norm.eps)  # float32 statistics
    with torch.no_grad():
        y = norm(cl)
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    torch.testing.assert_close(y.float(), exact, rtol=1e-2, atol=1e-2)  # bf16 rounding of a, b and the output
    torch.testing.assert_close(y.float(), reference, rtol=2e-2, atol=3e-2)  # ... and of the input
    with torch.enable_grad():
        assert torch.equal(norm(cl), exact.to(torch.bfloat16))
    assert torch.equal(norm(x), torch.nn.GroupNorm.forward(norm, x))
    nchw = x.to(torch.bfloat16)
    assert torch.equal(norm(nchw), torch.nn.GroupNorm.forward(norm, nchw))


def test_the_modulated_norm_folds_the_adaptive_scale_and_shift_into_one_pass():
    """GroupNorm.modulated(x, scale, shift) = norm(x) * (1 + scale) + shift: a bf16 map within bf16 rounding of the
    float32 arithmetic (per image and channel, as adaptive group norm's scale and shift are); float32 through
    torch's kernel and one addcmul, to the bit."""
    from diffkit.nn.unet import GroupNorm

    torch.manual_seed(1)
    norm = GroupNorm(8, 32)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(4, 32, 7, 7) * 2 - 1
    scale, shift = torch.randn(4, 32, 1, 1) * 0.3, torch.randn(4, 32, 1, 1) * 0.3
    float32 = torch.nn.functional.group_norm(x, 8, norm.weight, norm.bias, norm.eps) * (1 + scale) + shift
    with torch.no_grad():
        assert torch.equal(norm.modulated(x, scale, shift), torch.addcmul(shift, norm(x), 1 + scale))
        cl = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        y = norm.modulated(cl, scale.to(torch.bfloat16), shift.to(torch.bfloat16))
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y.float(), float32, rtol=2e-2, atol=3e-2)
    assert (y.float() - float32).abs().max() > 0  # bf16 really ran (this is not the float32 result)
