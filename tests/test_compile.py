"""`train --compile`: torch.compile around the network trains to nearly the eager weights (inductor's fused kernels
round differently, so not bitwise), and its compiled kernels land under diffkit's cache, so a machine compiles a
network shape once (benchmarks/compile.py measures the cold and warm starts)."""

from __future__ import annotations

import os

import torch
from safetensors.torch import load_file
from test_training import tiny

from diffkit.nn.registry import build_network
from diffkit.runs import train_run
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
