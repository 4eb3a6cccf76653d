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
