"""End-to-end CLI tests: the happy path, determinism, and every bad input (one sentence, exit 2)."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

from diffkit.cli import main


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code, err, *fragments):
    assert code == 2, err
    assert err.startswith("error: "), err
    assert "Traceback" not in err
    assert err.count("\n") == 1, f"expected one line, got {err!r}"
    for f in fragments:
        assert f in err, (f, err)


def test_train_sample_eval_roundtrip(tiny_run, tmp_path, capsys):
    out = tmp_path / "s.npy"
    code, stdout, err = run(["sample", "--run", tiny_run, "--n", 300, "--out", out, "--steps", 20], capsys)
    assert code == 0, err
    x = np.load(out)
    assert x.dtype == np.float32 and x.shape == (300, 2) and np.isfinite(x).all()
    code, stdout, err = run(["eval", "--samples", out, "--data", "circle", "--json"], capsys)
    assert code == 0, err
    import json

    m = json.loads(stdout)
    assert {"energy", "energy_floor", "mmd", "mmd_floor", "swd", "swd_floor", "radius_mean", "radius_std"} <= set(m)
    assert 0.5 < m["radius_mean"] < 1.5


def test_sample_is_bitwise_reproducible(tiny_run, tmp_path, capsys):
    paths = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        p = tmp_path / f"{name}.npy"
        assert run(["sample", "--run", tiny_run, "--n", 200, "--out", p, "--sampler", "ddpm", "--steps", 30,
                    "--seed", seed], capsys)[0] == 0
        paths.append(p)
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b
    assert a != c


def test_train_is_bitwise_reproducible(tmp_path, capsys):
    for name in ("a", "b"):
        assert run(["train", "--data", "moons", "--out", tmp_path / name, "--steps", 25, "--quiet"], capsys)[0] == 0
    assert (tmp_path / "a/model.safetensors").read_bytes() == (tmp_path / "b/model.safetensors").read_bytes()


def test_subprocess_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "diffkit.cli", "train", "--data", "nosuch", "--out", str(tmp_path / "r")],
                          check=False, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown dataset 'nosuch'")
    assert "Traceback" not in proc.stderr


# --- bad data -------------------------------------------------------------------------------------

def test_unknown_dataset(tmp_path, capsys):
    code, _, err = run(["train", "--data", "spirall", "--out", tmp_path / "r"], capsys)
    assert_user_error(code, err, "unknown dataset 'spirall'", "spiral", "gaussians8")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("case", ["missing", "shape", "nan", "inf", "empty", "empty_csv", "text_csv", "bad_suffix"])
def test_bad_data_file(case, tmp_path, capsys):
    p = tmp_path / "pts.npy"
    if case == "shape":
        np.save(p, np.zeros((10, 3)))
    elif case == "nan":
        x = np.zeros((10, 2))
        x[3, 1] = np.nan
        np.save(p, x)
    elif case == "inf":
        x = np.zeros((10, 2))
        x[0, 0] = np.inf
        np.save(p, x)
    elif case == "empty":
        np.save(p, np.zeros((0, 2)))
    elif case == "empty_csv":
        p = tmp_path / "pts.csv"
        p.write_text("")
    elif case == "text_csv":
        p = tmp_path / "pts.csv"
        p.write_text("a,b\nc,d\n")
    elif case == "bad_suffix":
        p = tmp_path / "pts.txt"
        p.write_text("1,2\n")
    expected = {"missing": "does not exist", "shape": "shape [10, 3]; expected [N, 2]", "nan": "NaN or Inf",
                "inf": "NaN or Inf", "empty": "is empty", "empty_csv": "is empty", "text_csv": "x and y must be numbers",
                "bad_suffix": ".npy/.npz/.csv"}[case]
    code, _, err = run(["train", "--data", p, "--out", tmp_path / "r", "--steps", 5], capsys)
    assert_user_error(code, err, expected)
    # eval reads sample files with the same checks
    code, _, err = run(["eval", "--samples", p, "--data", "circle"], capsys)
    assert_user_error(code, err, expected)


def test_user_file_at_large_scale_trains(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = 1000.0 + 1000.0 * rng.normal(size=(2000, 2)) * [1.0, 0.1]
    np.savetxt(tmp_path / "pts.csv", x, delimiter=",")
    assert run(["train", "--data", tmp_path / "pts.csv", "--out", tmp_path / "r", "--steps", 150, "--quiet"], capsys)[0] == 0
    assert run(["sample", "--run", tmp_path / "r", "--n", 2000, "--out", tmp_path / "s.npy", "--steps", 20], capsys)[0] == 0
    s = np.load(tmp_path / "s.npy")
    # samples come back in the data's own coordinates (mean ~1000, std ~[1000, 100])
    assert np.allclose(s.mean(0), x.mean(0), atol=0.2 * x.std(0).max())
    assert np.allclose(s.std(0), x.std(0), rtol=0.35)


# --- bad sampling options -------------------------------------------------------------------------

def test_unknown_sampler(tiny_run, tmp_path, capsys):
    code, _, err = run(["sample", "--run", tiny_run, "--out", tmp_path / "s.npy", "--sampler", "euler-x"], capsys)
    assert_user_error(code, err, "unknown sampler 'euler-x'", "ddpm", "ddim")
    assert not (tmp_path / "s.npy").exists()


@pytest.mark.parametrize("steps", [0, -1, 1001])
def test_sample_steps_out_of_range(tiny_run, tmp_path, capsys, steps):
    code, _, err = run(["sample", "--run", tiny_run, "--out", tmp_path / "s.npy", "--steps", steps], capsys)
    assert_user_error(code, err, "steps must be an integer from 1 to the model's 1000 timesteps")


@pytest.mark.parametrize("steps", ["0", "-5", "abc"])
def test_train_steps_not_positive(tmp_path, capsys, steps):
    code, _, err = run(["train", "--data", "circle", "--out", tmp_path / "r", "--steps", steps], capsys)
    assert_user_error(code, err, "--steps must be a positive integer")


def test_option_the_sampler_does_not_take(tiny_run, tmp_path, capsys):
    code, _, err = run(["sample", "--run", tiny_run, "--out", tmp_path / "s.npy", "--sampler", "ddpm", "--eta", 0.5],
                       capsys)
    assert_user_error(code, err, "does not take option 'eta'", "variance")


def test_unknown_spacing_schedule_prediction(tiny_run, tmp_path, capsys):
    code, _, err = run(["sample", "--run", tiny_run, "--out", tmp_path / "s.npy", "--spacing", "middle"], capsys)
    assert_user_error(code, err, "unknown timestep spacing 'middle'", "leading", "trailing", "linspace")
    code, _, err = run(["train", "--out", tmp_path / "r", "--schedule", "quadratic"], capsys)
    assert_user_error(code, err, "unknown schedule 'quadratic'", "cosine")
    code, _, err = run(["train", "--out", tmp_path / "r", "--prediction", "score"], capsys)
    assert_user_error(code, err, "unknown prediction type 'score'", "epsilon", "x0", "v")


def test_sample_never_overwrites_output(tiny_run, tmp_path, capsys):
    out = tmp_path / "s.npy"
    out.write_bytes(b"precious")
    code, _, err = run(["sample", "--run", tiny_run, "--out", out, "--steps", 5], capsys)
    assert_user_error(code, err, "already exists", "--overwrite")
    assert out.read_bytes() == b"precious"
    assert run(["sample", "--run", tiny_run, "--out", out, "--steps", 5, "--overwrite"], capsys)[0] == 0
    assert np.load(out).shape == (1000, 2)


# --- bad run directories --------------------------------------------------------------------------

def test_run_dir_missing_or_without_model(tiny_run, tmp_path, capsys):
    code, _, err = run(["sample", "--run", tmp_path / "nope", "--out", tmp_path / "s.npy"], capsys)
    assert_user_error(code, err, "does not exist")
    (tmp_path / "empty").mkdir()
    code, _, err = run(["sample", "--run", tmp_path / "empty", "--out", tmp_path / "s.npy"], capsys)
    assert_user_error(code, err, "not a diffkit run directory")
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(tiny_run / "config.json", partial / "config.json")
    code, _, err = run(["sample", "--run", partial, "--out", tmp_path / "s.npy"], capsys)
    assert_user_error(code, err, "model.safetensors is missing")


def _copy_run(tiny_run, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(tiny_run, dst)
    return dst


def test_truncated_checkpoint(tiny_run, tmp_path, capsys):
    r = _copy_run(tiny_run, tmp_path)
    data = (r / "model.safetensors").read_bytes()
    (r / "model.safetensors").write_bytes(data[: len(data) // 2])
    _sample_fails(r, tmp_path, capsys, "model.safetensors does not match its checksum")


def _sample_fails(r, tmp_path, capsys, fragment):
    code, _, err = run(["sample", "--run", r, "--out", tmp_path / "s.npy"], capsys)
    assert_user_error(code, err, fragment)


def test_foreign_checkpoint(tiny_run, tmp_path, capsys):
    r = _copy_run(tiny_run, tmp_path)
    (r / "manifest.json").unlink()  # without checksums, the file format itself is checked
    save_file({"weight": np.zeros((3, 3), np.float32)}, str(r / "model.safetensors"))
    _sample_fails(r, tmp_path, capsys, "not written by diffkit")
    save_file({"weight": np.zeros((3, 3), np.float32)}, str(r / "model.safetensors"),
              metadata={"diffkit": '{"format": "diffkit"}'})
    _sample_fails(r, tmp_path, capsys, "does not match the network")


def test_foreign_or_truncated_config(tiny_run, tmp_path, capsys):
    r = _copy_run(tiny_run, tmp_path)
    (r / "manifest.json").unlink()  # without checksums, the file format itself is checked
    (r / "config.json").write_text('{"hello": "world"}')
    _sample_fails(r, tmp_path, capsys, "not a diffkit run config")
    text = (tiny_run / "config.json").read_text()
    (r / "config.json").write_text(text[: len(text) // 2])
    _sample_fails(r, tmp_path, capsys, "truncated or not JSON")


def test_train_never_overwrites_a_run(tiny_run, tmp_path, capsys):
    r = _copy_run(tiny_run, tmp_path)
    before = (r / "model.safetensors").read_bytes()
    code, _, err = run(["train", "--data", "circle", "--out", r, "--steps", 5], capsys)
    assert_user_error(code, err, "already holds a run", "--overwrite", "--resume")
    assert (r / "model.safetensors").read_bytes() == before
    assert run(["train", "--data", "moons", "--out", r, "--steps", 5, "--overwrite", "--quiet"], capsys)[0] == 0
    assert (r / "model.safetensors").read_bytes() != before
    assert '"spec": "moons"' in (r / "config.json").read_text()


def test_resume_continues_and_rejects_conflicts(tmp_path, capsys):
    r = tmp_path / "r"
    code, _, err = run(["train", "--out", r, "--resume"], capsys)
    assert_user_error(code, err, "does not exist")
    assert run(["train", "--data", "circle", "--out", r, "--steps", 30, "--checkpoint-every", 10, "--quiet"],
               capsys)[0] == 0
    assert sorted(p.name for p in (r / "train_state").iterdir()) == ["step-00000020", "step-00000030"]
    code, _, err = run(["train", "--out", r, "--resume", "--data", "moons"], capsys)
    assert_user_error(code, err, "--data moons (the run has data.spec 'circle')")
    code, _, err = run(["train", "--out", r, "--resume", "--checkpoint-every", 5, "--lr", "0.005"], capsys)  # circle's
    assert_user_error(code, err, "--checkpoint-every 5 (the run has train.checkpoint_every 10)")
    assert "--lr" not in err  # it agrees with the run
    code, _, err = run(["train", "--out", r, "--resume", "--quiet"], capsys)
    assert_user_error(code, err, "already finished its 30 steps")
    # the command that made the run, with --resume appended, is accepted (here: refused only as finished)
    code, _, err = run(["train", "--data", "circle", "--out", r, "--steps", 30, "--checkpoint-every", 10, "--quiet",
                        "--resume"], capsys)
    assert_user_error(code, err, "already finished its 30 steps")
    shutil.rmtree(r / "train_state" / "step-00000030")  # as if killed between the checkpoints at 20 and 30
    code, out, err = run(["train", "--out", r, "--resume", "--quiet"], capsys)
    assert code == 0, err
    assert "trained 10 steps" in out and "step 30" in out
    rows = (r / "train_log.csv").read_text().strip().splitlines()
    assert rows[0] == "step,loss,lr,seconds,skipped,precision,threads" and rows[-1].startswith("30,")


def test_bad_argument_is_one_sentence(capsys):
    code, _, err = run(["sample"], capsys)
    assert_user_error(code, err, "required")
    code, _, err = run(["frobnicate"], capsys)
    assert_user_error(code, err, "invalid choice")


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmpp-2m", "dpmpp-3m", "dpmpp-2m-sde", "euler", "heun",
                                     "euler-a", "langevin"])
def test_every_sampler_from_the_cli(tiny_run, tmp_path, capsys, sampler):
    out = tmp_path / "s.npy"
    code, _, err = run(["sample", "--run", tiny_run, "--n", 64, "--out", out, "--sampler", sampler, "--steps", 6], capsys)
    assert code == 0, err
    x = np.load(out)
    assert x.shape == (64, 2) and np.isfinite(x).all()


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace", "karras", "logsnr"])
def test_every_spacing_from_the_cli(tiny_run, tmp_path, capsys, spacing):
    code, _, err = run(["sample", "--run", tiny_run, "--n", 32, "--out", tmp_path / "s.npy", "--sampler", "dpmpp-2m",
                        "--steps", 8, "--spacing", spacing], capsys)
    assert code == 0, err


def test_sampler_option_errors_list_choices(tiny_run, tmp_path, capsys):
    code, _, err = run(["sample", "--run", tiny_run, "--out", tmp_path / "s.npy", "--sampler", "heun", "--eta", 1],
                       capsys)
    assert_user_error(code, err, "sampler 'heun' does not take option 'eta'", "none")
    code, _, err = run(["sample", "--run", tiny_run, "--out", tmp_path / "s.npy", "--sampler", "ddim", "--snr", 0.2],
                       capsys)
    assert_user_error(code, err, "does not take option 'snr'", "eta")
    code, _, err = run(["sample", "--run", tiny_run, "--out", tmp_path / "s.npy", "--sampler", "langevin", "--snr", 0],
                       capsys)
    assert_user_error(code, err, "snr in (0, 1]")
    code, _, err = run(["sample", "--run", tiny_run, "--out", tmp_path / "s.npy", "--spacing", "cosine"], capsys)
    assert_user_error(code, err, "unknown timestep spacing 'cosine'", "karras", "logsnr")


def test_zero_terminal_snr_needs_v_or_x0(tmp_path, capsys):
    from diffkit.config import RunConfig, ScheduleConfig
    from diffkit.errors import DiffkitError

    with pytest.raises(DiffkitError, match="zero-terminal-SNR .* epsilon"):
        RunConfig(schedule=ScheduleConfig(zero_terminal_snr=True), prediction="epsilon").validate()
    RunConfig(schedule=ScheduleConfig(zero_terminal_snr=True), prediction="v").validate()


def test_zero_terminal_snr_run_samples_with_every_ode_sampler(tmp_path, capsys):
    r = tmp_path / "zt"
    code, _, err = run(["train", "--data", "moons", "--out", r, "--steps", 40, "--zero-terminal-snr", "--quiet"], capsys)
    assert code == 0, err
    assert '"zero_terminal_snr": true' in (r / "config.json").read_text()
    for sampler in ("ddim", "dpmpp-2m", "heun", "euler-a"):
        assert run(["sample", "--run", r, "--n", 50, "--out", tmp_path / f"{sampler}.npy", "--sampler", sampler,
                    "--steps", 5], capsys)[0] == 0
        assert np.isfinite(np.load(tmp_path / f"{sampler}.npy")).all()
    code, _, err = run(["train", "--out", tmp_path / "zt2", "--zero-terminal-snr", "--prediction", "epsilon"], capsys)
    assert_user_error(code, err, "zero-terminal-SNR", "--prediction v")


def test_sample_sigma_range_errors(tiny_run, tmp_path, capsys):
    s = tmp_path / "s.npy"
    for extra, fragment in ((["--sigma-min", 0], "sigma_min must be"), (["--sigma-min", 3, "--sigma-max", 2], "below"),
                            (["--sigma-max", "inf"], "finite")):
        assert_user_error(*run(["sample", "--run", tiny_run, "--out", s, *extra], capsys)[::2], fragment)
    assert not s.exists()
    code, _, err = run(["sample", "--run", tiny_run, "--out", s, "--n", 50, "--sampler", "dpmpp-2m", "--steps", 10,
                        "--sigma-min", 0.05, "--sigma-max", 20], capsys)
    assert code == 0 and np.load(s).shape == (50, 2), err


def test_the_same_command_with_resume_appended_continues_the_run(tmp_path, capsys):
    r = tmp_path / "r"
    cmd = ["train", "--data", "circle", "--out", r, "--steps", 30, "--checkpoint-every", 10, "--lr", "0.003",
           "--seed", 4, "--quiet"]
    assert run(cmd, capsys)[0] == 0
    uninterrupted = (r / "model.safetensors").read_bytes()
    shutil.rmtree(r / "train_state" / "step-00000030")  # as if stopped (kill -9, Ctrl-C) after step 20
    code, out, err = run(cmd + ["--resume"], capsys)
    assert code == 0, err
    assert "trained 10 steps" in out and "step 30" in out
    assert (r / "model.safetensors").read_bytes() == uninterrupted
    code, _, err = run(cmd[:-5] + ["--lr", "0.004", "--seed", 5, "--resume"], capsys)  # two flags differ
    assert_user_error(code, err, "--lr 0.004 (the run has train.lr 0.003)", "--seed 5 (the run has train.seed 4)")
    code, _, err = run(cmd + ["--resume", "--overwrite"], capsys)
    assert_user_error(code, err, "contradict")


def test_resume_of_an_image_run_accepts_its_own_flags_and_names_a_differing_one(tmp_path, capsys):
    r = tmp_path / "d"
    cmd = ["train", "--data", "digits", "--cond", "--out", r, "--steps", 20, "--channels", 16, "--checkpoint-every",
           10, "--precision", "fp32", "--threads", 1, "--quiet"]
    assert run(cmd, capsys)[0] == 0
    shutil.rmtree(r / "train_state" / "step-00000020")
    code, out, err = run(cmd + ["--resume"], capsys)
    assert code == 0, err
    assert "trained 10 steps" in out
    code, _, err = run(["train", "--data", "digits", "--out", r, "--channels", 32, "--resume"], capsys)
    assert_user_error(code, err, "--channels 32 (the run has network.channels 16)")
    assert "--data" not in err  # digits agrees with the run


def test_every_train_flag_is_in_the_table_resume_checks():
    """A new `train` / `train-vae` flag either configures the run (runs.recipes.TRAIN_FLAGS / VAE_FLAGS, so that
    --resume compares it) or says how it runs; none is forgotten."""
    import argparse

    from diffkit.cli.args import build_parser
    from diffkit.runs.recipes import HOW_FLAGS, TRAIN_FLAGS, VAE_FLAGS

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    how_it_runs = {"help", "out", "resume", "overwrite", "quiet", "device", "compile", "nproc", "batch_per_device",
                   "json", *HOW_FLAGS}
    for command, table in (("train", TRAIN_FLAGS), ("train-vae", VAE_FLAGS)):
        dests = {a.dest for a in sub.choices[command]._actions}
        assert dests - how_it_runs == set(table), command
