"""Distillation: a progressive student samples in a few steps what its teacher needs many for, records its teacher,
samples with its own steps by default, resumes to the same bits after kill -9, and works on every kind of run."""

import contextlib
import dataclasses
import io
import itertools
import json
import shutil

import numpy as np
import pytest
import torch
from test_robustness import train_killed_at

from diffkit.cli import main
from diffkit.cond import ClassConditioning, with_guidance
from diffkit.config import RunConfig
from diffkit.data.points import make_dataset
from diffkit.denoiser import Denoiser
from diffkit.errors import DiffkitError
from diffkit.metrics.points import energy_distance
from diffkit.nn import registry
from diffkit.nn.dit import DiTConfig
from diffkit.nn.embeddings import split_guidance
from diffkit.nn.mlp import MLPConfig
from diffkit.nn.unet import UNetConfig
from diffkit.runs import (
    distill_config,
    distill_run,
    load_run,
    sample_run,
    train_config,
    train_run,
)
from diffkit.runs.distill import LEVELS, STUDENT_SPACING
from diffkit.sampling import make_grid, sampler_grid
from diffkit.schedule import NoiseSchedule
from diffkit.store.rundir import load_weights
from diffkit.training.distill import ProgressiveObjective, ladder
from diffkit.training.guided import GuidanceStage


def quiet(fn, *args, **kwargs):
    with contextlib.redirect_stderr(io.StringIO()):
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def spiral(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    teacher = train_config({"data": "spiral", "steps": 1500, "seed": 0, "precision": "fp32", "threads": 1})
    quiet(train_run, teacher, root / "teacher", progress=False)
    quiet(distill_run, root / "teacher", root / "s4", steps=4, progress=False)
    return root / "teacher", root / "s4"


def test_the_ladder_ends_on_ddims_own_grid_and_halves_by_midpoints():
    schedule = NoiseSchedule.from_name("cosine", 1000)
    grids = ladder(schedule, 4, 3)
    assert [len(g) - 1 for g in grids] == [32, 16, 8, 4]
    assert torch.equal(grids[-1][:-1], sampler_grid(schedule, "ddim", 4)) and grids[-1][-1] == -1
    for fine, coarse in itertools.pairwise(grids):
        assert torch.equal(fine[::2], coarse)  # every round's student levels are its teacher's, every other one
        assert torch.allclose(fine[1::2], (coarse[:-1] + coarse[1:]) / 2)
    narrowed = ladder(schedule, 4, 2, "logsnr:0.3")  # a points student's: ddim at its recorded spacing
    assert torch.equal(narrowed[-1][:-1], sampler_grid(schedule, "ddim", 4, "logsnr:0.3"))
    assert not torch.equal(narrowed[-1], grids[-1]) and torch.equal(narrowed[0][::2], narrowed[1])


def test_the_first_rounds_teacher_steps_uniformly_in_log_snr_and_later_rounds_on_the_midpoint():
    schedule = NoiseSchedule.from_name("linear", 1000)
    objective = ProgressiveObjective(RunConfig().validate(), schedule, None, steps=4, rounds=2, steps_per_round=10,
                                     first_substeps=4, first_spacing="log-snr")
    first, second = objective.tables
    coarse = objective.grids[1]  # the first round's student levels
    assert first["t"].shape == (8, 8) and torch.equal(first["t"][:, 0], coarse[:-1])

    def log_snr(t):
        abar = schedule.alpha_bar_at(t)
        return torch.log(abar / (1 - abar))

    for i in range(7):  # every interval but the last: 8 steps of equal log-SNR, from level i to level i + 1
        lam = log_snr(torch.cat([first["t"][i], coarse[i + 1:i + 2]]))
        assert torch.allclose(lam.diff(), lam.diff()[:1].expand(8), rtol=1e-4)
    last = first["t"][7]  # into x_0: seven equal log-SNR steps down to t = 0, then one to the clean end
    assert last[-1] == 0 and torch.allclose(log_snr(last).diff(), log_snr(last).diff()[:1].expand(7), rtol=1e-4)
    # the second round's teacher is the first round's student: two DDIM steps, through the midpoint it learned
    assert torch.allclose(second["t"][:, 1], (objective.grids[2][:-1] + objective.grids[2][1:]) / 2)
    spaced_in_time = ProgressiveObjective(RunConfig().validate(), schedule, None, steps=4, rounds=2,
                                          steps_per_round=10, first_substeps=4).tables[0]["t"]
    assert torch.allclose(spaced_in_time[0].diff(), spaced_in_time[0].diff()[:1].expand(7))


class _Point(torch.nn.Module):
    """A network whose x0 prediction is a fixed point c, whatever x_t: DDIM is exact for it in any number of steps."""

    def __init__(self, c):
        super().__init__()
        self.c = torch.nn.Parameter(torch.tensor(c))

    def forward(self, x, t, cond=None):
        return self.c.expand_as(x)


def test_the_target_is_the_teachers_two_steps_and_the_weight_is_the_truncated_snr():
    schedule = NoiseSchedule.from_name("cosine", 1000)
    config = RunConfig().validate()
    config.prediction = "x0"
    teacher = Denoiser(_Point(0.7), schedule, "x0")
    objective = ProgressiveObjective(config, schedule, teacher, steps=2, rounds=2, steps_per_round=10)
    g = torch.Generator().manual_seed(0)
    i, eps = objective.draw(256, (2,), g)
    x0 = torch.randn(256, 2, generator=g)
    # a student that predicts the teacher's point has nothing to learn; one off by 0.1 pays 0.01 x the weight
    assert objective.loss(_Point(0.7), x0, (i, eps), None).abs().max() < 1e-9
    loss = objective.loss(_Point(0.8), x0, (i, eps), None)
    weight = objective.tables[0]["weight"][i].float()
    assert torch.allclose(loss, 0.01 * weight, rtol=1e-4) and weight.max() > 1 and weight.min() == 1


def test_a_later_rounds_teacher_is_the_last_student_on_its_sampling_fast_path():
    """Round 1's teacher is round 0's student frozen, called through the MLP's folded path (per-row times: each
    level embedded once): the same targets as the plain frozen network's, and later weight changes unseen."""
    schedule = NoiseSchedule.from_name("linear", 1000)
    config = RunConfig().validate()
    torch.manual_seed(0)
    student = registry.build_network(MLPConfig())
    for p in student.parameters():  # non-zero everywhere, the zero-initialised output layer included
        torch.nn.init.normal_(p, std=0.3)
    objective = ProgressiveObjective(config, schedule, None, steps=2, rounds=2, steps_per_round=1)
    objective.begin_step(1, student)  # round 1: the student as it is now becomes the teacher
    assert objective.round == 1 and type(objective.teacher.network).__name__ == "FoldedMLP"
    g = torch.Generator().manual_seed(0)
    i, eps = objective.draw(512, (2,), g)
    x0 = torch.randn(512, 2, generator=g)
    fast = objective.loss(student, x0, (i, eps), None)
    objective.teacher = objective.teacher.replace(network=objective.frozen)  # the plain forward, per-row embeddings
    plain = objective.loss(student, x0, (i, eps), None)
    assert fast.abs().max() > 1e-3 and len(torch.unique(objective.tables[1]["t"][i, 0])) > 1
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-6)


class _ClassPoint(torch.nn.Module):
    """x0 = the class's point (class id c: c + 1; the null class 2: 0); reading w (reads_w), w times it: exactly
    the guided teacher x0_u + w (x0_c - x0_u) of a _ClassPoint that does not read w."""

    def __init__(self, reads_w: bool):
        super().__init__()
        self.reads_w, self.scale = reads_w, torch.nn.Parameter(torch.ones(()))

    def forward(self, x, t, cond=None):
        labels, w = split_guidance(cond)
        point = torch.where(labels == 2, 0.0, labels + 1.0).float()[:, None] * self.scale
        if self.reads_w:
            assert w is not None and w.shape == labels.shape
            point = point * w[:, None]
        return point.expand_as(x)


def test_the_guidance_stage_teaches_one_call_the_guided_teachers_two_calls():
    schedule = NoiseSchedule.from_name("cosine", 1000)
    config = RunConfig().validate()
    config.prediction, config.network.num_classes = "x0", 2
    teacher = Denoiser(_ClassPoint(False), schedule, "x0", conditioning=ClassConditioning(2))
    stage = GuidanceStage(schedule, teacher, (1.0, 5.0))
    g = torch.Generator().manual_seed(0)
    draws = stage.draw(512, (2,), g)
    assert 1.0 <= float(draws[2].min()) and float(draws[2].max()) <= 5.0 and float(draws[2].std()) > 1.0
    x0, labels = torch.randn(512, 2, generator=g), torch.randint(0, 2, (512,), generator=g)
    exact = Denoiser(_ClassPoint(True), schedule, "x0", conditioning=ClassConditioning(2))
    assert stage.loss(exact, x0, draws, labels).abs().max() < 1e-6
    ignores_w = Denoiser(_ClassPoint(False), schedule, "x0", conditioning=ClassConditioning(2))
    assert stage.loss(ignores_w, x0, draws, labels).mean() > 1.0
    # a guidance interval: outside it the target is the plain conditional model, whatever w
    narrow = GuidanceStage(schedule, teacher.replace(guidance_interval=(0.5, 2.0)), (1.0, 5.0))
    t = draws[0] * narrow.top
    abar = schedule.alpha_bar_at(t)
    inside = ((1 - abar) / abar).sqrt().gt(0.5) & ((1 - abar) / abar).sqrt().le(2.0)
    assert 0 < int(inside.sum()) < 512
    assert narrow.loss(ignores_w, x0, draws, labels)[~inside].abs().max() < 1e-6
    assert narrow.loss(ignores_w, x0, draws, labels)[inside].mean() > 1.0


@pytest.mark.parametrize("kind", ["mlp", "unet", "dit"])
def test_a_guidance_embedding_starts_as_its_teacher_and_then_reads_w(kind):
    """Built from a network without one (the teacher's weights), a network with a guidance embedding gives the
    teacher's output at every w (the embedding's last layer starts at zero); once that layer moves, w matters."""
    torch.manual_seed(0)
    if kind == "mlp":
        cfg, x = MLPConfig(num_classes=3), torch.randn(4, 2)
    elif kind == "unet":
        cfg, x = UNetConfig(channels=8, channel_mult=(1, 2), num_classes=3), torch.randn(4, 1, 8, 8)
    else:
        cfg, x = DiTConfig(width=32, depth=1, heads=2, num_classes=3), torch.randn(4, 1, 8, 8)
    teacher = registry.build_network(cfg).eval()
    with torch.no_grad():  # as if trained: the zero-initialised output layers moved
        for p in teacher.parameters():
            p.add_(0.1 * torch.randn_like(p))
    student = registry.build_network(dataclasses.replace(cfg, guidance_embed=True)).eval()
    load_weights(student, teacher.state_dict(), "teacher", new=("guidance_embed.",))
    t, labels = torch.full((4,), 300.0), torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        for w in (1.0, 4.0):
            assert torch.equal(student(x, t, with_guidance(labels, w)), teacher(x, t, labels))
        torch.nn.init.normal_(student.guidance_embed.mlp[2].weight)
        assert not torch.allclose(student(x, t, with_guidance(labels, 1.0)), student(x, t, with_guidance(labels, 4.0)))
    with pytest.raises(DiffkitError, match="does not match"):
        load_weights(student, teacher.state_dict(), "teacher")  # only the named prefixes may be absent


@pytest.mark.parametrize("net", ["unet", "dit"])
def test_a_guidance_range_student_samples_any_w_in_one_call_per_step(tmp_path, net, capsys):
    tiny = ["--channels", "8", "--channel-mult", "1,2", "--attention", ""] if net == "unet" else \
        ["--net", "dit", "--dit-size", "tiny"]
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    assert main(["train", "--data", "digits", "--cond", "--out", str(teacher), "--steps", "16", "--batch-size", "16",
                 *tiny, "--quiet"]) == 0
    assert main(["distill", "--teacher", str(teacher), "--out", str(student), "--steps", "2", "--guidance-range",
                 "1,5", "--train-steps", "12", "--quiet"]) == 0
    cfg = json.loads((student / "config.json").read_text())
    assert cfg["parent"]["guidance_range"] == [1.0, 5.0] and cfg["network"]["guidance_embed"] is True
    assert cfg["train"]["lr_cycles"] == 4  # the guidance stage and three halving rounds (16 -> 2), 3 steps each
    run = load_run(student)
    # w at every level its jumps start from (the teacher guides in (4, 80], above the student's 2nd level)
    assert cfg["sampling"]["guidance_interval"] is None and run.denoiser.guidance_interval is None
    calls, network = [], run.denoiser.network
    run.denoiser.network = lambda x, *rest: calls.append(len(x)) or network(x, *rest)
    low, high = (sample_run(run, 6, cond=3, guidance=w, seed=0) for w in (1.0, 5.0))
    # one call per step; w is read (the same noise gives the same bits at any w until the zero-started embedding learns)
    assert calls == [6, 6, 6, 6] and np.abs(low - high).max() > 1e-6
    with pytest.raises(DiffkitError, match="from 1 to 5"):
        sample_run(run, 6, cond=3, guidance=6.0)
    out = tmp_path / "s.npy"
    assert main(["sample", "--run", str(student), "--out", str(out), "--class", "3", "--n", "4", "--quiet"]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["guidance"] == 3.0  # the range's midpoint
    if net == "unet":  # killed in the guidance stage, or just after a checkpoint at the first halving round's start
        config = distill_config(teacher, steps=2, guidance_range=(1, 5), train_steps=12)
        config.train.checkpoint_every, config.train.threads, config.train.precision = 1, 1, "fp32"
        quiet(train_run, config, tmp_path / "whole", progress=False)
        for kill_at in (1, 3):
            out = tmp_path / f"killed-{kill_at}"
            train_killed_at(config, out, kill_at)
            quiet(train_run, None, out, resume=True, progress=False)
            assert (out / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()
    for extra, fragment in ((["--guidance-range", "5,1"], "in order"), (["--guidance-range", "1"], "two scales"),
                            (["--guidance-range", "1,5", "--guidance", "3"], "not both"),
                            (["--guidance-range", "1,5", "--method", "consistency"], "progressive student")):
        assert main(["distill", "--teacher", str(teacher), "--out", str(tmp_path / "no"), *extra]) == 2
        assert fragment in capsys.readouterr().err and not (tmp_path / "no").exists()


def test_the_student_samples_in_four_steps_what_the_teacher_needs_twenty_for(spiral):
    teacher, student = (load_run(p) for p in spiral)
    ref = make_dataset("spiral", 6000, seed=7)
    floor = energy_distance(make_dataset("spiral", 6000, seed=8), ref)
    reference = energy_distance(sample_run(teacher, 6000, "dpmpp-2m", 20, seed=1), ref) - floor
    teacher_4 = energy_distance(sample_run(teacher, 6000, "ddim", 4, seed=1), ref) - floor
    steps = []
    x = sample_run(student, 6000, seed=1, callback=lambda rec: steps.append(rec.t))
    student_4 = energy_distance(x, ref) - floor
    assert len(steps) == 4  # its own sampler, steps and grid by default: log-SNR uniform down to sigma = 0.3
    assert torch.equal(torch.tensor(steps, dtype=torch.float64), sampler_grid(student.denoiser.schedule, "ddim", 4, "logsnr:0.3"))
    assert student_4 * 10 < teacher_4, (student_4, teacher_4)
    assert student_4 < 3 * max(reference, 1e-4), (student_4, reference)


def test_the_student_records_its_teacher_and_refuses_what_it_did_not_learn(spiral, tmp_path, capsys):
    teacher, student = spiral
    cfg = json.loads((student / "config.json").read_text())
    assert cfg["parent"]["kind"] == "progressive" and cfg["parent"]["path"] == str(teacher.resolve())
    assert cfg["parent"]["steps"] == 4 and cfg["parent"]["rounds"] == 3 and len(cfg["parent"]["sha256"]) == 64
    assert cfg["sampling"]["sampler"] == "ddim" and cfg["sampling"]["steps"] == 4 and cfg["train"]["lr_cycles"] == 3
    assert cfg["sampling"]["spacing"] == STUDENT_SPACING["points"] == "logsnr:0.3"
    # training length: ROUND_SHARE of the teacher's 1500 steps per round, and ONE_STEP_SHARE for a 1-step student
    assert [distill_config(teacher, steps=k).train.steps for k in (4, 1)] == [500, 1100]
    assert distill_config(teacher, steps=1, train_steps=60).train.steps == 60
    moved = shutil.copytree(student, tmp_path / "alone")
    shutil.move(str(teacher), str(tmp_path / "teacher-away"))
    try:
        assert sample_run(moved, 50, steps=2, seed=0).shape == (50, 2)  # fewer steps are allowed, without the teacher
    finally:
        shutil.move(str(tmp_path / "teacher-away"), str(teacher))
    out = tmp_path / "s.npy"
    assert main(["sample", "--run", str(student), "--out", str(out), "--steps", "8", "--n", "10"]) == 2
    assert "distilled for 4 steps" in capsys.readouterr().err and not out.exists()
    assert main(["sample", "--run", str(student), "--out", str(out), "--n", "10", "--seed", "0"]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["steps"] == 4


def test_a_killed_student_resumes_to_the_same_bits_in_any_round(spiral, tmp_path):
    teacher, _ = spiral
    config = distill_config(teacher, steps=2, train_steps=60)  # 4 rounds of 15 steps (32 -> 16 -> 8 -> 4 -> 2)
    config.train.checkpoint_every, config.train.threads, config.train.precision = 5, 1, "fp32"
    whole = tmp_path / "whole"
    quiet(train_run, config, whole, progress=False)
    for kill_at in (12, 22, 31):  # in rounds 0 and 1, and in round 2 just after a checkpoint at its first step (30)
        out = tmp_path / f"killed-{kill_at}"
        train_killed_at(config, out, kill_at)
        quiet(train_run, None, out, resume=True, progress=False)
        assert (out / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes(), kill_at
    cfg = json.loads((out / "config.json").read_text())
    cfg["parent"]["sha256"] = "0" * 64  # as if the teacher had been retrained since
    (out / "config.json").write_text(json.dumps(cfg))
    (out / "manifest.json").unlink()
    shutil.rmtree(out / "train_state" / max(p.name for p in (out / "train_state").iterdir()))
    with pytest.raises(DiffkitError, match="changed since this distilled run was made"):
        quiet(train_run, None, out, resume=True, progress=False)


@pytest.mark.parametrize("net, method", [("unet", "progressive"), ("dit", "progressive"), ("unet", "consistency")])
def test_image_students_fold_guidance_in_and_sample_in_one_call_per_step(tmp_path, net, method, capsys):
    tiny = ["--channels", "8", "--channel-mult", "1,2", "--attention", ""] if net == "unet" else \
        ["--net", "dit", "--dit-size", "tiny"]
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    assert main(["train", "--data", "digits", "--cond", "--out", str(teacher), "--steps", "16", "--batch-size", "16",
                 *tiny, "--quiet"]) == 0
    own = ["--levels", "6", "--lr", "0.003"] if method == "consistency" else []  # its levels and learning rate
    if own:  # without them, digits' own (CONSISTENCY_OWN): 12 levels, 1.5x the teacher's rate, renoise-low
        cfg, t_lr = distill_config(teacher, method=method, guidance=3.0), load_run(teacher).config.train.lr
        assert (cfg.parent.levels, cfg.train.lr, cfg.sampling.spacing) == (12, 1.5 * t_lr, "renoise-low")
    assert main(["distill", "--teacher", str(teacher), "--out", str(student), "--steps", "2", "--guidance", "3",
                 "--method", method, "--train-steps", "8", *own, "--quiet"]) == 0
    assert "sample it with" in capsys.readouterr().out
    run = load_run(student)
    if own:
        assert run.config.parent.levels == 6 and run.config.train.lr == 0.003
    calls, network = [], run.denoiser.network
    run.denoiser.network = lambda x, *rest: calls.append(len(x)) or network(x, *rest)
    x = sample_run(run, 6, cond=3, seed=0)
    assert x.shape == (6, 1, 8, 8) and calls == [6, 6]  # 2 steps, one unguided call each: w = 3 is folded in
    with pytest.raises(DiffkitError, match="folded in"):
        sample_run(run, 6, cond=3, guidance=2.0)
    if method == "consistency":  # digits' own grid, renoise-low (calls beyond four below 0.1); renoise one flag away
        for spacing in (None, "renoise"):
            seen = []
            sample_run(run, 2, steps=6, cond=3, seed=0, spacing=spacing,
                       callback=lambda rec, seen=seen: seen.append(rec.t))
            assert torch.equal(torch.tensor(seen, dtype=torch.float64),
                               make_grid(run.denoiser.schedule, 6, spacing or "renoise-low"))


def test_a_latent_student_and_a_vae_teacher_refused(digits_vae, tmp_path, capsys):
    teacher = tmp_path / "latent"
    assert main(["train", "--data", "digits", "--latent", str(digits_vae), "--out", str(teacher), "--steps", "8",
                 "--batch-size", "16", "--channels", "8", "--channel-mult", "1,2", "--attention", "", "--quiet"]) == 0
    assert main(["distill", "--teacher", str(teacher), "--out", str(tmp_path / "s"), "--steps", "2", "--train-steps",
                 "4", "--quiet"]) == 0
    x = sample_run(tmp_path / "s", 3, seed=0)
    assert x.shape == (3, 1, 8, 8) and 0 <= x.min() and x.max() <= 1  # latents decoded by the teacher's VAE
    latent_cd = distill_config(teacher, method="consistency")  # digits' own settings are for its pixel runs
    assert latent_cd.parent.levels == LEVELS["images"] and latent_cd.sampling.spacing is None
    assert main(["distill", "--teacher", str(digits_vae), "--out", str(tmp_path / "v")]) == 2
    assert "is a VAE run" in capsys.readouterr().err and not (tmp_path / "v").exists()


def test_a_text_student(digits_text_run, tmp_path, capsys):
    student = tmp_path / "text-student"
    assert main(["distill", "--teacher", str(digits_text_run), "--out", str(student), "--steps", "1", "--train-steps",
                 "5", "--guidance", "2", "--quiet"]) == 0
    assert json.loads((student / "config.json").read_text())["parent"]["rounds"] == 4  # images: 16 -> 8 -> 4 -> 2 -> 1
    x = sample_run(student, 3, prompt="a handwritten 7", seed=0)
    assert x.shape == (3, 1, 8, 8)


def test_distill_refuses_what_it_cannot_use(spiral, tmp_path, capsys):
    teacher, student = spiral
    (tmp_path / "empty").mkdir()
    cases = [(["--teacher", tmp_path / "empty"], "not a diffkit run directory"),
             (["--teacher", teacher, "--method", "magic"], "unknown distillation method 'magic'"),
             (["--teacher", teacher, "--steps", "3"], "power of two"),
             (["--teacher", teacher, "--guidance", "2"], "unconditional"),
             (["--teacher", student], "already a distilled student"),
             (["--teacher", teacher, "--steps", "1", "--train-steps", "3"], "fewer than the 5 halving rounds"),
             (["--teacher", teacher, "--levels", "12"], "--levels sets a consistency student's noise levels"),
             (["--teacher", teacher, "--method", "consistency", "--levels", "1"], "an integer from 2 to 1000"),
             (["--teacher", teacher, "--method", "consistency", "--lr", "0"], "learning rate is a number above 0"),
             (["--teacher", teacher, "--lr", "-1"], "--lr must be a finite number >= 0.0"),
             ([], "needs --teacher")]
    for extra, fragment in cases:
        code = main(["distill", "--out", str(tmp_path / "new"), *map(str, extra)])
        err = capsys.readouterr().err
        assert code == 2 and fragment in err and "Traceback" not in err, (extra, err)
        assert not (tmp_path / "new").exists()
    code = main(["distill", "--out", str(tmp_path / "new"), "--resume", "--teacher", str(teacher)])
    assert code == 2 and "drop --teacher" in capsys.readouterr().err
    # a student's length is `--train-steps` (its `--steps` are its sampling steps): the resume refusals say so
    for extra, fragment in (([], "start a new run with more --train-steps"),
                            (["--train-steps", "99999"], "--train-steps 99999 would make it a different run")):
        code = main(["distill", "--out", str(student), "--resume", *extra])
        err = capsys.readouterr().err
        assert code == 2 and fragment in err and " --steps" not in err, err
    code = main(["train", "--out", str(student), "--resume", "--steps", "99999"])  # the command's own flag
    assert code == 2 and "--steps 99999 would make it a different run" in capsys.readouterr().err


def test_the_consistency_function_is_the_identity_at_the_boundary_and_a_ddim_jump_above_it():
    from diffkit.prediction import to_boundary

    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    for s in (0.01, 0.5, 20.0):
        ab = torch.tensor(1 / (1 + s * s), dtype=torch.float64)
        x = ab.sqrt() * x0 + (1 - ab).sqrt() * eps  # y = x / alpha = x0 + s eps
        e, f = to_boundary(eps, x0, ab, 0.01)
        assert torch.allclose(f, x0 + 0.01 * eps)  # the ODE (exact for this denoiser) run down to s_min
        assert torch.allclose(ab.sqrt() * f + (1 - ab).sqrt() * e, x)  # (e, f) still explain x_t
    e, f = to_boundary(eps, x0, torch.tensor(1 / (1 + 0.01**2), dtype=torch.float64), 0.01)
    assert torch.allclose(f, x0 + 0.01 * eps) and e.abs().max() < 1e-12  # at s_min: f = y, nothing left to remove


def test_a_consistency_student_samples_in_one_call_and_resumes_to_the_same_bits(spiral, tmp_path):
    teacher, _ = spiral
    quiet(distill_run, teacher, tmp_path / "cd", method="consistency", progress=False)
    ref = make_dataset("spiral", 6000, seed=7)
    floor = energy_distance(make_dataset("spiral", 6000, seed=8), ref)
    cd_1 = energy_distance(sample_run(tmp_path / "cd", 6000, steps=1, seed=1), ref) - floor
    best_1 = min(energy_distance(sample_run(teacher, 6000, name, 1, seed=1), ref) for name in ("ddim", "dpmpp-2m"))
    assert cd_1 * 20 < best_1 - floor, (cd_1, best_1)
    cfg = json.loads((tmp_path / "cd" / "config.json").read_text())
    assert cfg["parent"]["kind"] == "consistency" and 0 < cfg["parent"]["boundary"] < 0.05
    assert cfg["parent"]["levels"] == LEVELS["points"]  # its space's (spiral has no CONSISTENCY_OWN entry)
    assert cfg["sampling"] == {**cfg["sampling"], "sampler": "consistency", "steps": 2, "spacing": None}  # renoise
    config = distill_config(teacher, method="consistency", train_steps=40)
    config.train.checkpoint_every, config.train.threads, config.train.precision = 10, 1, "fp32"
    quiet(train_run, config, tmp_path / "whole", progress=False)
    train_killed_at(config, tmp_path / "killed", 27)  # the EMA target comes back from the checkpoint at 20
    quiet(train_run, None, tmp_path / "killed", resume=True, progress=False)
    assert (tmp_path / "killed" / "model.safetensors").read_bytes() == \
        (tmp_path / "whole" / "model.safetensors").read_bytes()
