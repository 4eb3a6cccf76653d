"""Devices and precision with CPU stand-ins for the CUDA path: device choice, the process group a CUDA rank
joins, noise that does not depend on the device, fp16 training with its gradient scaler, micro-batches."""

import json
from datetime import timedelta

import pytest
import torch

from diffkit import devices
from diffkit.errors import ConfigError
from diffkit.runs import default_config, load_run, make_trainer, sample_run, train_run
from diffkit.sampling import SAMPLERS, sample
from diffkit.store.rundir import read_state
from diffkit.training import distributed


def test_auto_picks_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    assert devices.resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(devices, "_mps_available", lambda: True)
    assert devices.resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert devices.resolve_device("auto") == torch.device("cuda")
    assert devices.resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="has CUDA devices 0..1"):
        devices.resolve_device("cuda:2")


def test_asking_for_an_absent_device_says_what_to_use(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU.*--device cpu"):
        devices.resolve_device("cuda")
    with pytest.raises(ConfigError, match="Metal backend is not available"):
        devices.resolve_device("mps")
    for bad in ("gpu", "cuda:x", "mps:0", "cpu:1"):
        with pytest.raises(ConfigError, match="unknown device"):
            devices.resolve_device(bad)


def test_a_cuda_rank_joins_nccl_on_the_gpu_of_its_local_rank(monkeypatch):
    joined, chosen = {}, []
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend, timeout: joined.update(
        backend=backend, timeout=timeout))
    rt = distributed.start(torch.device("cuda"))
    assert (rt.rank, rt.world_size, rt.local_rank, rt.device) == (3, 4, 1, torch.device("cuda", 1))
    assert joined == {"backend": "nccl", "timeout": timedelta(seconds=distributed.TIMEOUT_S)}
    assert chosen == [torch.device("cuda", 1)] and not rt.is_main
    rt = distributed.start(torch.device("cpu"))
    assert joined["backend"] == "gloo" and rt.device == torch.device("cpu")
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(ConfigError, match="local rank 2 has no GPU of its own"):
        distributed.start(torch.device("cuda"))
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ConfigError, match="0 <= RANK < WORLD_SIZE"):
        distributed.start(torch.device("cpu"))


def test_micro_batches_split_the_global_batch():
    rt = distributed.Runtime(world_size=2, batch_per_device=16)
    assert rt.micro_batches(64) == (32, 2)
    assert distributed.Runtime(world_size=2, batch_per_device=100).micro_batches(64) == (32, 1)
    assert distributed.Runtime().micro_batches(64) == (64, 1)
    with pytest.raises(ConfigError, match="does not split evenly over 3"):
        distributed.Runtime(world_size=3).micro_batches(64)
    with pytest.raises(ConfigError, match="--batch-per-device 12 does not divide"):
        distributed.Runtime(world_size=2, batch_per_device=12).micro_batches(64)


def test_noise_is_drawn_on_the_cpu_whatever_the_device():
    a = devices.randn((3, 5), torch.Generator().manual_seed(7))
    assert torch.equal(a, torch.randn((3, 5), generator=torch.Generator().manual_seed(7)))
    on_meta = devices.randn((3, 5), torch.Generator().manual_seed(7), device="meta")
    assert on_meta.device.type == "meta" and on_meta.shape == (3, 5)
    half = devices.randn((3, 5), torch.Generator().manual_seed(7), dtype=torch.bfloat16)
    assert torch.equal(half, a.to(torch.bfloat16))  # rounded from the same float32 draw


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_runs_on_another_device_with_a_cpu_generator(name):
    """x on the meta device and a CPU generator: no CPU-only call and no generator / device mismatch."""
    from diffkit.denoiser import Denoiser

    net = torch.nn.Linear(2, 2).to("meta")
    d = Denoiser(lambda x, t, cond=None: net(x), default_config("spiral").schedule.build(), "v")
    out = sample(d, torch.empty(4, 2, device="meta"), name, 3, generator=torch.Generator().manual_seed(0))
    assert out.device.type == "meta" and out.shape == (4, 2)


def test_fp16_training_scales_the_loss_and_resumes_the_scaler(tmp_path):
    config = default_config("moons")
    config.train.steps, config.train.precision, config.train.checkpoint_every = 30, "fp16", 15
    trainer = make_trainer(config, tmp_path / "r", progress=False)
    assert trainer.scaler is not None
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)  # not the default, so resume must restore it
    trainer.train()
    assert trainer.skipped < 30 and all(torch.isfinite(p).all() for p in trainer.params)
    _, meta, _ = read_state(tmp_path / "r")
    saved = json.loads(meta["grad_scaler"])
    assert saved["scale"] == trainer.scaler.get_scale() and 0 < saved["scale"] <= 1024
    again = make_trainer(load_run(tmp_path / "r").config, tmp_path / "r", progress=False)
    assert again.scaler.get_scale() == 65536.0 != saved["scale"]
    assert again.load_state() and again.scaler.get_scale() == saved["scale"]
    x = sample_run(tmp_path / "r", 200, "ddim", 20, seed=0)
    assert x.shape == (200, 2) and float(abs(x).max()) < 10


def test_the_runtime_precision_overrides_the_config_on_resume(tmp_path):
    config = default_config("moons")
    config.train.steps, config.train.checkpoint_every = 20, 10

    def stop_at_10(s):
        return s.step >= 10

    train_run(config, tmp_path / "r", progress=False, callback=stop_at_10)
    rt = distributed.Runtime(precision="bf16")
    trainer = make_trainer(load_run(tmp_path / "r").config, tmp_path / "r", progress=False, runtime=rt)
    assert trainer.asked_precision == "bf16" and trainer.cfg.precision == "auto"
    assert trainer.load_state() and trainer.step == 10
