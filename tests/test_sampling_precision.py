"""Sampling precision (nn/precision.py): auto takes bf16 only for a U-Net on a CPU with native bf16; bf16
sampling is autocast around the network's calls (the prediction back in float32), close to fp32 but not equal;
the CLI records what ran and refuses the flag where it cannot apply."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_cli import run
from test_images_cli import TINY_FLAGS, assert_user_error

from diffkit import machine
from diffkit.cli import main
from diffkit.errors import ConfigError
from diffkit.nn.precision import Autocast, sampling_precision
from diffkit.runs import load_run, sample_run

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("img") / "digits"
    assert main(["train", "--data", "digits", "--cond", "--out", str(out), "--steps", "30", *TINY_FLAGS]) == 0
    return out


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_only_for_a_unet_on_a_cpu_with_native_bf16(native, monkeypatch):
    monkeypatch.setattr(machine, "cpu_bf16_native", lambda: native)
    assert sampling_precision("auto", "unet", CPU)[0] == ("bf16" if native else "fp32")
    for kind in ("mlp", "dit"):  # not measured to pay (the MLP's folded path, the DiT): float32
        assert sampling_precision("auto", kind, CPU) == ("fp32", "bf16 sampling is measured for unet networks only")
    assert sampling_precision("auto", "unet", torch.device("cuda"))[0] == "fp32"
    assert sampling_precision("bf16", "mlp", CPU) == ("bf16", "as asked")
    assert sampling_precision("fp32", "unet", CPU) == ("fp32", "as asked")
    with pytest.raises(ConfigError, match="unknown sampling precision 'fp16'"):
        sampling_precision("fp16", "unet", CPU)


def test_bf16_sampling_is_autocast_close_to_fp32_but_not_equal(digits_run, monkeypatch):
    monkeypatch.setattr(machine, "cpu_bf16_native", lambda: False)
    fp32 = load_run(digits_run)
    assert fp32.precision == "fp32" and not isinstance(fp32.denoiser.network, Autocast)
    bf16 = load_run(digits_run, precision="bf16")
    assert bf16.precision == "bf16" and isinstance(bf16.denoiser.network, Autocast)
    x = torch.randn(4, 1, 8, 8)
    t = torch.full((4,), 500.0)
    with torch.no_grad():
        a, b = fp32.denoiser.network(x, t), bf16.denoiser.network(x, t)
    assert b.dtype == torch.float32
    assert 0 < (a - b).abs().max() < 0.05 * a.abs().max()  # bf16 keeps ~3 significant digits
    kw = {"sampler": "dpmpp-2m", "steps": 4, "seed": 3, "cond": 1, "guidance": 2.0}
    s32, s16 = sample_run(fp32, 8, **kw), sample_run(digits_run, 8, precision="bf16", **kw)
    assert s16.dtype == np.float32 and 0 < np.abs(s32 - s16).max() < 0.1
    again = sample_run(fp32, 8, precision="bf16", **kw)  # a loaded run switched: the same numbers
    np.testing.assert_array_equal(again, s16)
    np.testing.assert_array_equal(sample_run(fp32, 8, **kw), s32)  # the loaded run itself is untouched


def test_cli_records_the_precision_and_refuses_it_for_the_oracle(digits_run, tmp_path, capsys):
    out = tmp_path / "s.npy"
    code, _, err = run(["sample", "--run", digits_run, "--n", 4, "--steps", 3, "--sampler", "ddim", "--out", out,
                        "--precision", "bf16", "--seed", 1], capsys)
    assert code == 0 and "precision: bf16 (as asked)" in err, err
    assert json.loads(out.with_suffix(".json").read_text())["precision"] == "bf16"
    code, _, err = run(["sample", "--oracle", "gaussians8", "--n", 4, "--out", tmp_path / "o.npy",
                        "--precision", "bf16"], capsys)
    assert_user_error(code, err, "--precision does not apply to --oracle")
    assert not (tmp_path / "o.npy").exists()
