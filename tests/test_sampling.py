"""Samplers and timestep grids, checked against an analytic denoiser (no training).

Data x0 ~ N(m, s^2 I) in 2-D. Then x_t ~ N(sqrt(ab) m, v I) with v = ab s^2 + 1 - ab, and
E[x0 | x_t] = m + sqrt(ab) s^2 / v (x_t - sqrt(ab) m), so the exact denoiser is known in closed form.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from diffkit import Denoiser, DiffkitError, NoiseSchedule, rescale_zero_terminal_snr
from diffkit.sampling import (
    SAMPLERS,
    sample,
    sample_ddim,
    sample_ddpm,
    sampler_options,
    timesteps,
)

F64 = torch.float64
M = torch.tensor([1.0, -0.5], dtype=F64)
S = 0.5
N = 20_000


def gaussian_model(schedule: NoiseSchedule, prediction: str, m=M, s=S):
    """model(x_t, t) -> the exact prediction of the given type for x0 ~ N(m, s^2 I)."""

    def model(x, t):
        # samplers pass one time for the whole batch: look it up once (fast), broadcast over [B, 1]
        assert bool((t == t[0]).all())
        ab = schedule.alpha_bar_at(t[:1].to(F64)).to(x.dtype)[:, None]  # [1, 1]
        a, sig = ab.sqrt(), (1 - ab).sqrt()
        mm = m.to(x.dtype)
        x0 = mm + a * s**2 / (ab * s**2 + 1 - ab) * (x - a * mm)
        if prediction == "x0":
            return x0
        eps = (x - a * x0) / sig
        if prediction == "epsilon":
            return eps
        return a * eps - sig * x0  # v

    return model


def oracle(schedule, prediction="x0", **kw):
    return Denoiser(gaussian_model(schedule, prediction, **kw), schedule, prediction)


@pytest.fixture(scope="module")
def linear():
    return NoiseSchedule.from_name("linear", 1000)


def x_T(schedule, n=N, seed=0, t=None):
    """Draws from the true marginal q(x_t) (t = T-1 by default), so the sampler is the only error."""
    t = schedule.num_timesteps - 1 if t is None else t
    ab = float(schedule.alphas_cumprod[t])
    g = torch.Generator().manual_seed(seed)
    return math.sqrt(ab) * M + math.sqrt(ab * S**2 + 1 - ab) * torch.randn(n, 2, generator=g, dtype=F64)


def assert_gaussian(x, m=M, s=S, k=5.0):
    n = x.shape[0]
    assert bool(torch.isfinite(x).all())
    se_mean, se_std = s / math.sqrt(n), s / math.sqrt(2 * n)
    assert bool(((x.mean(0) - m).abs() < k * se_mean).all()), (x.mean(0), m)
    assert bool(((x.std(0) - s).abs() < k * se_std).all()), (x.std(0), s)


# statistical: full-length samplers reproduce the data law ---------------------------
@pytest.mark.parametrize("variance", ["beta", "posterior"])
def test_ddpm_1000_steps_reproduces_gaussian(linear, variance):
    g = torch.Generator().manual_seed(1)
    out = sample(oracle(linear), x_T(linear), "ddpm", generator=g, variance=variance)
    assert out.dtype == F64 and out.shape == (N, 2)
    assert_gaussian(out)


def test_ddim_eta0_1000_steps_reproduces_gaussian(linear):
    out = sample(oracle(linear), x_T(linear), "ddim", steps=1000, eta=0.0)
    assert_gaussian(out)


def test_ddim_eta1_1000_steps_reproduces_gaussian(linear):
    g = torch.Generator().manual_seed(3)
    out = sample(oracle(linear), x_T(linear), "ddim", steps=1000, eta=1.0, generator=g)
    assert_gaussian(out)


def test_zero_terminal_snr_starts_from_pure_noise():
    z = rescale_zero_terminal_snr(NoiseSchedule.from_name("linear", 1000))
    g = torch.Generator().manual_seed(4)
    x = torch.randn(N, 2, generator=g, dtype=F64)  # the exact marginal at alpha_bar = 0
    out = sample(oracle(z, "v"), x, "ddpm", generator=torch.Generator().manual_seed(5))  # epsilon: undefined at ab = 0
    assert_gaussian(out)
    # x0- and v-prediction agree step for step, including the alpha_bar = 0 step
    a = sample(oracle(z, "v"), x[:256], "ddpm", steps=20, generator=torch.Generator().manual_seed(6))
    b = sample(oracle(z, "x0"), x[:256], "ddpm", steps=20, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def _propagate(schedule, grid, step):
    """Exact mean and variance (per dimension) of a sampler's output on Gaussian data: every step is affine,
    x' = A x + B + sigma z, with A, B from the oracle x0_hat = m + k (x - sqrt(ab) m) and the step's formula."""
    ab_tab = torch.cat([schedule.alphas_cumprod, torch.ones(1, dtype=F64)])
    ts = [int(t) for t in grid] + [-1]
    ab_T = float(ab_tab[ts[0]])
    mean, var = math.sqrt(ab_T) * M, ab_T * S**2 + 1 - ab_T
    for t, tp in itertools.pairwise(ts):
        ab, abp = float(ab_tab[t]), float(ab_tab[tp])
        k = math.sqrt(ab) * S**2 / (ab * S**2 + 1 - ab)
        # x0_hat = k x + (1 - k sqrt(ab)) m ; eps_hat = (x - sqrt(ab) x0_hat) / sqrt(1 - ab)
        x0_a, x0_b = k, (1 - k * math.sqrt(ab)) * M
        eps_a, eps_b = (1 - math.sqrt(ab) * k) / math.sqrt(1 - ab), -math.sqrt(ab) * x0_b / math.sqrt(1 - ab)
        A, B, noise_var = step(ab, abp, tp, x0_a, x0_b, eps_a, eps_b)
        mean, var = A * mean + B, A**2 * var + noise_var
    return mean, var


def _ddim_affine(eta):
    def step(ab, abp, tp, x0_a, x0_b, eps_a, eps_b):
        sigma2 = eta**2 * (1 - abp) / (1 - ab) * (1 - ab / abp)  # DDIM eq. 16
        c = math.sqrt(max(1 - abp - sigma2, 0.0))
        return math.sqrt(abp) * x0_a + c * eps_a, math.sqrt(abp) * x0_b + c * eps_b, sigma2
    return step


def _ddpm_affine(variance):
    def step(ab, abp, tp, x0_a, x0_b, eps_a, eps_b):
        beta = 1 - ab / abp
        c0, ct = math.sqrt(abp) * beta / (1 - ab), math.sqrt(1 - beta) * (1 - abp) / (1 - ab)  # Ho et al. eq. 7
        var = 0.0 if tp < 0 else (beta if variance == "beta" else beta * (1 - abp) / (1 - ab))
        return c0 * x0_a + ct, c0 * x0_b, var
    return step


@pytest.mark.parametrize("name, options, steps, step", [
    ("ddim", {"eta": 1.0}, 100, _ddim_affine(1.0)),
    ("ddim", {"eta": 0.5}, 20, _ddim_affine(0.5)),
    ("ddpm", {"variance": "beta"}, 20, _ddpm_affine("beta")),
    ("ddpm", {"variance": "posterior"}, 50, _ddpm_affine("posterior")),
])
def test_coarse_grid_output_law_matches_closed_form(linear, name, options, steps, step):
    """On a coarse grid the samplers do not reproduce the data law exactly; their output law is still known in
    closed form (beta over-disperses, beta-tilde under-disperses), and the samples must follow it."""
    grid = timesteps(1000, steps, "trailing")
    mean, var = _propagate(linear, grid, step)
    assert abs(math.sqrt(var) - S) > 5 * S / math.sqrt(2 * N)  # the test can tell this law from the data's
    out = sample(oracle(linear), x_T(linear), name, steps=steps, generator=torch.Generator().manual_seed(13),
                 **options)
    assert_gaussian(out, m=mean, s=math.sqrt(var))


# exact checks -----------------------------------------------------------------------
def _ddim_gain(schedule, grid, s=S):
    """Deterministic DDIM on Gaussian data maps the standardized z = (x - sqrt(ab) m) / sqrt(v) linearly:
    z' = r z, r = (sqrt(ab' ab) s^2 + sqrt((1 - ab')(1 - ab))) / sqrt(v v') (derived in closed form)."""
    ab_tab = torch.cat([schedule.alphas_cumprod, torch.ones(1, dtype=F64)])  # index -1 -> alpha_bar 1
    ts = [int(t) for t in grid] + [-1]
    gain = 1.0
    for t, tp in itertools.pairwise(ts):
        ab, abp = float(ab_tab[t]), float(ab_tab[tp])
        v, vp = ab * s**2 + 1 - ab, abp * s**2 + 1 - abp
        gain *= (math.sqrt(abp * ab) * s**2 + math.sqrt((1 - abp) * (1 - ab))) / math.sqrt(v * vp)
    return gain


@pytest.mark.parametrize("zero_snr", [False, True])
@pytest.mark.parametrize("steps", [1, 10, 50])
def test_ddim_eta0_is_the_exact_linear_map(linear, steps, zero_snr):
    sched = rescale_zero_terminal_snr(linear) if zero_snr else linear
    grid = timesteps(1000, steps, "trailing")
    x = x_T(sched, n=64)
    out = sample_ddim(oracle(sched), x, grid)
    ab_T = float(sched.alphas_cumprod[-1])
    z = (x - math.sqrt(ab_T) * M) / math.sqrt(ab_T * S**2 + 1 - ab_T)
    gain = _ddim_gain(sched, grid)
    expected = M + S * gain * z
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)
    assert gain <= 1 + 1e-12  # coarse DDIM can only shrink the spread (Cauchy-Schwarz)
    # the same law by the generic affine propagation
    mean, var = _propagate(sched, grid, _ddim_affine(0.0))
    torch.testing.assert_close(mean, M, rtol=1e-12, atol=1e-12)
    assert math.sqrt(var) == pytest.approx(S * gain, rel=1e-10)


def _noise(seed, shape):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("variance", ["beta", "posterior"])
@pytest.mark.parametrize("t, t_prev", [(1, 0), (500, 499), (600, 300), (999, 0)])
def test_ddpm_single_step_formula(linear, variance, t, t_prev):
    """One step t -> t' equals the posterior q(x_t' | x_t, x0_hat) on the (possibly skipped) grid, with the
    documented variance, drawn from the caller's generator."""
    x = x_T(linear, n=8, t=t)
    c = torch.tensor([0.3, -1.7], dtype=F64)
    den = Denoiser(lambda xx, tt: c.expand_as(xx), linear, "x0")
    seen = []
    sample_ddpm(den, x, torch.tensor([float(t), float(t_prev)], dtype=F64), generator=torch.Generator().manual_seed(9),
                variance=variance, callback=lambda r: seen.append(r.x.clone()))
    ab, abp = float(linear.alphas_cumprod[t]), float(linear.alphas_cumprod[t_prev])
    beta = 1 - ab / abp
    mean = math.sqrt(abp) * beta / (1 - ab) * c + math.sqrt(1 - beta) * (1 - abp) / (1 - ab) * x
    var = beta if variance == "beta" else beta * (1 - abp) / (1 - ab)
    expected = mean + math.sqrt(var) * _noise(9, x.shape)
    torch.testing.assert_close(seen[0], expected, rtol=1e-10, atol=1e-12)
    if t_prev == t - 1:  # consecutive steps: the schedule's own posterior
        m_ref, v_ref = linear.q_posterior(c.expand_as(x), x, torch.full((8,), t))
        torch.testing.assert_close(mean, m_ref, rtol=1e-10, atol=1e-12)
        if variance == "posterior":
            assert var == pytest.approx(float(v_ref[0]), rel=1e-10)
    # the last step returns the mean, which at t' = -1 is x0_hat itself
    torch.testing.assert_close(seen[1], c.expand_as(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("t, t_prev", [(999, 979), (500, 499), (30, 0)])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_single_step_formula(linear, t, t_prev, eta):
    x = x_T(linear, n=8, t=t)
    den = oracle(linear)
    eps_hat, x0_hat = den(x, torch.tensor(float(t)))
    seen = []
    sample_ddim(den, x, torch.tensor([float(t), float(t_prev)], dtype=F64), generator=torch.Generator().manual_seed(9),
                eta=eta, callback=lambda r: seen.append(r.x.clone()))
    ab, abp = float(linear.alphas_cumprod[t]), float(linear.alphas_cumprod[t_prev])
    sigma = eta * math.sqrt((1 - abp) / (1 - ab) * (1 - ab / abp))  # DDIM eq. 16
    expected = math.sqrt(abp) * x0_hat + math.sqrt(1 - abp - sigma**2) * eps_hat  # DDIM eq. 12
    if sigma > 0:
        expected = expected + sigma * _noise(9, x.shape)
    torch.testing.assert_close(seen[0], expected, rtol=1e-10, atol=1e-12)


def test_ddim_eta1_equals_ddpm_posterior(linear):
    """With eta = 1 DDIM's sigma^2 is beta-tilde and the step is DDPM's (DDIM sec. 4.1): same noise, same path."""
    grid = timesteps(1000, 50, "trailing")
    x = x_T(linear, n=256)
    a = sample_ddim(oracle(linear), x, grid, eta=1.0, generator=torch.Generator().manual_seed(11))
    b = sample_ddpm(oracle(linear), x, grid, variance="posterior", generator=torch.Generator().manual_seed(11))
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name, options", [("ddpm", {"variance": "beta"}), ("ddpm", {"variance": "posterior"}),
                                           ("ddim", {"eta": 0.0}), ("ddim", {"eta": 1.0})])
def test_prediction_types_give_the_same_samples(linear, name, options):
    """The same oracle expressed as x0, epsilon or v gives the same samples (conversions are exact)."""
    x = x_T(linear, n=512)
    outs = [sample(oracle(linear, p), x, name, steps=200, generator=torch.Generator().manual_seed(12), **options)
            for p in ("x0", "epsilon", "v")]
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(outs[2], outs[0], rtol=1e-8, atol=1e-8)


def test_float32_sampling_matches_float64(linear):
    x = x_T(linear, n=256)
    a = sample(oracle(linear, "epsilon"), x, "ddim", steps=20)
    b = sample(oracle(linear, "epsilon"), x.float(), "ddim", steps=20)
    assert b.dtype == torch.float32
    torch.testing.assert_close(b.double(), a, rtol=1e-4, atol=1e-4)


# determinism -----------------------------------------------------------------------
def test_ddim_eta0_deterministic(linear):
    x = x_T(linear, n=128)
    a = sample(oracle(linear), x, "ddim", steps=25, generator=torch.Generator().manual_seed(1))
    b = sample(oracle(linear), x, "ddim", steps=25, generator=torch.Generator().manual_seed(2))
    c = sample(oracle(linear), x, "ddim", steps=25)
    assert torch.equal(a, b) and torch.equal(a, c)


@pytest.mark.parametrize("name, options", [("ddpm", {}), ("ddim", {"eta": 1.0})])
def test_stochastic_samplers_follow_the_generator(linear, name, options):
    x = x_T(linear, n=128)
    run = lambda seed: sample(oracle(linear), x, name, steps=30, generator=torch.Generator().manual_seed(seed),
                              **options)
    assert torch.equal(run(1), run(1))
    assert not torch.allclose(run(1), run(2))
    assert torch.equal(x, x_T(linear, n=128))  # the input is not modified in place


# callback ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, steps, expected", [("ddpm", None, 100), ("ddim", None, 50), ("ddpm", 7, 7),
                                                   ("ddim", 13, 13)])
def test_callback_once_per_step(name, steps, expected):
    sched = NoiseSchedule.from_name("cosine", 100)
    calls = []
    out = sample(oracle(sched), x_T(sched, n=16), name, steps=steps, generator=torch.Generator().manual_seed(0),
                 callback=lambda r: calls.append((r.i, r.t, r.x.clone(), r.x0_hat.clone())))
    assert len(calls) == expected
    assert [c[0] for c in calls] == list(range(expected))
    from diffkit.sampling.grids import SIGMA_MAX, make_grid

    grid = make_grid(sched, expected, "trailing", sigma_max=None if name == "ddpm" else SIGMA_MAX)
    assert [c[1] for c in calls] == grid.tolist()
    if name == "ddim":  # cosine's last steps are noisier than the cap: the grid starts at sigma_max instead
        assert calls[0][1] < 99 and float(sched.alpha_bar_at(calls[0][1])) == pytest.approx(1 / (1 + SIGMA_MAX**2), rel=1e-4)
    assert torch.equal(calls[-1][2], out)  # the last callback sees the returned sample
    assert all(c[2].shape == (16, 2) and c[3].shape == (16, 2) for c in calls)


# grids ------------------------------------------------------------------------------
def test_grid_values_T1000_K10():
    lead = timesteps(1000, 10, "leading")
    trail = timesteps(1000, 10, "trailing")
    lin = timesteps(1000, 10, "linspace")
    assert lead.tolist() == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    assert trail.tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert lin.tolist() == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    for g in (lead, trail, lin):
        assert g.dtype == F64


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("T, K", [(1000, 1), (1000, 3), (1000, 50), (1000, 250), (1000, 1000), (10, 10), (2, 1),
                                  (2, 2), (77, 5), (1000, 999)])
def test_grid_properties(spacing, T, K):
    g = timesteps(T, K, spacing)
    assert len(g) == K
    assert bool((g[:-1] > g[1:]).all())  # descending and distinct
    assert float(g.min()) >= 0 and float(g.max()) <= T - 1
    assert bool((g == g.round()).all())
    if spacing == "trailing":
        assert float(g[0]) == T - 1
    if spacing == "leading":
        assert float(g[-1]) == 0
    if spacing == "linspace":
        assert float(g[-1]) == 0 and (K == 1 or float(g[0]) == T - 1)  # K = 1: round(linspace(0, T-1, 1)) = 0


@pytest.mark.parametrize("spacing", ["leading", "linspace"])
def test_grid_length_sweep(spacing):
    for T in (7, 100, 1000):
        for K in range(1, T + 1):
            g = timesteps(T, K, spacing)
            assert len(g) == K and float(g.min()) >= 0, (T, K)


def test_trailing_grid_length_sweep():
    for T in (7, 100, 1000):
        for K in range(1, T + 1):
            g = timesteps(T, K, "trailing")
            assert len(g) == K and float(g.min()) >= 0, (T, K)


def test_sampling_with_61_trailing_steps(linear):
    out = sample(oracle(linear), x_T(linear, n=8), "ddim", steps=61)
    assert bool(torch.isfinite(out).all())


@pytest.mark.parametrize("steps", [0, -3, 1001, 2.5])
def test_bad_step_counts(steps):
    with pytest.raises(DiffkitError, match="1000"):
        timesteps(1000, steps, "trailing")
    sched = NoiseSchedule.from_name("linear", 1000)
    with pytest.raises(DiffkitError):
        sample(oracle(sched), torch.zeros(2, 2, dtype=F64), "ddim", steps=steps)


def test_unknown_spacing_lists_names():
    with pytest.raises(DiffkitError) as info:
        timesteps(1000, 10, "uniform")
    msg = str(info.value)
    assert "uniform" in msg and all(s in msg for s in ("leading", "trailing", "linspace"))


# options and names ------------------------------------------------------------------
def test_sampler_registry():
    assert set(SAMPLERS) >= {"ddpm", "ddim"}
    assert sampler_options("ddpm") == ("variance",)
    assert sampler_options("ddim") == ("eta",)


@pytest.mark.parametrize("name, option, accepted", [("ddpm", "eta", "variance"), ("ddim", "variance", "eta"),
                                                    ("ddim", "temperature", "eta")])
def test_sample_rejects_foreign_option(linear, name, option, accepted):
    with pytest.raises(DiffkitError) as info:
        sample(oracle(linear), torch.zeros(2, 2, dtype=F64), name, steps=5, **{option: 1.0})
    msg = str(info.value)
    assert option in msg and accepted in msg and name in msg


def test_unknown_sampler_lists_names(linear):
    with pytest.raises(DiffkitError) as info:
        sample(oracle(linear), torch.zeros(2, 2, dtype=F64), "euler-x")
    msg = str(info.value)
    assert "euler-x" in msg and "ddpm" in msg and "ddim" in msg and "dpmpp-2m" in msg and "langevin" in msg


@pytest.mark.parametrize("name, options", [("ddpm", {"variance": "learned"}), ("ddim", {"eta": -0.1}),
                                           ("ddim", {"eta": float("nan")}), ("ddim", {"eta": float("inf")})])
def test_bad_option_values(linear, name, options):
    with pytest.raises(DiffkitError):
        sample(oracle(linear), torch.zeros(2, 2, dtype=F64), name, steps=5, **options)
