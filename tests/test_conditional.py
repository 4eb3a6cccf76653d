"""Conditioning and classifier-free guidance: labeled data, conditional training, guided sampling, the
class metrics, and the errors a user can run into."""

import json

import numpy as np
import pytest
import torch

from diffkit.cond import ClassConditioning
from diffkit.config import DataConfig, RunConfig
from diffkit.data.labeled import SHAPES3_WEIGHTS
from diffkit.data.points import PointSource, load_file, load_labeled_file, make_labeled
from diffkit.denoiser import Denoiser
from diffkit.errors import ConfigError, DataError
from diffkit.metrics.classes import ClassJudge, precision_recall_coverage
from diffkit.nn.mlp import MLP, MLPConfig
from diffkit.runs import load_run, sample_run, train_run
from diffkit.schedule import NoiseSchedule
from tests.test_cli import assert_user_error, run

# --- labeled data ------------------------------------------------------------------------------------

def test_shapes3_labels_shares_and_seed():
    x, y = make_labeled("shapes3", 30_000, seed=0)
    assert x.shape == (30_000, 2) and x.dtype == np.float32 and y.dtype == np.int64
    shares = np.bincount(y, minlength=3) / len(y)
    np.testing.assert_allclose(shares, SHAPES3_WEIGHTS, atol=0.01)
    x2, y2 = make_labeled("shapes3", 30_000, seed=0)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert not np.array_equal(make_labeled("shapes3", 100, seed=1)[0], x[:100])


def test_shapes3_classes_overlap_in_space():
    """Every class has points close to another class's points, so position alone cannot always tell the
    class, but a k-NN classifier still gets most points right."""
    from sklearn.neighbors import NearestNeighbors

    x, y = make_labeled("shapes3", 20_000, seed=0)
    for c in range(3):
        other = NearestNeighbors(n_neighbors=1).fit(x[y != c])
        near = other.kneighbors(x[y == c])[0][:, 0] < 0.05
        assert near.mean() > 0.01, (c, near.mean())  # crossings exist
    acc = ClassJudge(x, y).accuracy(*make_labeled("shapes3", 5000, seed=1))
    assert 0.9 < acc < 0.99, acc


def test_labeled_files(tmp_path):
    x, y = make_labeled("shapes3", 200, seed=0)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    np.savetxt(tmp_path / "b.csv", np.column_stack([x, y]), delimiter=",")
    np.save(tmp_path / "c.npy", x)
    np.savez(tmp_path / "d.npz", x=x)
    for name in ("a.npz", "b.csv"):
        gx, gy = load_labeled_file(tmp_path / name)
        np.testing.assert_allclose(gx, x, rtol=1e-6)
        assert gy.dtype == np.int64 and np.array_equal(gy, y)
        assert load_file(tmp_path / name).shape == (200, 2)  # labels dropped where only points are wanted
    for name in ("c.npy", "d.npz"):
        assert load_labeled_file(tmp_path / name)[1] is None
    fx, fy = PointSource(str(tmp_path / "a.npz")).fresh_labeled(50, seed=3)
    assert len(fx) == len(fy) == 50
    assert all((x == p).all(1).any() and y[(x == p).all(1)][0] == c for p, c in zip(fx, fy))


@pytest.mark.parametrize("labels, fragment", [
    (np.r_[0.5, np.zeros(199)], "whole numbers"),
    (np.r_[-1, np.zeros(199)], "whole numbers"),
    (np.r_[np.nan, np.zeros(199)], "whole numbers"),
    (np.r_[2, np.zeros(199)], "skip class 1"),
    (np.zeros(150), "one label per point"),
])
def test_bad_labels_are_reported(tmp_path, labels, fragment):
    x = make_labeled("shapes3", 200, seed=0)[0]
    np.savez(tmp_path / "bad.npz", x=x, y=labels)
    with pytest.raises(DataError, match=fragment):
        load_labeled_file(tmp_path / "bad.npz")


# --- the Denoiser and the network ---------------------------------------------------------------------

class CountingNet:
    """out = x * (1 + t/1000) + 10 * class id: a deterministic stand-in whose output depends on the class."""

    def __init__(self):
        self.calls, self.batches = 0, []

    def __call__(self, x, t, cond=None):
        self.calls += 1
        self.batches.append(len(x))
        return x * (1 + t[:, None] / 1000) + 10 * cond[:, None].to(x.dtype)


@pytest.mark.parametrize("w", [0.0, 1.0, 2.5, 8.0])
def test_guidance_is_one_batched_call_and_mixes_eps(w):
    net = CountingNet()
    sched = NoiseSchedule.from_name("linear", 1000)
    d = Denoiser(net, sched, "v", conditioning=ClassConditioning(3), guidance_scale=w)
    x = torch.randn(7, 2, dtype=torch.float64)
    cond = torch.tensor([0, 1, 2, 0, 1, 2, 1])
    eps, x0 = d(x, 400.0, cond)
    assert net.calls == 1 and net.batches == [7 if w in (0.0, 1.0) else 14]
    plain = Denoiser(CountingNet(), sched, "v")
    eps_c, x0_c = plain(x, 400.0, cond)
    eps_u, x0_u = plain(x, 400.0, torch.full_like(cond, 3))
    torch.testing.assert_close(eps, eps_u + w * (eps_c - eps_u))  # Ho & Salimans 2022, eq. 6
    torch.testing.assert_close(x0, x0_u + w * (x0_c - x0_u))


def test_denoiser_replace_checks_guidance():
    d = Denoiser(CountingNet(), NoiseSchedule.from_name("linear", 1000), "v", conditioning=ClassConditioning(3))
    assert d.replace(guidance_scale=2.0).guidance_scale == 2.0 and d.guidance_scale == 1.0
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="guidance scale"):
            d.replace(guidance_scale=bad)


def test_mlp_mixed_class_batch_matches_per_sample_embedding():
    torch.manual_seed(0)
    net = MLP(MLPConfig(num_classes=3))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    net.eval()
    x = torch.randn(64, 2)
    t = torch.full((64,), 321.0)
    cond = torch.randint(0, 4, (64,))  # 3 = the null class
    with torch.no_grad():
        mixed = net(x, t, cond)
        one_by_one = torch.cat([net(x[i:i + 1], t[i:i + 1], cond[i:i + 1]) for i in range(64)])
    torch.testing.assert_close(mixed, one_by_one, rtol=1e-5, atol=1e-5)
    assert (mixed[cond == 0] - net(x, t, torch.full_like(cond, 1))[cond == 0]).abs().max() > 1e-3


# --- metrics ---------------------------------------------------------------------------------------

def test_precision_recall_coverage_see_collapse():
    real = make_labeled("shapes3", 3000, seed=0)[0]
    same = make_labeled("shapes3", 3000, seed=1)[0]
    full = precision_recall_coverage(same, real)
    assert min(full.values()) > 0.85, full
    half = same[same[:, 0] > 0]  # samples that only cover the right half
    m = precision_recall_coverage(half, real)
    assert m["precision"] > 0.85 and m["recall"] < 0.65 and m["coverage"] < 0.65, m
    far = precision_recall_coverage(same + 6.0, real)
    assert far["precision"] < 0.05 and far["coverage"] < 0.05, far


def test_judge_scores_class_mix_and_adherence():
    x, y = make_labeled("shapes3", 8000, seed=0)
    judge = ClassJudge(x, y)
    fx, fy = make_labeled("shapes3", 6000, seed=2)
    np.testing.assert_allclose(judge.class_mix(fx), np.bincount(fy) / len(fy), atol=0.02)
    spiral_only = fx[fy == 0]
    s = judge.score_class(spiral_only, 0)
    assert s["adherence"] > 0.9 and judge.score_class(spiral_only, 1)["adherence"] < 0.1
    assert abs(s["energy"]) < 0.01


# --- end to end: a conditional model ------------------------------------------------------------------

@pytest.fixture(scope="module")
def cond_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cond") / "shapes3"
    train_run(RunConfig(data=DataConfig(spec="shapes3", cond=True)), out, progress=False)
    return load_run(out)


def test_conditional_run_config(cond_run):
    cfg = cond_run.config
    assert cfg.network.num_classes == 3 and cfg.fitted.class_names == ["spiral", "circles", "moons"]
    assert cond_run.denoiser.conditioning == ClassConditioning(3)


def test_guidance_steers_samples(cond_run):
    """Guidance raises adherence well above the plain conditional model's; unconditional samples keep the
    data's class mix. (A model this short-trained; benchmarks/guidance.py measures the targets.)"""
    judge = ClassJudge(*make_labeled("shapes3", 20_000, seed=777))
    for c in range(3):
        plain, guided = (judge.score_class(sample_run(cond_run, 600, "dpmpp-2m", 20, seed=1, cond=c, guidance=w), c)
                         for w in (1.0, 3.0))
        assert guided["adherence"] >= 0.94 and guided["adherence"] > plain["adherence"] + 0.04, (c, plain, guided)
    mix = judge.class_mix(sample_run(cond_run, 3000, "dpmpp-2m", 20, seed=1))
    np.testing.assert_allclose(mix, SHAPES3_WEIGHTS, atol=0.06)
    # w = 0 with a class is the unconditional model, whatever the class
    a = sample_run(cond_run, 50, "ddim", 20, seed=4, cond=0, guidance=0.0)
    assert np.array_equal(a, sample_run(cond_run, 50, "ddim", 20, seed=4, cond=2, guidance=0.0))
    np.testing.assert_allclose(a, sample_run(cond_run, 50, "ddim", 20, seed=4), atol=1e-5)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmpp-2m", "dpmpp-3m", "dpmpp-2m-sde", "euler", "heun",
                                     "euler-a", "langevin"])
def test_every_sampler_takes_a_class_and_a_mixed_batch(cond_run, sampler):
    steps = 50 if sampler in ("ddpm", "langevin") else 10
    classes = np.arange(30) % 3
    mixed = sample_run(cond_run, 30, sampler, steps, seed=5, cond=classes, guidance=2.0)
    assert mixed.shape == (30, 2) and np.isfinite(mixed).all()
    if sampler in ("ddim", "dpmpp-2m", "euler", "heun"):  # deterministic: each row only depends on its own class
        for c in range(3):
            alone = sample_run(cond_run, 30, sampler, steps, seed=5, cond=c, guidance=2.0)
            np.testing.assert_allclose(mixed[classes == c], alone[classes == c], atol=1e-4)


def test_class_names_and_bad_classes(cond_run):
    by_name = sample_run(cond_run, 20, "ddim", 10, seed=0, cond="moons")
    assert np.array_equal(by_name, sample_run(cond_run, 20, "ddim", 10, seed=0, cond=2))
    for bad, fragment in ((3, "out of range"), (-1, "out of range"), ("blob", "unknown class"),
                          (1.5, "integers"), ([0, 1], "one per sample")):
        with pytest.raises(ConfigError, match=fragment):
            sample_run(cond_run, 20, "ddim", 10, cond=bad)
    with pytest.raises(ConfigError, match="needs a class"):
        sample_run(cond_run, 20, "ddim", 10, guidance=2.0)


def test_conditional_resume_is_bitwise(tmp_path):
    cfg = lambda steps: RunConfig(data=DataConfig(spec="shapes3", cond=True, num_points=2000))
    full = cfg(0)
    full.train.steps, full.train.checkpoint_every = 40, 20
    train_run(full, tmp_path / "full", progress=False)
    part = cfg(0)
    part.train.steps, part.train.checkpoint_every = 40, 20
    train_run(part, tmp_path / "part", progress=False, callback=lambda rec: rec.step == 25)  # stops at 25
    assert load_run(tmp_path / "part").step == 25
    train_run(None, tmp_path / "part", resume=True, progress=False)
    a, b = (load_run(tmp_path / n).network.state_dict() for n in ("full", "part"))
    assert all(torch.equal(a[k], b[k]) for k in a)


# --- CLI -----------------------------------------------------------------------------------------

def test_cli_conditional_train_and_sample(tmp_path, capsys):
    out = tmp_path / "c"
    code, _, err = run(["train", "--data", "shapes3", "--cond", "--out", out, "--steps", 30, "--quiet"], capsys)
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["network"]["num_classes"] == 3
    code, _stdout, err = run(["sample", "--run", out, "--n", 40, "--out", tmp_path / "s.npy", "--class", "circles",
                             "--guidance", 3, "--sampler", "dpmpp-2m", "--steps", 10], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "s.npy").shape == (40, 2)
    s = tmp_path / "s2.npy"
    cases = [
        (["--class", 3], "out of range"),
        (["--class", "triangle"], "unknown class"),
        (["--class", 0, "--guidance", -1], "finite number >= 0"),
        (["--class", 0, "--guidance", "nan"], "finite number >= 0"),
        (["--class", 0, "--guidance", "inf"], "finite number >= 0"),
        (["--guidance", 2], "needs a class"),
    ]
    for extra, fragment in cases:
        assert_user_error(*run(["sample", "--run", out, "--out", s, *extra], capsys)[::2], fragment)
    assert not s.exists()


def test_cli_conditional_errors(tiny_run, tmp_path, capsys):
    s = tmp_path / "s.npy"
    assert_user_error(*run(["sample", "--run", tiny_run, "--out", s, "--class", 0], capsys)[::2], "unconditional")
    assert_user_error(*run(["train", "--data", "spiral", "--cond", "--out", tmp_path / "r"], capsys)[::2],
                      "has no labels")
    assert_user_error(*run(["train", "--data", "shapes3", "--p-uncond", 0.2, "--out", tmp_path / "r"], capsys)[::2],
                      "--cond")
    assert_user_error(*run(["train", "--data", "shapes3", "--cond", "--p-uncond", 1, "--out", tmp_path / "r"],
                           capsys)[::2], "p_uncond")
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
