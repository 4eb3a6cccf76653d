"""Runs survive kill -9, Ctrl-C, a second writer, a full disk and tampered files; resume is exact."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diffkit.cli import main
from diffkit.config import DataConfig, RunConfig, TrainConfig
from diffkit.data.source import TensorSource
from diffkit.errors import (
    CheckpointError,
    DataError,
    StorageError,
    TrainingError,
    TrainingInterrupted,
)
from diffkit.nn.mlp import MLPConfig
from diffkit.nn.unet import UNetConfig
from diffkit.runs import load_run, make_source, train_run
from diffkit.store.lock import RunLock
from diffkit.store.trainlog import read_log
from diffkit.training.trainer import Trainer


def mlp_config(steps=60, seed=0, data="gaussians8", **train) -> RunConfig:
    t = {"steps": steps, "batch_size": 64, "warmup_steps": 10, "checkpoint_every": 20, "log_every": 10, "seed": seed,
         "ema_halflife": 500, **train}
    return RunConfig(data=DataConfig(spec=data, num_points=2000),
                     network=MLPConfig(hidden=32, depth=2, embed_dim=16, fourier_features=8), train=TrainConfig(**t))


def unet_config(steps=12, seed=0) -> RunConfig:
    return RunConfig(data=DataConfig(spec="digits", cond=True),
                     network=UNetConfig(channels=8, channel_mult=(1, 2), groups=4, head_channels=8),
                     train=TrainConfig(steps=steps, batch_size=16, warmup_steps=2, checkpoint_every=4, log_every=2,
                                       seed=seed, ema_halflife=200, threads=1))


def model_bytes(run) -> bytes:
    return (run / "model.safetensors").read_bytes()


def state_file(run, step):
    return run / "train_state" / f"step-{step:08d}" / "state.safetensors"


KILLER = textwrap.dedent("""
    import json, os, signal, sys, torch
    from diffkit.config import RunConfig
    from diffkit.runs import train_run
    torch.set_num_threads(1)
    config, out, kill_at = RunConfig.from_dict(json.loads(sys.argv[1])), sys.argv[2], int(sys.argv[3])
    def kill(rec):
        if rec.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    train_run(config, out, progress=False, callback=kill)
""")


def train_killed_at(config: RunConfig, out, step: int) -> None:
    proc = subprocess.run([sys.executable, "-c", KILLER, json.dumps(config.to_dict()), str(out), str(step)],
                          check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mlp"
    train_run(mlp_config(), out, progress=False)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_then_resume_gives_identical_bits_mlp(mlp_run, tmp_path, seed):
    kill_at = int(np.random.default_rng(seed).integers(3, 60))  # anywhere after the first checkpoint (step 2)
    out = tmp_path / "killed"
    train_killed_at(mlp_config(), out, kill_at)
    assert not (out / ".lock").exists() or RunLock(out).acquire().release() is None  # the dead writer's lock is free
    summary = train_run(None, out, resume=True, progress=False)
    assert summary["final_step"] == 60
    assert model_bytes(out) == model_bytes(mlp_run), f"killed at step {kill_at}"
    assert state_file(out, 60).read_bytes() == state_file(mlp_run, 60).read_bytes()
    assert read_log(out / "train_log.csv")["loss"] == read_log(mlp_run / "train_log.csv")["loss"]


def test_sigkill_before_the_first_checkpoint_restarts_cleanly(mlp_run, tmp_path):
    out = tmp_path / "early"
    train_killed_at(mlp_config(), out, 1)  # the first checkpoint comes at step 2
    with pytest.raises(CheckpointError, match="stopped before its first checkpoint; pass --resume"):
        train_run(mlp_config(), out, progress=False)
    train_run(None, out, resume=True, progress=False)
    assert model_bytes(out) == model_bytes(mlp_run)


@pytest.mark.parametrize("kill_at", [5, 10])
def test_sigkill_then_resume_gives_identical_bits_unet(tmp_path, kill_at):
    whole = tmp_path / "whole"
    train_run(unet_config(), whole, progress=False)
    out = tmp_path / "killed"
    train_killed_at(unet_config(), out, kill_at)
    train_run(None, out, resume=True, progress=False)
    a, b = load_file(str(out / "model.safetensors")), load_file(str(whole / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert model_bytes(out) == model_bytes(whole)


def test_ctrl_c_checkpoints_at_that_step_and_resumes_exactly(mlp_run, tmp_path):
    out = tmp_path / "ctrl-c"
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN under a background job

    def ctrl_c(rec):
        if rec.step == 33:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="step 33"):
        train_run(mlp_config(), out, progress=False, callback=ctrl_c)
    assert load_run(out).step == 33 and state_file(out, 33).exists()
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    train_run(None, out, resume=True, progress=False)
    assert model_bytes(out) == model_bytes(mlp_run)


def test_sigterm_to_the_cli_ends_at_a_checkpoint(tmp_path):
    import time

    out = tmp_path / "term"
    proc = subprocess.Popen([sys.executable, "-m", "diffkit", "train", "--data", "gaussians8", "--out", str(out),
                             "--steps", "100000", "--quiet"], stderr=subprocess.PIPE, text=True)
    log = out / "train_log.csv"
    deadline = time.monotonic() + 120
    while not (log.exists() and len(log.read_text().splitlines()) > 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    step = int(err.split("stopped at step ")[1].split()[0])
    assert "with a checkpoint; continue with --resume" in err and "Traceback" not in err
    assert load_run(out).step == step and step > 50


# --- overwrite and the lock ------------------------------------------------------------------------

def test_overwrite_interrupted_before_its_first_checkpoint_keeps_the_old_run(mlp_run, tmp_path):
    out = tmp_path / "old"
    shutil.copytree(mlp_run, out)
    before = model_bytes(out)

    def ctrl_c(rec):
        os.kill(os.getpid(), signal.SIGINT)  # at step 1: before the first checkpoint (step 2)

    with pytest.raises(TrainingInterrupted, match="still holds the previous run"):
        train_run(mlp_config(seed=3), out, overwrite=True, progress=False, callback=ctrl_c)
    assert model_bytes(out) == before and load_run(out).step == 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]  # no half-written folder left beside it
    # a crash (here: an exception) after the swap leaves the new run, resumable
    def crash(rec):
        if rec.step == 7:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        train_run(mlp_config(seed=3), out, overwrite=True, progress=False, callback=crash)
    assert load_run(out).step == 2 and json.loads((out / "config.json").read_text())["train"]["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]


def test_a_second_writer_is_refused(mlp_run, tmp_path):
    out = tmp_path / "busy"
    shutil.copytree(mlp_run, out)
    with RunLock(out):
        with pytest.raises(CheckpointError, match=f"another diffkit process \\(pid {os.getpid()}\\)"):
            train_run(mlp_config(), out, overwrite=True, progress=False)
        with pytest.raises(CheckpointError, match="another diffkit process"):
            train_run(mlp_config(), tmp_path / "busy", resume=True, progress=False)
    assert model_bytes(out) == model_bytes(mlp_run)


def test_a_dead_writers_lock_is_not_stale(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", ("import sys, time; from diffkit.store.lock import RunLock; "
                               f"RunLock({str(out)!r}).acquire(); print('locked', flush=True); time.sleep(60)")],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(CheckpointError, match=f"pid {holder.pid}"):
        train_run(mlp_config(steps=4), out, progress=False)
    holder.kill()
    holder.wait()
    assert (out / ".lock").exists()
    assert train_run(mlp_config(steps=4), out, progress=False)["final_step"] == 4


# --- integrity -----------------------------------------------------------------------------------

@pytest.fixture
def run_copy(mlp_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(mlp_run, out)
    return out


def _flip_a_bit(path, where=0.7):
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncate", "bitflip"])
@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_damaged_run_files_are_named_at_load(run_copy, damage, name):
    path = run_copy / name
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-3])
    else:
        _flip_a_bit(path)
    with pytest.raises(CheckpointError, match=name):
        load_run(run_copy)


@pytest.mark.parametrize("damage", ["truncate", "bitflip"])
def test_damaged_train_state_is_named_on_resume(run_copy, damage):
    path = state_file(run_copy, 60)
    path.write_bytes(path.read_bytes()[:-100]) if damage == "truncate" else _flip_a_bit(path, 0.99)
    cfg = json.loads((run_copy / "config.json").read_text())
    with pytest.raises(CheckpointError, match="step-00000060/state.safetensors"):
        train_run(None, run_copy, resume=True, progress=False)
    assert cfg == json.loads((run_copy / "config.json").read_text())


def test_swapped_files_are_caught(run_copy, tmp_path):
    other = tmp_path / "other"
    train_run(mlp_config(seed=9), other, progress=False)
    shutil.copy(other / "model.safetensors", run_copy / "model.safetensors")  # another run's model
    with pytest.raises(CheckpointError, match="model.safetensors does not match its checksum"):
        load_run(run_copy)
    shutil.copy(other / "model.safetensors", run_copy / "model.safetensors")
    # checkpoint states swapped between steps: each folder's manifest catches it
    a, b = state_file(run_copy, 40), state_file(run_copy, 60)
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    with pytest.raises(CheckpointError, match="step-00000060/state.safetensors does not match"):
        train_run(None, run_copy, resume=True, progress=False)


class _Boom:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['DIFFKIT_PICKLE_MARKER']}",))


@pytest.mark.parametrize("target", ["model", "state"])
def test_a_pickle_is_never_unpickled(run_copy, tmp_path, monkeypatch, target):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("DIFFKIT_PICKLE_MARKER", str(marker))
    payload = pickle.dumps(_Boom())
    (run_copy / "manifest.json").unlink()  # even without checksums to stop it first
    shutil.rmtree(run_copy / "train_state" / "step-00000040")
    path = run_copy / "model.safetensors" if target == "model" else state_file(run_copy, 60)
    path.write_bytes(payload)
    (path.parent / "manifest.json").unlink(missing_ok=True)
    with pytest.raises(CheckpointError):
        load_run(run_copy) if target == "model" else train_run(None, run_copy, resume=True, progress=False)
    assert not marker.exists()
    torch_file = tmp_path / "torch.pt"  # torch.save's zip format, also refused
    torch.save({"w": torch.zeros(2)}, torch_file)
    path.write_bytes(torch_file.read_bytes())
    with pytest.raises(CheckpointError):
        load_run(run_copy) if target == "model" else train_run(None, run_copy, resume=True, progress=False)


def test_files_keep_the_umask(mlp_run):
    old = os.umask(0o022)
    os.umask(old)
    for p in [mlp_run / "model.safetensors", mlp_run / "config.json", mlp_run / "manifest.json",
              mlp_run / "train_log.csv", state_file(mlp_run, 60), state_file(mlp_run, 60).parent]:
        mode = p.stat().st_mode & 0o777
        assert mode == (0o777 if p.is_dir() else 0o666) & ~old, (p, oct(mode))


def test_only_the_last_checkpoints_are_kept(mlp_run):
    assert sorted(p.name for p in (mlp_run / "train_state").iterdir()) == ["step-00000040", "step-00000060"]
    assert not [p for p in mlp_run.rglob("*") if p.name.endswith(".tmp")]


# --- numerical and resource faults ----------------------------------------------------------------

class NaNAfter(TensorSource):
    """Batches turn to NaN from draw `start` on, for `count` draws."""

    def __init__(self, source, start, count):
        super().__init__(source.x0, source.labels)
        self.draws, self.start, self.count = 0, start, count

    def draw(self, B, generator):
        x0, cond = super().draw(B, generator)
        self.draws += 1
        if self.start <= self.draws < self.start + self.count:
            x0 = torch.full_like(x0, float("nan"))
        return x0, cond


def test_non_finite_steps_are_skipped_and_counted(tmp_path):
    config = mlp_config(steps=40).validate()
    trainer = Trainer(config, NaNAfter(make_source(config), 5, 3), tmp_path / "nan", progress=False)
    summary = trainer.train()
    assert summary["skipped"] == 3 and summary["steps"] == 40
    log = read_log(tmp_path / "nan" / "train_log.csv")
    assert log["skipped"][-1] == 3 and all(np.isfinite(log["loss"]))
    weights = load_file(str(tmp_path / "nan" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_endless_non_finite_steps_stop_with_the_checkpoint_kept(tmp_path):
    config = mlp_config(steps=60).validate()
    out = tmp_path / "diverged"
    trainer = Trainer(config, NaNAfter(make_source(config), 25, 10_000), out, progress=False)
    with pytest.raises(TrainingError, match="not finite in 10 steps in a row .* lower --lr"):
        trainer.train()
    run = load_run(out)
    assert run.step == 20 and all(torch.isfinite(p).all() for p in run.network.parameters())


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_disk_full_or_read_only_leaves_the_previous_checkpoint(run_copy, monkeypatch, code, capsys):
    from diffkit.store import manifest

    before = {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file() and p.name != ".lock"}
    real = manifest._write_synced

    def failing(path, data):
        real(path, data[: len(data) // 2])
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(manifest, "_write_synced", failing)
    with pytest.raises(StorageError, match=os.strerror(code)):
        train_run(mlp_config(), run_copy, overwrite=True, progress=False)
    after = {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before
    assert not [p for p in run_copy.parent.iterdir() if p.name.startswith(".")]
    assert main(["train", "--data", "gaussians8", "--out", str(run_copy), "--overwrite", "--steps", "20", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: could not write") and "Traceback" not in err
    assert load_run(run_copy).step == 60


def test_out_naming_a_file_is_one_sentence(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("mine")
    assert main(["train", "--data", "gaussians8", "--out", str(f), "--steps", "5", "--quiet"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err and f.read_text() == "mine"


# --- the data a run was trained on -----------------------------------------------------------------

def test_user_data_is_recorded_absolute_and_hashed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.save("points.npy", rng.normal(size=(500, 2)).astype(np.float32))
    train_run(mlp_config(steps=30, data="points.npy"), "run", progress=False, callback=lambda r: r.step == 22)
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["data"]["spec"] == str(tmp_path / "points.npy") and len(cfg["fitted"]["data_sha256"]) == 64
    # a moved run resumes from anywhere
    shutil.move(tmp_path / "run", tmp_path / "moved")
    monkeypatch.chdir("/")
    shutil.copytree(tmp_path / "moved", tmp_path / "moved2")
    assert train_run(None, tmp_path / "moved", resume=True, progress=False)["final_step"] == 30
    # a changed data file is refused, saying so
    np.save(tmp_path / "points.npy", rng.normal(size=(500, 2)).astype(np.float32))
    with pytest.raises(DataError, match="changed since this run was trained"):
        train_run(None, tmp_path / "moved2", resume=True, progress=False)
