"""Defaults decided on the machine (training/autotune.py): precision auto and automatic threads, with the CPU's
bf16 capability faked both ways: no native bf16 trains in fp32 without probing; native bf16 takes bf16 only when
the probe finds it clearly faster; what ran lands in the log; a resume decides again on the machine it runs on;
the demo, the lab's jobs and train-vae follow the same rule."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from diffkit import machine
from diffkit.cli import main
from diffkit.config import RunConfig
from diffkit.runs import default_config, load_run, make_trainer, train_run
from diffkit.store.rundir import read_config
from diffkit.store.trainlog import LOG, read_log
from diffkit.training.autotune import (
    BF16_MARGIN,
    SMALL_STEP_S,
    THREADS_MARGIN,
    StepProbe,
    settle,
)
from diffkit.training.distributed import Runtime

CPU = torch.device("cpu")
ALL = machine.cores()  # what automatic threads choose when more threads are faster


class FakeTimer:
    """Step times by (precision, threads); records what was asked."""

    def __init__(self, **seconds):
        self.seconds = {tuple(k.split("_")): v for k, v in seconds.items()}  # fp32_1=0.2 -> ("fp32", "1")
        self.asked = []

    def __call__(self, *candidates):
        self.asked += candidates
        return [self.seconds[(p, str(t))] for p, t in candidates]


@pytest.fixture
def native(monkeypatch):
    """Make diffkit see a CPU with (True) or without (False) native bf16."""
    def fake(value: bool):
        monkeypatch.setattr(machine, "cpu_bf16_native", lambda: value)
    return fake


@pytest.fixture
def fake_probe(monkeypatch):
    """Replace the probe's measurement by given step times, keyed fp32_1 (one thread) and fp32_n (all cores);
    nothing is read from or written to the cache."""
    measured = []

    def fake(**seconds):
        def measure(self, candidates):
            measured.extend(candidates)
            return {f"{p}@{t}": seconds[f"{p}_{1 if t == 1 else 'n'}"] for p, t in candidates}
        monkeypatch.setattr(StepProbe, "_measure", measure)
        monkeypatch.setattr(StepProbe, "_read", lambda self: {})
        monkeypatch.setattr(StepProbe, "_write", lambda self: None)
        return measured
    return fake


# --- the rule ---------------------------------------------------------------------------------------

def test_no_native_bf16_means_fp32_without_a_probe(native):
    native(False)
    timer = FakeTimer(fp32_1=0.2, fp32_2=0.1)
    s = settle("auto", 0, CPU, 2, timer)
    assert (s.precision, s.threads) == ("fp32", 2)
    assert s.lines()[0] == "precision: fp32 (this CPU has no native bf16)"
    assert all(p == "fp32" for p, _ in timer.asked)  # bf16 was never timed


def test_native_bf16_is_chosen_only_with_a_clear_margin(native):
    native(True)
    fast = settle("auto", 0, CPU, 2, FakeTimer(fp32_1=0.2, fp32_2=0.1, bf16_2=0.1 / (BF16_MARGIN + 0.05)))
    assert fast.precision == "bf16" and "native on this CPU" in fast.precision_why
    noise = settle("auto", 0, CPU, 2, FakeTimer(fp32_1=0.2, fp32_2=0.1, bf16_2=0.1 / (BF16_MARGIN - 0.05)))
    assert noise.precision == "fp32" and f"not {BF16_MARGIN:g}x faster" in noise.precision_why
    slower = settle("auto", 0, CPU, 2, FakeTimer(fp32_1=0.2, fp32_2=0.1, bf16_2=0.3))
    assert slower.precision == "fp32"
    small = FakeTimer(fp32_1=SMALL_STEP_S / 2, bf16_1=SMALL_STEP_S / 10)
    assert settle("auto", 0, CPU, 2, small).precision == "fp32" and ("bf16", 1) not in small.asked


def test_explicit_precisions_run_as_asked(native, capsys):
    native(True)
    for asked in ("fp32", "bf16", "fp16"):
        assert settle(asked, 1, CPU, 2, FakeTimer()).precision == asked  # nothing timed: FakeTimer() has no entries
    native(False)
    s = settle("bf16", 1, CPU, 2, FakeTimer(fp32_1=0.2, bf16_1=2.86))
    assert s.precision == "bf16"
    err = capsys.readouterr().err
    assert "notice: this CPU has no native bf16" in err and "14.3x slower" in err and "2.86 s in bf16" in err


def test_gpus_decide_by_capability_and_others_take_fp32(native, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    cuda = settle("auto", 0, torch.device("cuda"), 2, FakeTimer())
    assert (cuda.precision, cuda.precision_why) == ("bf16", "this GPU supports bf16")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert settle("auto", 0, torch.device("cuda"), 2, FakeTimer()).precision == "fp32"
    assert settle("auto", 0, torch.device("mps"), 2, FakeTimer()).precision == "fp32"


def test_threads_all_cores_only_when_clearly_faster(native):
    native(False)
    small = FakeTimer(fp32_1=SMALL_STEP_S / 2, fp32_2=SMALL_STEP_S / 4)
    assert settle("auto", 0, CPU, 2, small).threads == 1 and small.asked == [("fp32", 1)]  # too small to split
    assert settle("auto", 0, CPU, 2, FakeTimer(fp32_1=0.2, fp32_2=0.2 / (THREADS_MARGIN + 0.1))).threads == 2
    assert settle("auto", 0, CPU, 2, FakeTimer(fp32_1=0.2, fp32_2=0.2 / (THREADS_MARGIN - 0.05))).threads == 1
    assert settle("auto", 3, CPU, 2, FakeTimer()).threads == 2  # asked for 3, capped at the process's cores


# --- training runs ---------------------------------------------------------------------------------------

def _digits(steps: int = 4, **train) -> RunConfig:
    """The default digits run (the image preset: the U-Net and training settings a user gets)."""
    config = default_config("digits", cond=True)
    config.train.steps, config.train.checkpoint_every, config.train.log_every = steps, steps, 2
    for k, v in train.items():
        setattr(config.train, k, v)
    return config


def test_a_default_image_run_without_native_bf16_trains_in_fp32(native, fake_probe, tmp_path, capsys):
    native(False)
    measured = fake_probe(fp32_1=0.2, fp32_n=0.1, bf16_n=0.05)
    config = _digits()
    assert config.train.precision == "auto" and config.train.threads == 0
    train_run(config, tmp_path / "r", progress=False)
    log = read_log(tmp_path / "r" / LOG)
    assert set(log["precision"]) == {"fp32"} and set(log["threads"]) == {ALL}
    assert measured and all(p == "fp32" for p, _ in measured)
    assert "precision: fp32 (this CPU has no native bf16)" in capsys.readouterr().err
    assert read_config(tmp_path / "r").train.precision == "auto"  # the config keeps what was asked


def test_with_native_bf16_a_faster_bf16_is_chosen_and_logged(native, fake_probe, tmp_path):
    native(True)
    fake_probe(fp32_1=0.2, fp32_n=0.1, bf16_n=0.05)
    train_run(_digits(), tmp_path / "r", progress=False)
    assert set(read_log(tmp_path / "r" / LOG)["precision"]) == {"bf16"}


def test_the_real_probe_on_this_machine_agrees_with_its_own_timings(tmp_path, monkeypatch, capsys):
    """No fakes: the probe times the run's step here, caches it, and the run trains as its timings say."""
    monkeypatch.setenv("DIFFKIT_CACHE", str(tmp_path / "cache"))
    config = _digits(steps=2)
    config.network.channels = 16  # a smaller U-Net of the preset's shape, so the probe is quick
    train_run(config, tmp_path / "r", progress=False)
    ran = read_log(tmp_path / "r" / LOG)
    (probe,) = (tmp_path / "cache" / "probes").glob("*.json")
    times = json.loads(probe.read_text())["seconds"]
    assert all(v > 0 for v in times.values()) and "fp32@1" in times
    threads = ran["threads"][-1]
    if times["fp32@1"] < SMALL_STEP_S or machine.cores() == 1:
        assert threads == 1
    else:
        n = machine.cores()
        assert threads == (n if times["fp32@1"] / times[f"fp32@{n}"] >= THREADS_MARGIN else 1)
    want = "fp32"
    if machine.cpu_bf16_native() and times[f"fp32@{int(threads)}"] >= SMALL_STEP_S:
        t = int(threads)
        want = "bf16" if times[f"fp32@{t}"] / times[f"bf16@{t}"] >= BF16_MARGIN else "fp32"
    else:
        assert not any(k.startswith("bf16") for k in times)
    assert ran["precision"][-1] == want
    assert f"precision: {want} (" in capsys.readouterr().err


def test_the_probe_leaves_the_run_bitwise_as_it_would_be(tmp_path, monkeypatch):
    """A start that probes (empty cache) and one that reads the probe back train the same weights: the probe
    draws from a generator of its own and restores the global RNG (dropout draws from it)."""
    monkeypatch.setenv("DIFFKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(machine, "cpu_bf16_native", lambda: False)
    weights = []
    for name in ("probed", "cached"):
        config = _digits(steps=6)
        config.network.channels, config.network.dropout = 8, 0.3
        torch.manual_seed(123)  # dropout draws from the global generator: the same state at both starts
        train_run(config, tmp_path / name, progress=False)
        weights.append(load_run(tmp_path / name).network.state_dict())
    assert len(list((tmp_path / "cache" / "probes").glob("*.json"))) == 1
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def _stop_at(step):
    return lambda rec: rec.step >= step


def test_resume_on_a_machine_without_native_bf16_trains_on_in_fp32(native, fake_probe, tmp_path, capsys):
    fake_probe(fp32_1=0.2, fp32_n=0.1, bf16_n=0.05)
    native(True)  # started on an AMX machine: bf16
    config = _digits(steps=8, checkpoint_every=4)
    train_run(config, tmp_path / "r", progress=False, callback=_stop_at(4))
    native(False)  # resumed on an AVX2 one
    capsys.readouterr()
    train_run(None, tmp_path / "r", resume=True, progress=False)
    assert "precision: fp32 (this CPU has no native bf16)" in capsys.readouterr().err
    log = read_log(tmp_path / "r" / LOG)
    assert [(int(s), p) for s, p in zip(log["step"], log["precision"])] == [(2, "bf16"), (4, "bf16"), (6, "fp32"),
                                                                             (8, "fp32")]
    # an explicit precision on resume overrides auto, as before
    train_run(config, tmp_path / "q", progress=False, callback=_stop_at(4))
    trainer = make_trainer(read_config(tmp_path / "q"), tmp_path / "q", progress=False,
                           runtime=Runtime(precision="bf16"))
    assert trainer.load_state() and trainer.settle().precision == "bf16"


def test_resume_at_the_same_precision_stays_bitwise(native, fake_probe, tmp_path):
    native(True)
    fake_probe(fp32_1=0.2, fp32_n=0.2, bf16_n=0.05, bf16_1=0.05)  # bf16 on one thread
    config = _digits(steps=8, checkpoint_every=4)
    config.network.channels = 8
    train_run(config, tmp_path / "whole", progress=False)
    train_run(config, tmp_path / "parts", progress=False, callback=_stop_at(4))
    train_run(None, tmp_path / "parts", resume=True, progress=False)
    assert set(read_log(tmp_path / "parts" / LOG)["precision"]) == {"bf16"}
    a, b = (load_run(tmp_path / n).network.state_dict() for n in ("whole", "parts"))
    assert all(torch.equal(a[k], b[k]) for k in a)


# --- every command that trains ---------------------------------------------------------------------------

def test_the_digits_demo_trains_at_the_chosen_precision(native, fake_probe, tmp_path, monkeypatch):
    # this test is about training: the demo's sampling stays fp32 (bf16 is emulated, slowly, on most CI machines)
    monkeypatch.setattr("diffkit.nn.precision.bf16_native", lambda device: False)
    native(False)
    fake_probe(fp32_1=0.2, fp32_n=0.1)
    assert main(["demo", "--data", "digits", "--out", str(tmp_path / "d"), "--steps", "4", "--n", "20",
                 "--quiet"]) == 0
    assert set(read_log(tmp_path / "d" / "run" / LOG)["precision"]) == {"fp32"}
    native(True)
    fake_probe(fp32_1=0.2, fp32_n=0.1, bf16_n=0.05)
    assert main(["demo", "--data", "digits", "--out", str(tmp_path / "e"), "--steps", "4", "--n", "20",
                 "--quiet"]) == 0
    assert set(read_log(tmp_path / "e" / "run" / LOG)["precision"]) == {"bf16"}


def test_a_lab_training_job_on_images_runs_at_the_chosen_precision(native, fake_probe, tmp_path):
    from diffkit.lab.app import create_app

    native(False)
    fake_probe(fp32_1=0.2, fp32_n=0.1, bf16_n=0.05)
    (tmp_path / "runs").mkdir()
    with TestClient(create_app(tmp_path / "runs"), base_url="http://localhost") as c:
        job = c.post("/api/train", json={"name": "img", "data": "digits", "steps": 10, "cond": True}).json()["id"]
        with c.stream("GET", f"/api/jobs/{job}/events") as s:
            text = "".join(s.iter_text())
    start = json.loads(text.split("event: start\ndata: ")[1].split("\n")[0])
    assert (start["precision"], start["threads"]) == ("fp32", ALL)
    assert start["how"][0] == "precision: fp32 (this CPU has no native bf16)" and "event: done" in text
    assert set(read_log(tmp_path / "runs" / "img" / LOG)["precision"]) == {"fp32"}


def test_train_vae_takes_precision_and_threads(tmp_path, capsys):
    out = tmp_path / "vae"
    assert main(["train-vae", "--data", "digits", "--out", str(out), "--factor", "2", "--steps", "4",
                 "--batch-size", "16", "--precision", "fp32", "--threads", "1", "--quiet", "--json"]) == 0
    cfg = read_config(out)
    assert (cfg.train.precision, cfg.train.threads) == ("fp32", 1)
    log = read_log(out / LOG)
    assert set(log["precision"]) == {"fp32"} and set(log["threads"]) == {1}
    json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # --json output stays JSON on stdout
    assert main(["train-vae", "--data", "digits", "--out", str(tmp_path / "v2"), "--threads", "-1"]) == 2
    assert "--threads must be an integer >= 0, got -1" in capsys.readouterr().err


def test_train_resume_takes_threads_as_how_it_runs(tmp_path, capsys):
    config = default_config("moons")
    config.train.steps, config.train.checkpoint_every, config.train.threads = 100, 50, 2
    train_run(config, tmp_path / "r", progress=False, callback=_stop_at(50))
    assert main(["train", "--out", str(tmp_path / "r"), "--resume", "--threads", "1", "--quiet"]) == 0
    log = read_log(tmp_path / "r" / LOG)
    assert [int(t) for t in log["threads"]] == [min(2, ALL), 1] and read_config(tmp_path / "r").train.threads == 2
    assert "threads: 1 (asked for)" in capsys.readouterr().err


def test_old_configs_read_the_presets_bf16_as_auto(tmp_path):
    d = default_config("digits", cond=True).to_dict()
    d["format_version"], d["train"]["precision"] = 2, "bf16"
    assert RunConfig.from_dict(json.loads(json.dumps(d))).train.precision == "auto"
    d["format_version"] = 3
    assert RunConfig.from_dict(json.loads(json.dumps(d))).train.precision == "bf16"


# --- the machine -----------------------------------------------------------------------------------------

def test_the_machine_is_described_with_measured_peaks():
    text = machine.describe()
    assert f"{machine.cores()} cores" in text and machine.cpu_capability() in text
    assert ("native bf16: yes" in text) == machine.cpu_bf16_native()
    fp32 = float(text.split("fp32 ")[1].split(" GFLOP/s")[0])
    assert fp32 > 1  # any CPU that runs this suite does more than a GFLOP/s of fp32 matmul


@pytest.mark.parametrize("vendor, family, model, core", [
    ("AuthenticAMD", 25, 17, "Zen 4, family 25 model 17"),    # EPYC 9004 (Genoa)
    ("AuthenticAMD", 26, 2, "Zen 5, family 26 model 2"),      # EPYC 9005 (Turin)
    ("AuthenticAMD", 25, 1, "Zen 3, family 25 model 1"),      # EPYC 7003 (Milan)
    ("AuthenticAMD", 23, 49, "Zen 2, family 23 model 49"),    # EPYC 7002 (Rome)
    ("GenuineIntel", 6, 143, "family 6 model 143"),           # Sapphire Rapids: numbers only
    # the ranges' edges
    ("AuthenticAMD", 25, 0x0F, "Zen 3, family 25 model 15"), ("AuthenticAMD", 25, 0x20, "Zen 3, family 25 model 32"),
    ("AuthenticAMD", 25, 0x5F, "Zen 3, family 25 model 95"), ("AuthenticAMD", 25, 0x60, "Zen 4, family 25 model 96"),
    ("AuthenticAMD", 25, 0xAF, "Zen 4, family 25 model 175"), ("AuthenticAMD", 25, 0xB0, "family 25 model 176"),
    ("AuthenticAMD", 26, 0x4F, "Zen 5, family 26 model 79"), ("AuthenticAMD", 26, 0x50, "Zen 6, family 26 model 80"),
    ("AuthenticAMD", 23, 0x2F, "Zen / Zen+, family 23 model 47"), ("AuthenticAMD", 23, 0x30, "Zen 2, family 23 model 48"),
])
def test_the_cpu_core_is_named_and_keys_the_timings(monkeypatch, vendor, family, model, core):
    """Two hosts that both call themselves "AMD EPYC" are told apart by family and model, in every benchmark's
    header and in the key under which the trainer caches its probe timings."""
    def fake(fam, mod):
        monkeypatch.setattr(machine, "_cpuinfo", lambda: {"model name": "AMD EPYC", "vendor_id": vendor,
                                                          "cpu family": str(fam), "model": str(mod)})
    fake(family, model)
    assert machine.cpu_core() == core and f"({core})" in machine.describe(peaks=False)
    key = machine.machine_key()
    fake(family + 1, model)  # another family, the same model name and everything else: another key
    assert machine.machine_key() != key
    monkeypatch.setattr(machine, "_cpuinfo", lambda: {"model name": "AMD EPYC"})
    assert machine.cpu_core() == "" and "AMD EPYC, " in machine.describe(peaks=False)


def test_every_benchmark_prints_the_machine_first():
    scripts = [p for p in sorted(Path(__file__).parents[1].glob("benchmarks/*.py"))
               if "__main__" in p.read_text()]  # not the helper modules (the peer's U-Net)
    assert len(scripts) >= 13
    for script in scripts:
        tree = ast.parse(script.read_text())
        main_fn = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "main"]
        assert main_fn, f"{script.name} has no main()"
        calls = [n for n in ast.walk(main_fn[0]) if isinstance(n, ast.Call)]
        first_print = min((n for n in calls if getattr(n.func, "id", None) == "print"), key=lambda n: n.lineno)
        assert "describe" in ast.dump(first_print), f"{script.name}: the first print is not machine.describe()"


def test_every_rank_takes_rank_0s_choice(native, fake_probe, monkeypatch, tmp_path, capsys):
    """Under several processes only rank 0 decides (and says so); the others receive its choice through one
    collective, here stood in for by the sum the real all-reduce would return."""
    from diffkit.devices import PRECISIONS
    from diffkit.training import trainer as trainer_module

    native(True)
    fake_probe(fp32_1=0.2, fp32_n=0.2, bf16_1=0.05, bf16_n=0.05)  # rank 0 times its share of the cores: one
    sent = []

    def all_reduce_sum(tensor, runtime):  # rank 0 sends its choice; the peer contributes zeros
        sent.append((runtime.rank, tensor.clone()))
        return tensor if runtime.rank == 0 else torch.tensor([PRECISIONS.index("bf16"), 2.0], dtype=torch.float64)

    monkeypatch.setattr(trainer_module, "all_reduce_sum", all_reduce_sum)
    monkeypatch.setattr(trainer_module.Trainer, "_wrap", lambda self, network: network)  # no process group here
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    config = _digits()
    chosen = {}
    for rank in (0, 1):
        runtime = Runtime(rank=rank, world_size=2)
        t = make_trainer(config, tmp_path / f"r{rank}", progress=False, runtime=runtime)
        chosen[rank] = t.settle()
    said = capsys.readouterr().err
    assert said.count("precision: bf16 (native on this CPU") == 1  # rank 0 only
    assert (chosen[0].precision, chosen[1].precision, chosen[1].threads) == ("bf16", "bf16", 2)
    assert sent[0][1].tolist() == [PRECISIONS.index("bf16"), 1.0]
    assert sent[1][1].tolist() == [0.0, 0.0]  # rank 1 decided nothing itself


def test_one_slow_product_does_not_stop_the_peak_probe_at_a_small_size():
    """matmul_gflops grows the square until a product takes >= 5 ms; the fastest of three products decides, so one
    hiccup at 128 (10 ms) does not leave the probe timing a size where bf16 runs at a few percent of its peak. With
    a clock that makes 128, 256 and 512 fast and 1024 take 20 ms, the probe times 12 products at 1024."""
    from unittest import mock

    durations = iter([0.010, 1e-4, 1e-4, 3e-4, 3e-4, 3e-4, 3e-3, 3e-3, 3e-3, 0.02, 0.02, 0.02, 0.24])
    clock = {"now": 0.0, "started": False}

    def fake_clock():  # every second reading is one timed stretch later
        if clock["started"]:
            clock["now"] += next(durations)
        clock["started"] = not clock["started"]
        return clock["now"]

    with mock.patch.object(machine.time, "perf_counter", fake_clock):
        gflops = machine.matmul_gflops(torch.float32)
    assert gflops == pytest.approx(2 * 1024 ** 3 * 12 / 0.24 / 1e9) and next(durations, None) is None
