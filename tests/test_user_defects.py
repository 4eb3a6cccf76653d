"""Defects a new user hit, each pinned by a test: read-only folders, seeds, sidecars, headers, tiny files,
--version, progress, huge --n-ref."""

from __future__ import annotations

import builtins
import errno
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from test_cli import run

from diffkit import __version__
from diffkit.cli import main


@pytest.fixture
def read_only(monkeypatch):
    """Make writes under the folders given to the returned function fail with EACCES, as a read-only folder
    does for a normal user (the suite may run as root, for whom chmod does not stop writes)."""
    folders: list[Path] = []

    def inside(path) -> bool:
        try:
            p = Path(os.fsdecode(path)).resolve()
        except (TypeError, ValueError):
            return False
        return any(p == f or f in p.parents for f in folders)

    def deny(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))

    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
    real_mkstemp, real_mkdtemp, real_ntf = tempfile.mkstemp, tempfile.mkdtemp, tempfile.NamedTemporaryFile

    def fake_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and isinstance(file, (str, bytes, os.PathLike)) and inside(file):
            deny(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            deny(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if inside(path):
            deny(path)
        return real_mkdir(path, *args, **kwargs)

    def fake_tmp(real):
        def make(*args, dir=None, **kwargs):
            if dir is not None and inside(Path(dir) / "x"):
                deny(dir)
            return real(*args, dir=dir, **kwargs)
        return make

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
    monkeypatch.setattr(tempfile, "mkstemp", fake_tmp(real_mkstemp))
    monkeypatch.setattr(tempfile, "mkdtemp", fake_tmp(real_mkdtemp))
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", fake_tmp(real_ntf))
    return lambda folder: folders.append(Path(folder).resolve())


def _snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _one_error(code, err, fragment=""):
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if not ln.startswith(("notice: ", "precision: ", "threads: "))]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert fragment in err, err


@pytest.mark.parametrize("command", ["train", "train --overwrite", "train --resume", "sample --out", "sample --plot",
                                     "demo"])
def test_a_read_only_folder_is_one_sentence(tiny_run, tmp_path, capsys, read_only, command):
    import shutil

    ro = tmp_path / "ro"
    ro.mkdir()
    run_dir = ro / "run"
    if command in ("train --overwrite", "train --resume"):
        shutil.copytree(tiny_run, run_dir)
        if command == "train --resume":
            shutil.rmtree(next((run_dir / "train_state").iterdir()))  # leave work to resume
    before = _snapshot(ro)
    read_only(ro)
    argv = {"train": ["train", "--data", "circle", "--out", run_dir, "--steps", 5, "--quiet"],
            "train --overwrite": ["train", "--data", "circle", "--out", run_dir, "--steps", 5, "--overwrite", "--quiet"],
            "train --resume": ["train", "--out", run_dir, "--resume", "--quiet"],
            "sample --out": ["sample", "--run", tiny_run, "--out", ro / "s.npy", "--quiet"],
            "sample --plot": ["sample", "--run", tiny_run, "--out", tmp_path / "s.npy", "--plot", ro / "p.png",
                              "--quiet"],
            "demo": ["demo", "--out", ro / "demo", "--steps", 5, "--n", 50, "--quiet"]}[command]
    code, _, err = run(argv, capsys)
    _one_error(code, err)
    assert "permission denied" in err.lower()
    assert _snapshot(ro) == before
    assert not (tmp_path / "s.npy").exists()  # --plot is checked before the .npy is written


def test_sample_seeds_are_fresh_recorded_and_repeatable(tiny_run, tmp_path, capsys):
    a, b, c = tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "c.npy"
    for out in (a, b):
        code, stdout, err = run(["sample", "--run", tiny_run, "--n", 50, "--steps", 5, "--out", out, "--quiet"], capsys)
        assert code == 0, err
        assert "seed " in stdout and str(out.with_suffix(".json")) in stdout
    assert not np.array_equal(np.load(a), np.load(b))  # two default calls are two different draws
    side = json.loads(a.with_suffix(".json").read_text())
    assert side["seed"] != json.loads(b.with_suffix(".json").read_text())["seed"]
    assert side["sampler"] == "ddim" and side["steps"] == 5 and side["n"] == 50 and side["diffkit"] == __version__
    assert side["run"] == str(tiny_run.resolve()) and side["run_step"] == 60 and side["steps_taken"] == 5
    assert run(["sample", "--run", tiny_run, "--n", 50, "--steps", 5, "--out", c, "--seed", side["seed"], "--quiet"],
               capsys)[0] == 0
    assert np.array_equal(np.load(a), np.load(c))
    # the sidecar is never overwritten silently either
    (tmp_path / "d.json").write_text("mine")
    code, _, err = run(["sample", "--run", tiny_run, "--n", 5, "--out", tmp_path / "d.npy"], capsys)
    _one_error(code, err, "d.json already exists")
    assert (tmp_path / "d.json").read_text() == "mine" and not (tmp_path / "d.npy").exists()


def test_sampling_shows_progress_unless_quiet(tiny_run, tmp_path, capsys):
    code, _, err = run(["sample", "--run", tiny_run, "--n", 20, "--steps", 7, "--out", tmp_path / "p.npy"], capsys)
    assert code == 0 and "sample ddim" in err
    code, _, err = run(["sample", "--run", tiny_run, "--n", 20, "--steps", 7, "--out", tmp_path / "q.npy", "--quiet"],
                       capsys)
    assert code == 0 and err == ""


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"diffkit {__version__}"


def test_a_csv_header_is_skipped_with_a_notice(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = "".join(f"{a:.4f},{b:.4f},{int(a > 0)}\n" for a, b in rng.normal(size=(300, 2)))
    (tmp_path / "pts.csv").write_text("x,y,label\n" + rows)
    code, _, err = run(["train", "--data", tmp_path / "pts.csv", "--cond", "--out", tmp_path / "r", "--steps", 5,
                        "--quiet"], capsys)
    assert code == 0, err
    assert "notice:" in err and "first row (x, y, label) is read as column names" in err


def test_a_tiny_point_file_gets_a_notice(tmp_path, capsys):
    np.save(tmp_path / "five.npy", np.arange(10, dtype=np.float32).reshape(5, 2))
    code, _, err = run(["train", "--data", tmp_path / "five.npy", "--out", tmp_path / "r", "--steps", 5, "--quiet"],
                       capsys)
    assert code == 0 and "notice:" in err and "holds only 5 points" in err


def test_a_huge_n_ref_is_bounded(tmp_path, capsys):
    np.save(tmp_path / "s.npy", np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32))
    code, stdout, err = run(["eval", "--samples", tmp_path / "s.npy", "--data", "gaussians8", "--n-ref", 1_000_000,
                             "--json"], capsys)
    assert code == 0, err
    m = json.loads(stdout)
    assert m["n_reference"] == 500 and m["floor_draws"] == 5 and m["energy_floor_std"] > 0
