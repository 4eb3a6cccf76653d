"""Reflow: a flow trained on its teacher's (noise, sample) pairs samples in one step what the teacher needs many
for, its trajectories are straighter, it is an ordinary run that records its teacher, and it resumes exactly."""

import contextlib
import io
import json
import shutil

import pytest

from diffkit.cli import main
from diffkit.data.points import make_dataset
from diffkit.errors import DiffkitError
from diffkit.metrics.points import energy_distance
from diffkit.runs import (
    load_run,
    reflow_run,
    sample_run,
    straightness_run,
    train_config,
    train_run,
    vae_train_config,
)


def quiet(fn, *args, **kwargs):
    with contextlib.redirect_stderr(io.StringIO()):
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("reflow")
    teacher = train_config({"data": "spiral", "objective": "flow", "steps": 1500, "seed": 0, "precision": "fp32",
                            "threads": 1, "checkpoint_every": 500})
    quiet(train_run, teacher, root / "teacher", progress=False)
    quiet(reflow_run, root / "teacher", root / "student", pairs=4000, train_steps=1500, progress=False)
    return root / "teacher", root / "student"


def test_the_student_samples_in_one_step_and_is_straighter(pair):
    teacher, student = (load_run(p) for p in pair)
    ref = make_dataset("spiral", 3000, seed=7)
    one = {name: energy_distance(sample_run(run, 3000, "ddim", 1, seed=1), ref)
           for name, run in (("teacher", teacher), ("student", student))}
    assert one["student"] * 5 < one["teacher"], one  # 1-rectified flow's one step is far off; the student's is not
    s_teacher, s_student = (straightness_run(run, 500)["straightness"] for run in (teacher, student))
    assert s_student * 5 < s_teacher, (s_teacher, s_student)


def test_the_student_records_its_teacher_and_samples_without_it(pair, tmp_path):
    teacher, student = pair
    cfg = json.loads((student / "config.json").read_text())
    assert cfg["parent"]["kind"] == "reflow" and cfg["parent"]["path"] == str(teacher.resolve())
    assert cfg["parent"]["pairs"] == 4000 and len(cfg["parent"]["sha256"]) == 64
    assert cfg["objective"]["name"] == "flow" and cfg["prediction"] == "flow"
    moved = shutil.copytree(student, tmp_path / "alone")
    shutil.move(str(teacher), str(tmp_path / "teacher-away"))
    try:
        assert sample_run(moved, 50, "ddim", 2, seed=0).shape == (50, 2)
    finally:
        shutil.move(str(tmp_path / "teacher-away"), str(teacher))


def test_an_interrupted_student_resumes_to_the_same_bits_and_a_changed_teacher_is_refused(pair, tmp_path):
    _teacher, student = pair
    copy = shutil.copytree(student, tmp_path / "student")
    last = max(p.name for p in (copy / "train_state").iterdir())
    shutil.rmtree(copy / "train_state" / last)
    quiet(train_run, None, copy, resume=True, progress=False)
    assert (copy / "model.safetensors").read_bytes() == (student / "model.safetensors").read_bytes()
    shutil.rmtree(copy / "train_state" / max(p.name for p in (copy / "train_state").iterdir()))
    cfg = json.loads((copy / "config.json").read_text())
    cfg["parent"]["sha256"] = "0" * 64  # as if the teacher had been retrained since
    (copy / "config.json").write_text(json.dumps(cfg))
    (copy / "manifest.json").unlink()
    with pytest.raises(DiffkitError, match="changed since this reflow run was made"):
        quiet(train_run, None, copy, resume=True, progress=False)


def test_reflow_refuses_what_it_cannot_use(pair, tmp_path, capsys):
    teacher, _ = pair
    vae = vae_train_config({"data": "digits", "steps": 2, "precision": "fp32", "threads": 1})
    quiet(train_run, vae, tmp_path / "vae", progress=False)
    (tmp_path / "empty").mkdir()
    cases = [(["--teacher", tmp_path / "vae"], "is a VAE run"),
             (["--teacher", tmp_path / "empty"], "not a diffkit run directory"),
             (["--teacher", teacher, "--sampler", "ddpm"], "deterministic ODE"),
             (["--teacher", teacher, "--guidance", "2"], "unconditional"),
             (["--teacher", teacher, "--pairs", "20000000"], "--pairs"),
             (["--out-of-place"], "unrecognized"),
             ([], "needs --teacher")]
    for extra, fragment in cases:
        code = main(["reflow", "--out", str(tmp_path / "new"), *map(str, extra)])
        err = capsys.readouterr().err
        assert code == 2 and fragment in err and "Traceback" not in err, (extra, err)
        assert not (tmp_path / "new").exists()
    code = main(["reflow", "--out", str(tmp_path / "new"), "--resume", "--teacher", str(teacher)])
    assert code == 2 and "drop --teacher" in capsys.readouterr().err


def test_a_text_teacher_gives_pairs_per_prompt_and_its_student_follows_prompts(digits_text_run, tmp_path, capsys,
                                                                          fp32_sampling):
    from diffkit.runs.captions import caption_bank
    from diffkit.runs.pairs import cached_pairs
    from diffkit.sampling import sample as run_sampler

    student = tmp_path / "text-student"
    code = main(["reflow", "--teacher", str(digits_text_run), "--out", str(student), "--pairs", "96", "--steps", "6",
                 "--guidance", "2", "--train-steps", "20", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "straightness S" in out, out
    cfg = json.loads((student / "config.json").read_text())
    assert cfg["parent"]["guidance"] == 2 and cfg["data"]["text"] == "minilm"
    pairs = cached_pairs(load_run(student).config.parent)
    teacher = load_run(digits_text_run)
    choices, bank = caption_bank(teacher.config)
    ids = pairs["captions"]
    assert ids.shape == (96,) and len(set(ids.tolist())) > 20  # many of the training captions, not one
    assert set(ids.tolist()) <= set(choices.reshape(-1).tolist())
    # each pair is where the guided teacher's ODE takes its own noise under its own caption (no shift in the rows)
    rows = [5, 61]
    cond = {k: v[ids[rows]] for k, v in bank.items()}
    x = run_sampler(teacher.denoiser.replace(guidance_scale=2.0), pairs["noise"][rows], "dpmpp-2m", 6, cond=cond)
    assert (x - pairs["x0"][rows]).abs().max() < 1e-4
    x_other = run_sampler(teacher.denoiser.replace(guidance_scale=2.0), pairs["noise"][rows], "dpmpp-2m", 6,
                          cond={k: v.flip(0) for k, v in cond.items()})
    assert (x_other - pairs["x0"][rows]).abs().max() > 1e-2  # the caption matters, so the check above can fail
    images = sample_run(student, 4, "euler", 2, prompt="a handwritten digit 3")
    assert images.shape == (4, 1, 8, 8) and 0 <= images.min() and images.max() <= 1
    code = main(["eval", "--straightness", "--run", str(student), "--prompt", "the digit 7", "--n", "50", "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["straightness"] >= 0
    assert main(["eval", "--samples", "x.npy", "--data", "digits", "--prompt", "7"]) == 2
    assert "--prompt belongs to --straightness" in capsys.readouterr().err
