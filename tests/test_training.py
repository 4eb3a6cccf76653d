"""Trainer, EMA, checkpoints and resume, through diffkit.runs.train_run with tiny configs."""

from __future__ import annotations

import itertools
import json
import math
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from diffkit.config import DataConfig, RunConfig, TrainConfig
from diffkit.errors import CheckpointError, ConfigError, DiffkitError
from diffkit.nn.mlp import MLPConfig
from diffkit.runs import load_run, sample_run, train_run
from diffkit.store.trainlog import read_log
from diffkit.training import EMA
from diffkit.training.trainer import lr_at


def tiny(steps=60, seed=0, prediction="v", data="gaussians8", **train) -> RunConfig:
    t = {"steps": steps, "batch_size": 64, "warmup_steps": 10, "checkpoint_every": 20, "log_every": 10, "seed": seed,
         "ema_halflife": 500, **train}
    return RunConfig(data=DataConfig(spec=data, num_points=2000), prediction=prediction,
                     network=MLPConfig(hidden=32, depth=2, embed_dim=16, fourier_features=8),
                     train=TrainConfig(**t))


def state_file(run, step=60):
    return run / "train_state" / f"step-{step:08d}" / "state.safetensors"


def tensors(path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def assert_same_tensors(a: dict, b: dict):
    assert set(a) == set(b)
    for k, v in a.items():
        assert v.dtype == b[k].dtype and torch.equal(v, b[k]), k


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def run60(tmp_path_factory):
    """Run A: 60 steps straight (shared, read-only)."""
    out = tmp_path_factory.mktemp("runs") / "a"
    summary = train_run(tiny(), out, progress=False)
    assert summary["final_step"] == 60 and summary["steps"] == 60
    return out


# the loop -------------------------------------------------------------------------
def test_loss_decreases(tmp_path):
    out = tmp_path / "run"
    train_run(tiny(steps=200, prediction="epsilon", data="spiral", log_every=20), out, progress=False)
    log = read_log(out / "train_log.csv")
    assert log["step"] == [float(s) for s in range(20, 201, 20)]
    first, last = np.mean(log["loss"][:2]), np.mean(log["loss"][-2:])
    assert 0.6 < first < 1.2  # epsilon loss starts near E|eps|^2 = 1 (the output layer starts at zero)
    assert last < 0.7 * first, log["loss"]
    assert all(math.isfinite(v) for v in log["loss"])
    # lr column: the schedule at the step logged
    cfg = tiny(steps=200).train
    assert log["lr"] == pytest.approx([lr_at(int(s) - 1, cfg) for s in log["step"]], rel=1e-5)
    assert log["seconds"] == sorted(log["seconds"])


def test_lr_schedule():
    cfg = TrainConfig(steps=1000, lr=1e-3, warmup_steps=100, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(1e-5)
    assert lr_at(99, cfg) == pytest.approx(1e-3)
    assert lr_at(100, cfg) == pytest.approx(1e-3)
    assert lr_at(550, cfg) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # half-way down the cosine
    assert lr_at(1000, cfg) == pytest.approx(1e-4)
    lrs = [lr_at(s, cfg) for s in range(100, 1001)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_same_seed_is_bitwise_identical(run60, tmp_path):
    train_run(tiny(), tmp_path / "b", progress=False)
    a, b = tensors(run60 / "model.safetensors"), tensors(tmp_path / "b" / "model.safetensors")
    assert_same_tensors(a, b)
    assert (run60 / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert_same_tensors(tensors(state_file(run60)), tensors(state_file(tmp_path / "b")))
    # a different seed trains a different model
    train_run(tiny(seed=1), tmp_path / "c", progress=False)
    c = tensors(tmp_path / "c" / "model.safetensors")
    assert not torch.equal(a["inp.weight"], c["inp.weight"])


def test_resume_is_bitwise_identical(run60, tmp_path):
    """Run B is interrupted after its step-40 checkpoint (the callback raises at step 41), then resumed."""
    out = tmp_path / "b"
    seen = []

    def stop_at_41(rec):
        seen.append(rec.step)
        if rec.step == 41:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_run(tiny(), out, progress=False, callback=stop_at_41)
    assert seen == list(range(1, 42))
    state = state_file(out, 40)
    assert sorted(p.name for p in (out / "train_state").iterdir()) == ["step-00000020", "step-00000040"]
    header = json.loads(state.read_bytes()[8:8 + struct.unpack("<Q", state.read_bytes()[:8])[0]])
    assert '"step": "40"' in header["__metadata__"]["diffkit"]

    summary = train_run(None, out, resume=True, progress=False)
    assert summary["final_step"] == 60 and summary["steps"] == 20
    assert_same_tensors(tensors(run60 / "model.safetensors"), tensors(out / "model.safetensors"))
    assert_same_tensors(tensors(state_file(run60)), tensors(state_file(out)))
    la, lb = read_log(run60 / "train_log.csv"), read_log(out / "train_log.csv")
    assert la["step"] == lb["step"] == [float(s) for s in range(10, 61, 10)]
    assert la["loss"] == lb["loss"] and la["lr"] == lb["lr"]


def test_resume_keeps_the_runs_steps(run60, tmp_path):
    """--steps on resume would restart or cut the LR schedule of a run recorded as one: refused, as is resuming a
    finished run (it used to print "trained 0 steps" and succeed)."""
    import shutil

    out = tmp_path / "ext"
    shutil.copytree(run60, out)
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="continues this run to its 60 steps"):
        train_run(None, out, resume=True, steps=80, progress=False)
    with pytest.raises(ConfigError, match="continues this run to its 60 steps"):
        train_run(None, out, resume=True, steps=30, progress=False)
    with pytest.raises(ConfigError, match="already finished its 60 steps"):
        train_run(None, out, resume=True, progress=False)
    assert (out / "model.safetensors").read_bytes() == before
    assert json.loads((out / "config.json").read_text())["train"]["steps"] == 60


def test_resume_without_state_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError):
        train_run(None, tmp_path / "nothing", resume=True, progress=False)


# EMA ----------------------------------------------------------------------------
def test_ema_beta_formula():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, half_life=1000, rampup=0.1)
    # half-life capped at rampup * points seen
    assert ema.beta(points_seen=640, batch_size=64) == pytest.approx(0.5 ** (64 / 64.0))
    assert ema.beta(points_seen=6400, batch_size=64) == pytest.approx(0.5 ** (64 / 640.0))
    assert ema.beta(points_seen=10_000, batch_size=64) == pytest.approx(0.5 ** (64 / 1000.0))
    assert ema.beta(points_seen=10**7, batch_size=64) == pytest.approx(0.5 ** (64 / 1000.0))
    assert ema.beta(points_seen=0, batch_size=64) == 0.0  # nothing to remember yet
    no_ramp = EMA(model, half_life=1000, rampup=None)
    assert no_ramp.beta(points_seen=64, batch_size=64) == pytest.approx(0.5 ** 0.064)
    # after half_life points with a constant beta, an old weight keeps exactly half its influence
    assert no_ramp.beta(10**6, 100) ** (1000 / 100) == pytest.approx(0.5)


def test_ema_update():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, half_life=500, rampup=None)
    old = [p.clone() for p in ema.params]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    beta = ema.beta(10**6, 50)
    ema.update(list(model.parameters()), 10**6, 50)
    for o, e, p in zip(old, ema.params, model.parameters()):
        torch.testing.assert_close(e, beta * o + (1 - beta) * p.detach(), rtol=1e-6, atol=1e-6)
    sd = ema.state_dict(model)
    assert torch.equal(sd["weight"], ema.params[0]) and not torch.equal(sd["weight"], model.weight)


# checkpoint files ------------------------------------------------------------------
def _header(path) -> dict:
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n])


def test_checkpoints_are_safetensors_not_pickle(run60):
    for path in (run60 / "model.safetensors", state_file(run60)):
        data = path.read_bytes()
        assert not data.startswith(b"\x80") and not data.startswith(b"PK")  # neither pickle nor torch zip
        header = _header(path)
        assert json.loads(header["__metadata__"]["diffkit"])["format"] == "diffkit"
        assert len(tensors(path)) > 0
    assert not list(run60.rglob("*.pt")) and not list(run60.rglob("*.pkl")) and not list(run60.rglob("*.tmp"))
    meta = json.loads(_header(run60 / "model.safetensors")["__metadata__"]["diffkit"])
    assert meta["step"] == "60"
    config = json.loads((run60 / "config.json").read_text())
    assert config["format"] == "diffkit-run" and config["fitted"]["normalizer"] is not None and config["network"]["kind"] == "mlp"
    # the EMA weights load into a Denoiser that samples finite points
    run = load_run(run60)
    assert run.step == 60
    x = sample_run(run, 64, "ddim", 10, seed=0)
    assert x.shape == (64, 2) and np.isfinite(x).all()
    assert np.array_equal(x, sample_run(run, 64, "ddim", 10, seed=0))


@pytest.fixture
def run_copy(run60, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(run60, out)
    return out


@pytest.fixture
def legacy_copy(run_copy):
    """A run without manifest.json (as written before manifests): the file-format checks alone guard it."""
    (run_copy / "manifest.json").unlink()
    return run_copy


@pytest.mark.parametrize("keep", [0, 4, 8, 60, "half", "minus1"])
def test_truncated_model_is_a_checkpoint_error(run_copy, keep):
    path = run_copy / "model.safetensors"
    data = path.read_bytes()
    n = {"half": len(data) // 2, "minus1": len(data) - 1}.get(keep, keep)
    path.write_bytes(data[:n])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_run(run_copy)


def test_foreign_safetensors_is_a_checkpoint_error(legacy_copy):
    path = legacy_copy / "model.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(path))  # a valid safetensors file, not ours
    with pytest.raises(CheckpointError, match="diffkit"):
        load_run(legacy_copy)
    # the right tensors but no diffkit metadata: still foreign
    save_file(tensors(state_file(legacy_copy)), str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError):
        load_run(legacy_copy)


def test_diffkit_file_with_wrong_tensors_is_a_checkpoint_error(legacy_copy):
    from diffkit.store.rundir import save_model

    good = tensors(legacy_copy / "model.safetensors")
    bad = dict(good)
    bad["inp.weight"] = torch.zeros(3, 3)
    save_model(legacy_copy, bad, 60)
    with pytest.raises(CheckpointError, match="does not match the network"):
        load_run(legacy_copy)
    save_model(legacy_copy, {k: v for k, v in good.items() if k != "out.bias"}, 60)
    with pytest.raises(CheckpointError):
        load_run(legacy_copy)


def test_foreign_metadata_that_is_not_an_object(legacy_copy):
    path = legacy_copy / "model.safetensors"
    save_file(tensors(path), str(path), metadata={"diffkit": "[1, 2]"})
    with pytest.raises(CheckpointError):
        load_run(legacy_copy)


def test_missing_or_broken_run_files(run_copy, tmp_path):
    (run_copy / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_run(run_copy)
    (run_copy / "config.json").write_text('{"format": "diffkit-run", "data": ')
    with pytest.raises(CheckpointError, match="config.json"):
        load_run(run_copy)
    (run_copy / "config.json").write_text('{"hello": 1}')
    with pytest.raises(CheckpointError):
        load_run(run_copy)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_run(tmp_path / "no_such_run")


def test_truncated_train_state_refuses_to_resume(run_copy):
    path = state_file(run_copy)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="step-00000060/state.safetensors"):
        train_run(None, run_copy, resume=True, progress=False)


# overwrite -------------------------------------------------------------------------
def test_refuses_to_overwrite_without_flag(run_copy):
    before = (run_copy / "model.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match="overwrite"):
        train_run(tiny(steps=20), run_copy, progress=False)
    assert (run_copy / "model.safetensors").read_bytes() == before
    # overwrite=True replaces the run: a fresh log and a new model
    summary = train_run(tiny(steps=20, seed=5), run_copy, overwrite=True, progress=False)
    assert summary["final_step"] == 20
    assert read_log(run_copy / "train_log.csv")["step"] == [10.0, 20.0]
    assert (run_copy / "model.safetensors").read_bytes() != before
    assert json.loads((run_copy / "config.json").read_text())["train"]["seed"] == 5
    assert load_run(run_copy).step == 20


@pytest.mark.parametrize("field, value", [("steps", 0), ("batch_size", -1), ("lr", 0.0), ("log_every", 0)])
def test_bad_train_config_is_rejected(tmp_path, field, value):
    cfg = tiny()
    setattr(cfg.train, field, value)
    with pytest.raises(DiffkitError):
        train_run(cfg, tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()


def test_threads_apply_during_training_only(tmp_path):
    """train.threads sets torch's intra-op threads for the loop and restores the caller's count after it."""
    seen = []
    before = torch.get_num_threads()
    other = 2 if before != 2 else 3
    train_run(tiny(steps=3, threads=other), tmp_path / "run", progress=False,
              callback=lambda rec: seen.append(torch.get_num_threads()))
    assert seen == [other] * 3
    assert torch.get_num_threads() == before


def test_negative_threads_rejected(tmp_path):
    with pytest.raises(DiffkitError, match="threads must be >= 0"):
        train_run(tiny(threads=-1), tmp_path / "run", progress=False)
