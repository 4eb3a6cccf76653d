"""The oracle (exact denoiser of a Gaussian mixture), the score API and likelihoods: fixed seeds, honest tolerances."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from diffkit import Denoiser, NoiseSchedule
from diffkit.cli import main
from diffkit.data.mixture import GaussianMixture, gaussians8
from diffkit.data.normalize import Normalizer
from diffkit.denoiser import score
from diffkit.likelihood import elbo, ode_nll
from diffkit.metrics.points import energy_distance
from diffkit.oracle import OracleDenoiser, log_prob
from diffkit.path import EDMPath, FlowPath
from diffkit.runs.score import mixture_normalizer
from diffkit.sampling import make_grid, sample
from diffkit.straightness import straightness

F64 = torch.float64


def standardized(mix: GaussianMixture) -> GaussianMixture:
    norm = mixture_normalizer(mix)
    return mix.affine(np.asarray(norm.mean), np.asarray(norm.std))


ANISOTROPIC = Path(__file__).parent.parent / "benchmarks" / "anisotropic.json"


def anisotropic() -> GaussianMixture:
    """benchmarks/anisotropic.json: three components, unequal weights, correlated covariances (a thin rotated
    ellipse among them), labels [0, 1, 1]."""
    return GaussianMixture.from_json(ANISOTROPIC)


@pytest.fixture(scope="module")
def g8():
    return standardized(gaussians8())


def test_noised_mixture_is_the_forward_process(g8):
    """q(x_t) = the mixture with means a mu_k and covariances a^2 S_k + s^2 I: its log-density matches the
    oracle's log q(x_t), and noised samples of the data have the mixture's moments."""
    sched = NoiseSchedule.from_name("linear")
    oracle = OracleDenoiser(g8, sched)
    t = 250
    ab = float(sched.alphas_cumprod[t])
    x = torch.from_numpy(g8.sample(20, np.random.default_rng(0))[0])
    np.testing.assert_allclose(oracle.log_prob(x, t).numpy(), log_prob(g8.noised(ab), x.numpy()), rtol=1e-12)
    x0 = torch.from_numpy(g8.sample(200_000, np.random.default_rng(1))[0])
    xt = sched.q_sample(x0, torch.full((len(x0),), t), torch.randn(x0.shape, generator=torch.Generator().manual_seed(2),
                                                                   dtype=F64))
    mean, std = g8.noised(ab).moments()
    np.testing.assert_allclose(xt.mean(0).numpy(), mean, atol=0.01)
    np.testing.assert_allclose(xt.std(0).numpy(), std, atol=0.01)


@pytest.mark.parametrize("t", [20, 200, 600])
def test_oracle_eps_matches_monte_carlo_posterior_mean(t):
    """E[eps | x_t] by self-normalised importance sampling over data draws equals the oracle's eps_hat."""
    mix = standardized(anisotropic())
    sched = NoiseSchedule.from_name("linear")
    oracle = OracleDenoiser(mix, sched)
    ab = sched.alphas_cumprod[t]
    a, s = ab.sqrt(), (1 - ab).sqrt()
    x0 = torch.from_numpy(mix.sample(400_000, np.random.default_rng(t))[0])
    probe = torch.from_numpy(mix.sample(4, np.random.default_rng(99))[0]) * a + 0.3 * s  # near the data
    eps_hat, x0_hat = oracle(probe, float(t))
    for i in range(len(probe)):
        eps = (probe[i] - a * x0) / s  # the eps that maps each draw to this x_t
        logw = -0.5 * (eps**2).sum(1)  # q(x_t | x0) up to a constant
        w = torch.softmax(logw, 0)
        ess = 1 / (w**2).sum()
        assert ess > 200, ess  # enough effective draws for the tolerance below
        mc = (w[:, None] * eps).sum(0)
        tol = 4 * torch.sqrt((w[:, None] * (eps - mc) ** 2).sum(0) / ess) + 1e-3
        assert torch.all((eps_hat[i] - mc).abs() < tol), (t, i, eps_hat[i], mc, tol)
        assert torch.allclose(x0_hat[i], (w[:, None] * x0).sum(0), atol=float(tol.max() * s / a) + 1e-3)


def test_oracle_is_exact_and_finite_at_both_ends(g8):
    sched = NoiseSchedule.from_name("cosine")
    oracle = OracleDenoiser(g8, sched)
    x = torch.tensor([[0.3, -0.2], [40.0, -35.0], [1e3, 1e3]], dtype=F64)  # far points: log-sum-exp keeps them finite
    for t in (-1.0, -0.5, 0.0, 999.0):
        eps, x0 = oracle(x, t)
        assert torch.isfinite(eps).all() and torch.isfinite(x0).all(), t
    eps, x0 = oracle(x, -1.0)  # the data itself: no noise in x_t, x0_hat = x_t
    assert torch.allclose(eps, torch.zeros_like(eps)) and torch.allclose(x0, x)
    eps, x0 = oracle(x[:2], 999.0)  # nearly pure noise: x0_hat is about the data mean (0)
    assert torch.allclose(x0, torch.zeros_like(x0), atol=3e-3)
    # the score is the gradient of log q(x_t) (autograd of the exact log-density)
    xr = x[:1].clone().requires_grad_(True)
    grad, = torch.autograd.grad(oracle.log_prob(xr, 100.0).sum(), xr)
    assert torch.allclose(oracle.score(x[:1], 100.0), grad, rtol=1e-9)


def test_score_api_is_minus_eps_over_sigma_and_the_oracle_agrees(g8):
    sched = NoiseSchedule.from_name("linear")
    oracle = OracleDenoiser(g8, sched)
    x = torch.from_numpy(g8.sample(50, np.random.default_rng(3))[0])
    generic = Denoiser(oracle.network, sched, "v")  # the same numbers through the generic path
    for t in (5.0, 300.0, 900.0):
        ab = sched.alpha_bar_at([t])[0]
        expected = -oracle(x, t)[0] / (1 - ab).sqrt()
        assert torch.allclose(score(generic, x, t), expected, rtol=1e-10)
        assert torch.allclose(score(oracle, x, t), expected, rtol=1e-8)


def test_langevin_corrector_goes_through_the_score_api(g8):
    """The corrector's moves come from denoiser.score: a Denoiser whose score is zero moves only by noise."""
    sched = NoiseSchedule.from_name("linear")

    class NoScore(OracleDenoiser):
        def score(self, x_t, t, cond=None):
            return torch.zeros_like(x_t)

    x_T = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    kw = {"sampler": "langevin", "steps": 20, "generator": None}
    a = sample(OracleDenoiser(g8, sched), x_T, kw["sampler"], kw["steps"], generator=torch.Generator().manual_seed(1))
    b = sample(NoScore(g8, sched), x_T, kw["sampler"], kw["steps"], generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a, b)


def _floor(mix, n, seed):
    """The data-vs-data energy distance scale: mean + 2 sd over 5 pairs of independent draws."""
    vals = [energy_distance(mix.sample(n, np.random.default_rng(seed + 2 * k))[0],
                            mix.sample(n, np.random.default_rng(seed + 2 * k + 1))[0]) for k in range(5)]
    return float(np.mean(vals) + 2 * np.std(vals))


@pytest.mark.parametrize("make", [lambda: standardized(gaussians8()), lambda: standardized(anisotropic())],
                         ids=["gaussians8", "anisotropic"])
def test_ddpm_1000_with_the_oracle_reproduces_the_mixture(make):
    mix = make()
    n = 3000
    x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    x = sample(OracleDenoiser(mix, NoiseSchedule.from_name("linear")), x_T, "ddpm", 1000,
               generator=torch.Generator().manual_seed(1)).numpy()
    ref = mix.sample(n, np.random.default_rng(7))[0]
    floor = _floor(mix, n, 11)
    ed = energy_distance(x, ref)
    assert ed <= 2 * floor, (ed, floor)
    # and a coarse sampler with the same oracle is measurably off (the test can see discretisation error)
    coarse = sample(OracleDenoiser(mix, NoiseSchedule.from_name("linear")), x_T, "ddim", 3).numpy()
    assert energy_distance(coarse, ref) > 2 * floor


def test_guided_oracle_samples_land_in_the_class_components():
    mix = anisotropic()  # class 0: component 0; class 1: components 1 and 2
    norm = mixture_normalizer(mix)
    z = mix.affine(np.asarray(norm.mean), np.asarray(norm.std))
    oracle = OracleDenoiser(z, NoiseSchedule.from_name("linear"))
    x_T = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    for c, w in ((0, 1.0), (1, 1.0), (1, 3.0)):
        x = sample(oracle.replace(guidance_scale=w), x_T, "dpmpp-2m", 50, cond=torch.full((1000,), c))
        comp = np.stack([log_prob(GaussianMixture(np.ones(1), z.means[k:k + 1], z.covariances[k:k + 1]), x.numpy())
                         for k in range(3)], 1).argmax(1)
        share = np.isin(comp, np.flatnonzero(z.labels == c)).mean()
        assert share > 0.97, (c, w, share)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_oracle_ode_nll_is_the_true_log_density(schedule):
    """Probability-flow ODE NLL of the oracle = -log q(x) at t = 0 within 0.01 nats per point on average."""
    for mix in (standardized(gaussians8()), standardized(anisotropic())):
        x = torch.from_numpy(mix.sample(300, np.random.default_rng(5))[0])
        r = ode_nll(OracleDenoiser(mix, NoiseSchedule.from_name(schedule)), x)
        gap = np.abs(r["nll"] - (-log_prob(mix, x.numpy())))
        assert gap.mean() < 0.01, gap.mean()


def test_oracle_negative_elbo_bounds_the_nll(g8):
    x = torch.from_numpy(g8.sample(400, np.random.default_rng(6))[0])
    true = -log_prob(g8, x.numpy())
    e = elbo(OracleDenoiser(g8, NoiseSchedule.from_name("linear")), x, generator=torch.Generator().manual_seed(0))
    se = e["nll"].std(ddof=1) / math.sqrt(len(x))
    gap = e["nll"].mean() - true.mean()
    assert gap > -3 * se, (gap, se)
    assert np.allclose(e["terms"].sum(1), e["nll"])
    assert e["terms"].shape == (400, 999 + 2)
    # fewer strata estimate the same bound (unbiased), within their standard errors
    e10 = elbo(OracleDenoiser(g8, NoiseSchedule.from_name("linear")), x, strata=10,
               generator=torch.Generator().manual_seed(1))
    se10 = e10["nll"].std(ddof=1) / math.sqrt(len(x))
    assert abs(e10["nll"].mean() - e["nll"].mean()) < 3 * math.hypot(se, se10)


def test_hutchinson_divergence_estimates_the_exact_one(g8):
    x = torch.from_numpy(g8.sample(200, np.random.default_rng(8))[0])
    oracle = OracleDenoiser(g8, NoiseSchedule.from_name("linear"))
    exact = ode_nll(oracle, x)["nll"]
    hutch = ode_nll(oracle, x, hutchinson=4, generator=torch.Generator().manual_seed(0))["nll"]
    diff = hutch - exact
    assert abs(diff.mean()) < 4 * diff.std(ddof=1) / math.sqrt(len(x)) + 1e-3  # unbiased
    assert diff.std() > 1e-4  # and really an estimate


def test_nll_in_the_data_coordinates_includes_the_normalizer_jacobian(tmp_path):
    """A run whose denoiser is the oracle: `nll_run` reports the mixture's own log-density in data units."""
    from diffkit.runs import Run, default_config, nll_run

    mix = gaussians8()
    norm = mixture_normalizer(mix)
    cfg = default_config("gaussians8")
    cfg.fitted.kind, cfg.fitted.shape, cfg.fitted.normalizer = "points", [2], norm.to_config()
    sched = NoiseSchedule.from_name("linear")
    oracle = OracleDenoiser(mix.affine(np.asarray(norm.mean), np.asarray(norm.std)), sched)
    run = Run(cfg, oracle.network, oracle, Normalizer(**norm.to_config()), 0)
    m = nll_run(run, "gaussians8", n=300, seed=4, strata=50)
    from diffkit.data.points import PointSource

    x = PointSource("gaussians8").fresh(300, 4)
    true = float(-log_prob(mix, x.astype(np.float64)).mean())
    assert abs(m["nll_ode"] - true) < 0.02, (m["nll_ode"], true)
    assert m["nll_elbo"] > true - 3 * m["nll_elbo_se"]
    assert m["unit"] == "nats/point" and len(m["elbo_terms"]) == 52
    assert abs(sum(m["elbo_terms"]) - m["nll_elbo"]) < 1e-6


def test_cli_samples_the_oracle_and_scores_a_trained_run(tmp_path, capsys):
    out = tmp_path / "o.npy"
    assert main(["sample", "--oracle", "gaussians8", "--n", "2000", "--sampler", "ddpm", "--seed", "0",
                 "--out", str(out), "--quiet"]) == 0
    x = np.load(out)
    assert x.shape == (2000, 2) and json.loads(out.with_suffix(".json").read_text())["oracle"] == "gaussians8"
    radius = np.linalg.norm(x, axis=1)
    assert abs(np.median(radius) - 2.0) < 0.05  # on the ring of means, in the data's own coordinates
    # a labelled mixture file, guided
    spec = tmp_path / "mix.json"
    spec.write_text(json.dumps(anisotropic().to_dict()))
    assert main(["sample", "--oracle", str(spec), "--n", "500", "--class", "0", "--guidance", "2", "--seed", "1",
                 "--sampler", "dpmpp-2m", "--schedule", "cosine", "--out", str(tmp_path / "c.npy")]) == 0
    c = np.load(tmp_path / "c.npy")
    assert np.linalg.norm(c - [-1.0, 0.5], axis=1).mean() < 1.0  # around component 0's mean
    # train on the mixture file, then the likelihood of held-out draws
    run = tmp_path / "run"
    assert main(["train", "--data", str(spec), "--out", str(run), "--steps", "300", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", "--nll", "--run", str(run), "--n", "200", "--elbo-strata", "40", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["unit"] == "nats/point" and m["n"] == 200
    assert all(math.isfinite(m[k]) for k in ("nll_ode", "nll_ode_se", "nll_elbo", "nll_elbo_se"))
    assert 0 < m["nll_ode_se"] < 1 and m["nfe"] > 10
    true = float(-log_prob(anisotropic(), anisotropic().sample(20000, np.random.default_rng(0))[0]).mean())
    assert true - 0.5 < m["nll_ode"] < true + 3.0  # a short run: near the entropy, never below it by much


@pytest.mark.parametrize("make", [lambda: standardized(gaussians8()), lambda: standardized(anisotropic())],
                         ids=["gaussians8", "anisotropic"])
@pytest.mark.parametrize("path", [FlowPath(1000, 1.0), FlowPath(1000, 3.0), EDMPath(1000, sigma_data=1.0)],
                         ids=["flow", "flow-shift3", "edm"])
def test_the_exact_flow_and_edm_odes_reproduce_the_mixture(make, path):
    """The oracle on the flow and EDM paths, Euler steps (ddim on the uniform grid: on the flow path exactly
    x' = x + (tau' - tau) u), lands on the mixture; its ODE likelihood is the mixture's own log-density."""
    mix, n, oracle = make(), 3000, OracleDenoiser(make(), path)
    ref = mix.sample(n, np.random.default_rng(7))[0]
    # a deterministic map of x_T is as good as its draw of N(0, I): averaged over 4 draws, within the data-vs-data
    # floor (one unlucky draw of 3000 points can sit at 2.5x it: seed 0 on the anisotropic mixture, on every path)
    ed = [energy_distance(sample(oracle, torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=F64),
                                 "ddim", 200, "trailing").numpy(), ref) for seed in range(4)]
    assert np.mean(ed) <= _floor(mix, n, 11), ed
    x0 = torch.from_numpy(mix.sample(200, np.random.default_rng(3))[0]).double()
    nll = np.asarray(ode_nll(oracle, x0, rtol=1e-6, atol=1e-6, generator=torch.Generator().manual_seed(0))["nll"])
    assert np.abs(nll - -log_prob(mix, x0.numpy())).mean() < 0.01


def test_the_exact_1_rectified_flow_of_gaussians8_is_not_straight(g8):
    """S > 0 for the exact flow of gaussians8 (trajectories bend to reach their mode); data of a single point
    has straight trajectories, S = 0 (up to rounding)."""
    path = FlowPath(1000, 1.0)
    x_T = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    grid = make_grid(path, 100, "trailing")
    s = straightness(OracleDenoiser(g8, path), x_T, grid)
    assert s.mean() > 0.3 and s.mean() > 20 * s.std() / np.sqrt(len(s))
    point = GaussianMixture(np.ones(1), np.array([[0.5, -1.0]]), np.array([np.eye(2) * 1e-12]))
    assert straightness(OracleDenoiser(point, path), x_T, grid).mean() < 1e-6
