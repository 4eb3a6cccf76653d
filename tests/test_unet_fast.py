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
    assert fast.network.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    kw = {"cond": [i % 10 for i in range(600)], "guidance": 3.0, "seed": 2}  # 600 > one chunk: two calls a level
    a, b = sample_run(fast, 600, "dpmpp-2m", 8, **kw), sample_run(plain, 600, "dpmpp-2m", 8, **kw)
    assert a.shape == b.shape and 0 <= np.abs(a - b).max() < 1e-4 and a.std() > 0.05
