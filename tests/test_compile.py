"""`train --compile`: torch.compile around the network trains to nearly the eager weights (inductor's fused kernels
round differently, so not bitwise), and its compiled kernels land under diffkit's cache, so a machine compiles a
network shape once (benchmarks/compile.py measures the cold and warm starts)."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from safetensors.torch import load_file
from test_training import tiny

from diffkit import machine
from diffkit.cli.args import build_parser
from diffkit.cli.train import _compile
from diffkit.config import ParentConfig
from diffkit.nn.registry import build_network
from diffkit.nn.unet import UNet, UNetConfig
from diffkit.runs import train_config, train_run
from diffkit.training.autotune import auto_compile
from diffkit.training.distributed import Runtime


def test_compiled_training_matches_eager_and_caches_under_diffkit(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    config = tiny(steps=20)
    train_run(config, tmp_path / "eager", progress=False)
    try:
        train_run(config, tmp_path / "compiled", progress=False, runtime=Runtime(compile=True))
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "inductor")
    finally:
        os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        torch._dynamo.reset()
    assert any((tmp_path / "cache" / "inductor").rglob("*.py"))  # inductor's generated kernels
    eager, compiled = (load_file(str(tmp_path / r / "model.safetensors")) for r in ("eager", "compiled"))
    assert eager.keys() == compiled.keys()
    for k in eager:
        torch.testing.assert_close(compiled[k], eager[k], rtol=1e-3, atol=1e-4)
    with torch.random.fork_rng():  # the trainer's initial weights: both runs moved well away from them
        torch.manual_seed(config.train.seed)
        init = build_network(config.network).state_dict()
    assert max((eager[k] - init[k]).abs().max() for k in eager) > 1e-2


def test_compiled_unet_gradients_under_bf16_reach_every_level_and_repeat(tmp_path, monkeypatch):
    """torch 2.13's inductor, under bf16 autocast, returned zero gradients through F.interpolate inside the U-Net:
    every parameter below the first upsampling learned nothing while the step ran 1.33x faster (nn/unet.py's
    `double`). The compiled gradients must reach every level, agree with eager's up to bf16 rounding, and repeat
    bitwise: the class embedding's lookup scattered its gradient in a varying order when compiled, so one seed
    trained different weights run to run (nn/embeddings.py's embed_classes). And the compiled network must be one
    AOTAutograd can cache: an autocast region inside it made every compiled run trace it again (~5 s)."""
    from torch._dynamo.utils import counters

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch.manual_seed(0)
    net = UNet(UNetConfig(in_channels=1, channels=8, channel_mult=(1, 2), num_res_blocks=1, num_classes=10))
    with torch.no_grad():  # move the zero-initialised output layers off zero, so that every level has a gradient
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x, t, cond = torch.randn(128, 1, 8, 8), torch.rand(128) * 900, torch.arange(128) % 11

    def grads(f):
        net.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = f(x, t, cond)
        y.float().square().mean().backward()
        return {n: p.grad.clone() for n, p in net.named_parameters()}

    eager = grads(net)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the scatter's order varied across threads (the suite runs on one)
    try:
        compiled = torch.compile(net, dynamic=False)
        counters.clear()
        runs = [grads(compiled) for _ in range(4)]
        bypassed = counters["aot_autograd"]["autograd_cache_bypass"]
    finally:
        torch.set_num_threads(threads)
        torch._dynamo.reset()
    first = runs[0]
    lost = [n for n in eager if eager[n].abs().max() > 1e-4 and first[n].abs().max() == 0]
    assert not lost, f"no compiled gradient reached {lost}"
    assert any(n.startswith("mid.") for n in eager)
    squared = sum(((first[n] - eager[n]) ** 2).sum() for n in eager) / sum((g ** 2).sum() for g in eager.values())
    assert squared.sqrt() < 0.05  # bf16 rounding in fused kernels: ~1% measured; the lost levels: ~100%
    varied = [n for run in runs[1:] for n in first if not torch.equal(run[n], first[n])]
    assert not varied, f"compiled gradients varied between identical calls: {sorted(set(varied))}"
    assert bypassed == 0, "AOTAutograd's cache refused the compiled U-Net (an autocast region inside it?)"


@pytest.mark.parametrize(("flags", "steps", "precision", "device", "units", "expected"), [
    ({"data": "digits", "cond": True}, 1300, "auto", "cpu", "AMX-BF16 + AVX512-BF16", True),  # a Xeon with AMX
    ({"data": "mnist5k"}, 500, "bf16", "cpu", "AMX-BF16 + AVX512-BF16", True),
    ({"data": "digits", "cond": True}, 499, "auto", "cpu", "AMX-BF16 + AVX512-BF16", False),  # too short to repay
    ({"data": "digits", "cond": True}, 1300, "fp32", "cpu", "AMX-BF16 + AVX512-BF16", False),  # measured in bf16
    ({"data": "spiral"}, 3000, "auto", "cpu", "AMX-BF16 + AVX512-BF16", False),  # the 2-D step: slower compiled
    ({"data": "digits", "net": "dit"}, 3000, "auto", "cpu", "AMX-BF16 + AVX512-BF16", False),  # not measured
    ({"data": "digits", "cond": True}, 1300, "auto", "cpu", "AVX512-BF16", False),  # Zen 4: shapes 1.06x
    ({"data": "digits", "cond": True}, 1300, "auto", "meta", "AMX-BF16 + AVX512-BF16", False),  # not a CPU
])
def test_train_compiles_by_default_only_where_it_was_measured_to_pay(monkeypatch, flags, steps, precision, device,
                                                                    units, expected):
    monkeypatch.setattr(machine, "cpu_bf16_units", lambda: units)
    monkeypatch.setattr(machine, "cpu_bf16_native", lambda: True)
    why = auto_compile(train_config(flags), steps, precision, torch.device(device))
    assert (why is not None) is expected
    if expected:
        assert "--no-compile" in why and str(steps) in why


def test_only_the_measured_latent_and_text_unets_compile_by_default(monkeypatch):
    """Measured to pay: pixel U-Nets without text (bf16), and the text-to-image U-Net on latents (fp32 or bf16);
    a latent U-Net without text and a pixel one with text were not measured, and stay eager."""
    monkeypatch.setattr(machine, "cpu_bf16_units", lambda: "AMX-BF16 + AVX512-BF16")
    monkeypatch.setattr(machine, "cpu_bf16_native", lambda: True)
    config = train_config({"data": "digits", "cond": True})
    assert auto_compile(config, 2000, "auto", torch.device("cpu"))
    for fields, expected in ((("latent",), False), (("text",), False), (("latent", "text"), True)):
        other = copy.deepcopy(config)
        for field in fields:
            setattr(other.data, field, {"latent": "/runs/vae", "text": "minilm"}[field])
        for precision in ("auto", "fp32", "bf16"):  # the pixel rule asks for bf16; the text-to-image one either
            assert bool(auto_compile(other, 2000, precision, torch.device("cpu"))) == expected, (fields, precision)
    assert "text-to-image" in auto_compile(other, 2000, "fp32", torch.device("cpu"))
    student = copy.deepcopy(config)  # `diffkit train --resume` of a distilled student: eager, as it started
    student.parent = ParentConfig(path="/runs/teacher", sha256="0" * 64, kind="progressive")
    assert auto_compile(student, 2000, "auto", torch.device("cpu")) is None


def test_compile_flags_override_the_machine_default(monkeypatch, tmp_path):
    monkeypatch.setattr(machine, "cpu_bf16_units", lambda: "AMX-BF16 + AVX512-BF16")
    monkeypatch.setattr(machine, "cpu_bf16_native", lambda: True)
    config = train_config({"data": "digits", "cond": True})
    parser = build_parser()
    out = str(tmp_path / "run")
    chosen = {flags: _compile(parser.parse_args(["train", "--data", "digits", "--cond", "--out", out, *flags]),
                              config, torch.device("cpu"))
              for flags in ((), ("--compile",), ("--no-compile",), ("--steps", "400"), ("--steps", "400", "--compile"))}
    assert {flags: why is not None for flags, why in chosen.items()} == {
        (): True, ("--compile",): True, ("--no-compile",): False, ("--steps", "400"): False,
        ("--steps", "400", "--compile"): True}
    assert chosen[()].startswith("auto: ") and chosen[("--compile",)] == "--compile"
