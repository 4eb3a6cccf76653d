"""Sampling grids (sampling/grids.py): Karras's and the uniform log-SNR grid in closed form, every spacing descending
within the schedule's range, the noise cap (sigma_ve <= SIGMA_MAX) and zero terminal SNR, the time <-> log-SNR
inverse, and the sigma range a caller narrows a grid to. The Gaussian oracle is tests/test_fast_samplers.py's,
the schedule fixtures tests/conftest.py's.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_fast_samplers import (
    F64,
    T,
    abar,
    marginal,
    oracle,
    schedule_named,
    sigma_ve,
)

from diffkit import DiffkitError, NoiseSchedule
from diffkit.sampling import NARROWED, SIGMA_MAX, SPACINGS, make_grid, sample, timesteps


@pytest.mark.parametrize("sched", ["linear", "cosine"])
@pytest.mark.parametrize("K", [2, 5, 20, 100])
def test_karras_grid_closed_form(sched, K):
    """sigma_i = (s_max^(1/7) + i/(K-1) (s_min^(1/7) - s_max^(1/7)))^7 between the schedule's ends (Karras eq. 5)."""
    schedule = schedule_named(sched)
    g = make_grid(schedule, K, "karras", sigma_max=None)
    assert len(g) == K
    ab = schedule.alphas_cumprod
    s_min, s_max = math.sqrt((1 - ab[0]) / ab[0]), math.sqrt((1 - ab[-1]) / ab[-1])
    i = torch.arange(K, dtype=F64)
    expected = (s_max ** (1 / 7) + i / (K - 1) * (s_min ** (1 / 7) - s_max ** (1 / 7))) ** 7
    torch.testing.assert_close(sigma_ve(schedule, g), expected, rtol=1e-8, atol=0)


@pytest.mark.parametrize("sched", ["linear", "cosine"])
def test_karras_grid_capped(sched):
    schedule = schedule_named(sched)
    g = make_grid(schedule, 20, "karras")
    s = sigma_ve(schedule, g)
    ab = schedule.alphas_cumprod
    s_min = math.sqrt((1 - ab[0]) / ab[0])
    s_max = min(SIGMA_MAX, math.sqrt((1 - ab[-1]) / ab[-1]))
    i = torch.arange(20, dtype=F64)
    expected = (s_max ** (1 / 7) + i / 19 * (s_min ** (1 / 7) - s_max ** (1 / 7))) ** 7
    torch.testing.assert_close(s, expected, rtol=1e-8, atol=0)


@pytest.mark.parametrize("sched", ["linear", "cosine", "zero-snr"])
@pytest.mark.parametrize("capped", [True, False])
def test_logsnr_grid_is_uniform(sched, capped):
    schedule = schedule_named(sched)
    g = make_grid(schedule, 30, "logsnr", sigma_max=SIGMA_MAX if capped else None)
    if schedule.zero_terminal_snr:
        assert float(g[0]) == T - 1
        g = g[1:]
    ab = schedule.alpha_bar_at(g)
    lam = torch.log(ab) - torch.log1p(-ab)
    lam_table = schedule.log_snr
    lo = float(lam_table[-2] if schedule.zero_terminal_snr else lam_table[-1])
    if capped:
        lo = max(lo, -2 * math.log(SIGMA_MAX))
    torch.testing.assert_close(lam, torch.linspace(lo, float(lam_table[0]), len(g), dtype=F64), rtol=0, atol=1e-9)


GRID_SCHEDULES = ["linear", "cosine", "sigmoid", "scaled_linear", "zero-snr"]


@pytest.mark.parametrize("sched", GRID_SCHEDULES)
@pytest.mark.parametrize("spacing", SPACINGS)
def test_grids_descend_within_range(sched, spacing):
    schedule = schedule_named(sched)
    for K in (1, 2, 7, 50, 333, 1000):
        for cap in (SIGMA_MAX, None):
            g = make_grid(schedule, K, spacing, sigma_max=cap)
            assert g.dtype == F64 and 1 <= len(g) <= K, (K, cap, len(g))
            assert bool((g[:-1] > g[1:]).all()), (K, cap)
            assert float(g.min()) >= 0 and float(g.max()) <= T - 1, (K, cap)
            if spacing in ("karras", "logsnr") and K > 1:
                assert len(g) == K  # continuous grids never merge times
            if cap is not None:  # no time noisier than the cap (except the exact t = T-1 of zero-SNR schedules)
                s = sigma_ve(schedule, g[1:] if schedule.zero_terminal_snr and float(g[0]) == T - 1 else g)
                assert bool((s <= SIGMA_MAX * (1 + 1e-9)).all()), (K, s[:3])


@pytest.mark.parametrize("spacing, K", [(sp, K) for sp in ("trailing", "linspace", "karras", "logsnr")
                                        for K in (1, 2, 10, 50, 1000) if (sp, K) != ("linspace", 1)])
def test_noise_cap_on_cosine(cosine, spacing, K):
    """Cosine's sigma_ve(T-1) ~ 2e4 > 160: the grid starts exactly at sigma_ve = SIGMA_MAX, none noisier."""
    assert float(sigma_ve(cosine, [T - 1])) > 1e4
    g = make_grid(cosine, K, spacing)
    s = sigma_ve(cosine, g)
    assert float(s[0]) == pytest.approx(SIGMA_MAX, rel=1e-6)
    assert float(s.max()) <= SIGMA_MAX * (1 + 1e-9)
    uncapped = make_grid(cosine, K, spacing, sigma_max=None)
    assert float(uncapped[0]) == T - 1 and float(sigma_ve(cosine, uncapped[:1])) > 1e4
    if spacing in ("karras", "logsnr"):
        assert len(g) == K


def test_leading_grid_below_the_cap_is_untouched(cosine):
    assert torch.equal(make_grid(cosine, 10, "leading"), timesteps(T, 10, "leading"))


@pytest.mark.parametrize("K", [1, 10, 50, 999, 1000])
def test_linear_grids_untouched_by_cap(linear, K):
    """Linear T=1000: sigma_ve(999) = 157.4 < 160, so the cap changes nothing."""
    assert float(sigma_ve(linear, [T - 1])) == pytest.approx(157.4, abs=0.1)
    for spacing in ("trailing", "leading", "linspace"):
        assert torch.equal(make_grid(linear, K, spacing), timesteps(T, K, spacing))
    for spacing in ("karras", "logsnr"):
        assert torch.equal(make_grid(linear, K, spacing), make_grid(linear, K, spacing, sigma_max=None))


@pytest.mark.parametrize("spacing", ["trailing", "linspace", "karras", "logsnr"])
@pytest.mark.parametrize("K", [2, 10, 50])
def test_zero_terminal_snr_grids_keep_T_minus_1(zero_snr, spacing, K):
    for cap in (SIGMA_MAX, None):
        g = make_grid(zero_snr, K, spacing, sigma_max=cap)
        assert float(g[0]) == T - 1 and abar(zero_snr, g[0]) == 0.0
        # continuous grids keep K times; discrete ones may merge times above the cap into one
        assert len(g) == K if spacing in ("karras", "logsnr") or cap is None else 2 <= len(g) <= K
    assert float(sigma_ve(zero_snr, make_grid(zero_snr, K, spacing)[1:]).max()) <= SIGMA_MAX * (1 + 1e-9)


@pytest.mark.parametrize("sched", ["linear", "cosine", "sigmoid", "zero-snr"])
def test_t_at_log_snr_inverts_alpha_bar_at(sched):
    schedule = schedule_named(sched)
    hi = T - 2 if schedule.zero_terminal_snr else T - 1  # on (T-2, T-1] a zero-SNR schedule has alpha_bar = 0
    t = torch.rand(2000, generator=torch.Generator().manual_seed(0), dtype=F64) * hi
    ab = schedule.alpha_bar_at(t)
    back = schedule.t_at_log_snr(torch.log(ab) - torch.log1p(-ab))
    torch.testing.assert_close(back, t, rtol=0, atol=1e-8)
    ints = torch.arange(hi + 1, dtype=F64)
    assert torch.equal(schedule.t_at_log_snr(schedule.log_snr[: hi + 1]), ints)  # exact at integer t
    # and the other way round: alpha_bar_at(t_at_log_snr(lambda)) = lambda inside the table
    lam_tab = schedule.log_snr[: hi + 1]
    lam = float(lam_tab[-1]) + torch.rand(500, generator=torch.Generator().manual_seed(1), dtype=F64) * float(
        lam_tab[0] - lam_tab[-1])
    ab2 = schedule.alpha_bar_at(schedule.t_at_log_snr(lam))
    torch.testing.assert_close(torch.log(ab2) - torch.log1p(-ab2), lam, rtol=0, atol=1e-8)
    torch.testing.assert_close(schedule.t_at_sigma_ve(torch.exp(-lam / 2)), schedule.t_at_log_snr(lam), rtol=0,
                               atol=1e-9)


def test_alpha_bar_at_python_floats_stay_float64(linear):
    t = 948.9284680964124
    exact = float(linear.alpha_bar_at(torch.tensor([t], dtype=F64)))
    assert float(linear.alpha_bar_at([t, 12.006143913540807])[0]) == exact
    assert float(linear.alpha_bar_at(t)) == exact


@pytest.mark.parametrize("spacing", SPACINGS)
def test_sigma_range_narrows_every_grid(spacing):
    """sigma_min / sigma_max bound the grid's noise levels; the continuous grids reach both ends exactly."""
    schedule = NoiseSchedule.from_name("linear", 1000)
    g = make_grid(schedule, 10, spacing, sigma_max=20.0, sigma_min=0.05)
    s = sigma_ve(schedule, g)
    assert bool((s <= 20.0 * (1 + 1e-9)).all() and (s >= 0.05 * (1 - 1e-9)).all()), s
    if spacing in ("logsnr", "karras"):
        assert len(g) == 10
        assert float(s[0]) == pytest.approx(20.0, rel=1e-6) and float(s[-1]) == pytest.approx(0.05, rel=1e-6)
        wide = sigma_ve(schedule, make_grid(schedule, 10, spacing))
        assert float(wide.min()) < 0.05 and float(wide.max()) > 20.0  # the default range is the schedule's own


def _visited(schedule, name, steps, **kw):
    ts = []
    sample(oracle(schedule), marginal(schedule, T - 1, n=8), name, steps, generator=torch.Generator().manual_seed(0),
           callback=lambda r: ts.append(r.t), **kw)
    return sigma_ve(schedule, ts)


@pytest.mark.parametrize("name", sorted(NARROWED))
@pytest.mark.parametrize("steps", [10, 20])
def test_dpm_solver_default_noise_range(linear, name, steps):
    """DPM-Solver++ spends its K steps on sigma in [0.5 / K, 10] by default; each end the caller gives wins."""
    s = _visited(linear, name, steps)
    assert len(s) == steps
    assert float(s[0]) == pytest.approx(10.0, rel=1e-6) and float(s[-1]) == pytest.approx(0.5 / steps, rel=1e-6)
    top = _visited(linear, name, steps, sigma_max=40.0)
    assert float(top[0]) == pytest.approx(40.0, rel=1e-6) and float(top[-1]) == pytest.approx(0.5 / steps, rel=1e-6)
    karras = _visited(linear, name, steps, spacing="karras")
    assert float(karras[0]) == pytest.approx(10.0, rel=1e-6) and float(karras[-1]) == pytest.approx(0.5 / steps, rel=1e-6)
    # discrete spacings and the other samplers keep the schedule's range (capped at 160)
    assert float(_visited(linear, name, steps, spacing="trailing")[0]) > 100
    assert float(_visited(linear, "heun", steps)[0]) > 100


@pytest.mark.parametrize("lo, hi, fragment", [(0.0, None, "sigma_min"), (float("nan"), None, "sigma_min"),
                                              (None, -1.0, "sigma_max"), (2.0, 1.0, "below"), (500.0, None, "misses")])
def test_bad_sigma_range(lo, hi, fragment):
    with pytest.raises(DiffkitError, match=fragment):
        make_grid(NoiseSchedule.from_name("linear", 1000), 10, "logsnr", sigma_max=hi, sigma_min=lo)
