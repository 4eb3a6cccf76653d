"""NoiseSchedule: published values, closed-form identities, properties and a statistical check of q_step."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffkit import DiffkitError, NoiseSchedule, rescale_zero_terminal_snr
from diffkit.config import ScheduleConfig
from diffkit.schedule import SCHEDULE_NAMES

F64 = torch.float64
NAMES = ("linear", "cosine", "sigmoid", "scaled_linear")


@pytest.fixture(scope="module")
def linear():
    return NoiseSchedule.from_name("linear", 1000)


# published values ------------------------------------------------------------
def test_schedule_names_are_the_four_documented_ones():
    assert set(SCHEDULE_NAMES) == set(NAMES)


@pytest.mark.parametrize("t, alpha_bar, snr", [(250, 0.5214, 1.09), (500, 0.0778, 0.08), (750, 0.0033, 0.00)])
def test_linear_schedule_published_values(linear, t, alpha_bar, snr):
    # Ho et al. 2020: betas linear 1e-4 .. 0.02, T = 1000, t counted from 0
    assert round(float(linear.alphas_cumprod[t]), 4) == alpha_bar
    assert round(float(linear.snr[t]), 2) == snr


@pytest.mark.parametrize("t, snr", [(250, 5.49), (500, 0.97), (750, 0.17)])
def test_cosine_schedule_published_snr(t, snr):
    # Nichol & Dhariwal 2021, eq. 17 with s = 0.008
    sched = NoiseSchedule.from_name("cosine", 1000)
    assert round(float(sched.snr[t]), 2) == snr


def test_linear_tables_match_independent_numpy(linear):
    betas = np.linspace(1e-4, 0.02, 1000)
    abar = np.cumprod(1.0 - betas)
    assert linear.betas.dtype == F64 and linear.alphas_cumprod.dtype == F64
    np.testing.assert_allclose(linear.betas.numpy(), betas, rtol=1e-12, atol=0)
    np.testing.assert_allclose(linear.alphas_cumprod.numpy(), abar, rtol=1e-10, atol=0)
    assert linear.num_timesteps == 1000


def test_cosine_alpha_bar_matches_its_formula():
    T, s = 1000, 0.008
    sched = NoiseSchedule.from_name("cosine", T)
    f = np.cos((np.arange(T + 1) / T + s) / (1 + s) * np.pi / 2) ** 2
    expected = f[1:] / f[0]
    # clipping beta at 0.999 only touches the last few steps
    np.testing.assert_allclose(sched.alphas_cumprod[:990].numpy(), expected[:990], rtol=1e-9)


# properties of all named schedules -------------------------------------------
@settings(max_examples=40, deadline=None, derandomize=True)
@given(T=st.integers(2, 2000), name=st.sampled_from(NAMES))
def test_alpha_bar_strictly_decreasing_and_betas_in_range(T, name):
    sched = NoiseSchedule.from_name(name, T)
    ab = sched.alphas_cumprod
    assert ab.shape == (T,)
    assert bool((ab[1:] < ab[:-1]).all())
    assert bool((ab > 0).all()) and bool((ab < 1).all())
    assert bool((sched.betas > 0).all()) and bool((sched.betas <= 1).all())
    torch.testing.assert_close(sched.alphas, 1.0 - sched.betas, rtol=0, atol=0)
    torch.testing.assert_close(sched.alphas_cumprod_prev[1:], ab[:-1], rtol=0, atol=0)
    assert float(sched.alphas_cumprod_prev[0]) == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_derived_tables(name):
    sched = NoiseSchedule.from_name(name, 1000)
    ab = sched.alphas_cumprod
    torch.testing.assert_close(sched.snr, ab / (1 - ab), rtol=1e-12, atol=0)
    torch.testing.assert_close(sched.snr_db, 10 * torch.log10(sched.snr), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sched.log_snr, torch.log(sched.snr), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(sched.sigma**2 + ab, torch.ones_like(ab), rtol=0, atol=1e-14)


def test_snr_db_pinned(linear):
    # 10 log10(0.5214 / 0.4786) = 0.372 dB at t = 250
    assert float(linear.snr_db[250]) == pytest.approx(10 * math.log10(float(linear.snr[250])), abs=1e-12)
    assert float(linear.snr_db[250]) == pytest.approx(0.372, abs=1e-3)
    assert float(linear.snr_db[500]) == pytest.approx(10 * math.log10(0.0778 / 0.9222), abs=1e-2)


# zero terminal SNR ------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_rescale_zero_terminal_snr(name):
    sched = NoiseSchedule.from_name(name, 1000)
    z = rescale_zero_terminal_snr(sched)
    assert float(z.alphas_cumprod[-1]) == 0.0
    assert float(z.snr[-1]) == 0.0
    assert float(z.alphas_cumprod[0]) == pytest.approx(float(sched.alphas_cumprod[0]), rel=1e-12)
    assert bool((z.alphas_cumprod[1:] < z.alphas_cumprod[:-1]).all())
    assert bool((z.betas > 0).all()) and bool((z.betas <= 1).all())
    assert z.zero_terminal_snr and not sched.zero_terminal_snr
    # Lin et al. 2024, Alg. 1: sqrt(alpha_bar) is an affine map of the old one
    old, new = sched.alphas_cumprod.sqrt(), z.alphas_cumprod.sqrt()
    a = (new[0] - new[-1]) / (old[0] - old[-1])
    torch.testing.assert_close(new, a * (old - old[-1]), rtol=1e-9, atol=1e-12)


# alpha_bar_at: float time -----------------------------------------------------
def test_alpha_bar_at_exact_at_integer_t_int_inputs(linear):
    t = torch.arange(1000)
    assert torch.equal(linear.alpha_bar_at(t), linear.alphas_cumprod)
    assert float(linear.alpha_bar_at(torch.tensor(-1))) == 1.0  # int -1 falls back to the float path
    assert float(linear.alpha_bar_at(7)) == float(linear.alphas_cumprod[7])


def test_alpha_bar_at_exact_at_integer_t_float_inputs(linear):
    t = torch.arange(1000, dtype=F64)
    assert torch.equal(linear.alpha_bar_at(t), linear.alphas_cumprod)
    assert float(linear.alpha_bar_at(-1.0)) == 1.0
    assert float(linear.alpha_bar_at(torch.tensor([-1.0]))) == 1.0


@pytest.mark.parametrize("name", ["linear", "cosine", "scaled_linear"])
def test_alpha_bar_at_exact_at_last_step_float_input(name):
    sched = NoiseSchedule.from_name(name, 1000)
    assert float(sched.alpha_bar_at(999.0)) == float(sched.alphas_cumprod[999])


def test_alpha_bar_at_monotone_between_integers(linear):
    t = torch.linspace(0, 999, 20_001, dtype=F64)
    ab = linear.alpha_bar_at(t)
    assert bool(torch.isfinite(ab).all())
    assert bool((ab[1:] <= ab[:-1]).all())
    lo = t.floor().long()
    hi = (lo + 1).clamp(max=999)
    table = linear.alphas_cumprod
    assert bool((ab <= table[lo]).all()) and bool((ab >= table[hi]).all())
    # half-way in log-SNR: logit(ab(t + 0.5)) is the mean of the neighbours' logits
    mid = float(linear.alpha_bar_at(100.5))
    lam = (float(linear.log_snr[100]) + float(linear.log_snr[101])) / 2
    assert mid == pytest.approx(1 / (1 + math.exp(-lam)), rel=1e-12)


def test_alpha_bar_at_finite_between_minus_one_and_zero(linear):
    t = torch.tensor([-0.75, -0.5, -0.01], dtype=F64)
    ab = linear.alpha_bar_at(t)
    assert bool(torch.isfinite(ab).all())
    assert bool((ab <= 1).all()) and bool((ab >= linear.alphas_cumprod[0]).all())


def test_alpha_bar_at_zero_terminal_snr(linear):
    z = rescale_zero_terminal_snr(linear)
    assert float(z.alpha_bar_at(999.0)) == 0.0
    assert float(z.alpha_bar_at(torch.tensor(999))) == 0.0
    assert float(z.alpha_bar_at(500.0)) == float(z.alphas_cumprod[500])


# forward process --------------------------------------------------------------
def test_q_sample_formula(linear):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 2, generator=g, dtype=F64)
    eps = torch.randn(5, 2, generator=g, dtype=F64)
    t = torch.tensor([0, 10, 250, 500, 999])
    ab = linear.alphas_cumprod[t][:, None]
    expected = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    torch.testing.assert_close(linear.q_sample(x0, t, eps), expected, rtol=1e-14, atol=1e-14)
    # float32 in, float32 out (tables are cast at the boundary)
    out32 = linear.q_sample(x0.float(), t, eps.float())
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32, expected.float(), rtol=1e-6, atol=1e-6)


def test_q_step_deterministic_pins(linear):
    x = torch.tensor([[3.0, -2.0]], dtype=F64)
    # eps = 0: chaining q_step multiplies by prod sqrt(alpha_s) = sqrt(alpha_bar_t)
    for t in range(300):
        x = linear.q_step(x, torch.tensor([t]), torch.zeros_like(x))
    torch.testing.assert_close(x, torch.tensor([[3.0, -2.0]], dtype=F64) * linear.alphas_cumprod[299].sqrt(),
                               rtol=1e-12, atol=0)
    # x_prev = 0, eps = 1: exactly sqrt(beta_t) (catches an off-by-one in the beta index)
    one = torch.ones(3, 2, dtype=F64)
    out = linear.q_step(torch.zeros_like(one), torch.tensor([0, 500, 999]), one)
    torch.testing.assert_close(out[:, 0], linear.betas[[0, 500, 999]].sqrt(), rtol=1e-14, atol=0)


def test_q_step_chain_matches_q_sample_in_distribution(linear):
    """1000 chained q_steps from a fixed non-Gaussian x0 match q_sample's marginal (mean, variance)."""
    n = 50_000
    g = torch.Generator().manual_seed(1234)
    atoms = torch.tensor([[3.0, -2.0], [5.0, 1.0], [4.0, 0.5], [2.5, 2.0]], dtype=F64)
    x0 = atoms[torch.arange(n) % len(atoms)]  # [n, 2], far from Gaussian
    x = x0.clone()
    snapshots = {}
    for t in range(1000):
        x = linear.q_step(x, torch.tensor(t), torch.randn(x.shape, generator=g, dtype=F64))
        if t in (250, 999):
            snapshots[t] = x.clone()
    for t, x_chain in snapshots.items():
        x_direct = linear.q_sample(x0, torch.tensor(t), torch.randn(x0.shape, generator=g, dtype=F64))
        ab = float(linear.alphas_cumprod[t])
        for xs in (x_chain, x_direct):  # both equal the closed form within their standard errors
            mean_true = math.sqrt(ab) * x0.mean(0)
            var_true = ab * x0.var(0, unbiased=False) + (1 - ab)
            se_mean = (var_true / n).sqrt()
            assert bool(((xs.mean(0) - mean_true).abs() < 5 * se_mean).all()), (t, xs.mean(0), mean_true)
            # Var of the sample variance ~ (mu4 - var^2) / n; bounded here by 3 var^2 / n with slack
            se_var = (3 * var_true**2 / n).sqrt()
            assert bool(((xs.var(0) - var_true).abs() < 5 * se_var).all()), (t, xs.var(0), var_true)
        # and chain vs direct: difference of two independent estimates
        se_diff = (x_chain.var(0) / n + x_direct.var(0) / n).sqrt()
        assert bool(((x_chain.mean(0) - x_direct.mean(0)).abs() < 5 * se_diff).all())
        if t == 250:  # the mean is far from 0 here, so a wrong sqrt(alpha_bar) would show
            assert float(x_chain.mean(0)[0]) > 2.5
    # the residual x_t - sqrt(ab) x0 is N(0, 1 - ab) per sample
    r = snapshots[250] - linear.alphas_cumprod[250].sqrt() * x0
    assert abs(float(r.var()) - (1 - float(linear.alphas_cumprod[250]))) < 5 * math.sqrt(2 / (2 * n))


# posterior ------------------------------------------------------------------------
def _posterior_by_bayes(betas: np.ndarray, x0: np.ndarray, xt: np.ndarray, t: int):
    """q(x_{t-1} | x_t, x_0) by Gaussian conditioning of x_{t-1} ~ N(sqrt(ab') x0, 1 - ab') and
    x_t | x_{t-1} ~ N(sqrt(alpha_t) x_{t-1}, beta_t), in float64."""
    alphas = 1.0 - betas
    ab = np.cumprod(alphas)
    if t == 0:
        return x0, 0.0
    ab_prev = ab[t - 1]
    precision = 1.0 / (1.0 - ab_prev) + alphas[t] / betas[t]
    var = 1.0 / precision
    mean = var * (np.sqrt(ab_prev) * x0 / (1.0 - ab_prev) + np.sqrt(alphas[t]) * xt / betas[t])
    return mean, var


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_posterior_matches_ho_eq7(name):
    sched = NoiseSchedule.from_name(name, 1000)
    betas = sched.betas.numpy()
    ab = np.cumprod(1.0 - betas)
    rng = np.random.default_rng(0)
    ts = np.array([0, 1, 2, 10, 250, 500, 998, 999])
    x0 = rng.normal(size=(len(ts), 3))
    xt = rng.normal(size=(len(ts), 3))
    mean, var = sched.q_posterior(torch.from_numpy(x0), torch.from_numpy(xt), torch.from_numpy(ts))
    assert var.shape == (len(ts), 1)
    for i, t in enumerate(ts):
        m_ref, v_ref = _posterior_by_bayes(betas, x0[i], xt[i], int(t))
        np.testing.assert_allclose(mean[i].numpy(), m_ref, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(float(var[i, 0]), v_ref, rtol=1e-9, atol=1e-15)
        if t > 0:  # and Ho et al. 2020, eq. 7 written out
            ab_prev = ab[t - 1]
            v7 = (1 - ab_prev) / (1 - ab[t]) * betas[t]
            m7 = np.sqrt(ab_prev) * betas[t] / (1 - ab[t]) * x0[i] + np.sqrt(1 - betas[t]) * (1 - ab_prev) / (1 - ab[t]) * xt[i]
            np.testing.assert_allclose(float(var[i, 0]), v7, rtol=1e-12)
            np.testing.assert_allclose(mean[i].numpy(), m7, rtol=1e-12, atol=1e-14)


def test_posterior_variance_zero_at_t0(linear):
    x0 = torch.tensor([[1.0, 2.0]], dtype=F64)
    xt = torch.tensor([[-3.0, 0.5]], dtype=F64)
    mean, var = linear.q_posterior(x0, xt, torch.tensor([0]))
    assert float(var) == 0.0
    torch.testing.assert_close(mean, x0, rtol=1e-12, atol=1e-12)  # x_{-1} = x_0
    _, _, variance = linear.posterior_tables()
    assert float(variance[0]) == 0.0 and bool((variance[1:] > 0).all())
    assert bool((variance <= linear.betas).all())  # beta-tilde <= beta


# errors and serialisation ---------------------------------------------------------
def test_unknown_schedule_name_lists_valid_names():
    with pytest.raises(DiffkitError) as info:
        NoiseSchedule.from_name("quadratic", 1000)
    msg = str(info.value)
    assert "quadratic" in msg
    for name in NAMES:
        assert name in msg
    with pytest.raises(DiffkitError):
        ScheduleConfig(name="quadratic").build()


@pytest.mark.parametrize("bad", [[0.1], [0.1, 0.0], [0.1, 1.5], [0.1, float("nan")], [-0.1, 0.2]])
def test_bad_custom_betas_rejected(bad):
    with pytest.raises(DiffkitError):
        NoiseSchedule(bad)


@pytest.mark.parametrize("T", [1, 0, 2.5])
def test_bad_num_timesteps_rejected(T):
    with pytest.raises(DiffkitError):
        NoiseSchedule.from_name("linear", T)


def _roundtrip(sched: NoiseSchedule) -> NoiseSchedule:
    return NoiseSchedule.from_config(json.loads(json.dumps(sched.to_config())))


def test_custom_betas_roundtrip():
    betas = torch.tensor([1e-4, 3e-3, 0.02, 0.1, 0.5, 1.0], dtype=F64) * 0.7 + 1e-5
    sched = NoiseSchedule(betas)
    cfg = sched.to_config()
    assert cfg["name"] == "custom" and cfg["zero_terminal_snr"] is False
    back = _roundtrip(sched)
    assert torch.equal(back.betas, sched.betas)
    assert torch.equal(back.alphas_cumprod, sched.alphas_cumprod)


@pytest.mark.parametrize("name", NAMES)
def test_named_schedule_roundtrip(name):
    sched = NoiseSchedule.from_name(name, 77)
    assert sched.to_config() == {"name": name, "num_timesteps": 77, "zero_terminal_snr": False}
    back = _roundtrip(sched)
    assert back.name == name and torch.equal(back.betas, sched.betas)


def test_zero_terminal_snr_flag_roundtrip():
    z = rescale_zero_terminal_snr(NoiseSchedule.from_name("cosine", 500))
    cfg = z.to_config()
    assert cfg["zero_terminal_snr"] is True and cfg["name"] == "cosine"
    back = _roundtrip(z)
    assert back.zero_terminal_snr
    assert torch.equal(back.alphas_cumprod, z.alphas_cumprod)
    # a custom schedule that was rescaled: rescaling twice is a no-op
    zc = rescale_zero_terminal_snr(NoiseSchedule(torch.linspace(1e-3, 0.05, 50, dtype=F64)))
    back = _roundtrip(zc)
    assert back.zero_terminal_snr and float(back.alphas_cumprod[-1]) == 0.0
    torch.testing.assert_close(back.alphas_cumprod, zc.alphas_cumprod, rtol=1e-12, atol=1e-15)
    # and the ScheduleConfig path builds the same thing
    built = ScheduleConfig(name="cosine", num_timesteps=500, zero_terminal_snr=True).build()
    assert torch.equal(built.alphas_cumprod, z.alphas_cumprod)
