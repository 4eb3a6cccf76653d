"""Samplers at their edges: zero terminal SNR (the first step from pure noise, x0 clipping), every error path
(unknown names, steps out of range, options a sampler does not take or values it cannot use), and randomness
(stochastic samplers follow their generator, ODE solvers ignore it). The Gaussian oracle is tests/test_fast_samplers.py's,
the schedule fixtures tests/conftest.py's.
"""

from __future__ import annotations

import pytest
import torch
from test_fast_samplers import (
    F64,
    M,
    N,
    S,
    T,
    assert_gaussian,
    gaussian_model,
    marginal,
    oracle,
    schedule_named,
    start_time,
)

from diffkit import Denoiser, DiffkitError
from diffkit.sampling import (
    SAMPLERS,
    SPACINGS,
    make_grid,
    nfe_per_step,
    sample,
    sample_ddim,
    sample_dpmpp_2m,
    sampler_options,
)

# 4. terminal SNR -------------------------------------------------------------------------
LANGEVIN_ZT_BUG = ("BUG: sample_langevin computes step_alpha = (nxt.alpha / now.alpha) ** 2 before the corrector "
                   "loop; at t = T-1 of a zero-terminal-SNR schedule now.alpha = 0 -> ZeroDivisionError (even with "
                   "corrector_steps=0). Fix: step_alpha = (now.alpha / nxt.alpha) ** 2 (also the documented "
                   "alpha_i), which is 0 there")
SDE_ZT_BUG = ("BUG: dpmpp-2m-sde with eta=0 on a zero-terminal-SNR schedule returns NaN: the first step has "
              "h = inf and eta_h = eta * h = 0 * inf = nan. Fix: eta_h = eta * h if eta > 0 else 0.0")


@pytest.mark.parametrize("name, steps, options", [
    ("ddim", 50, {}), ("dpmpp-2m", 20, {}), ("dpmpp-3m", 20, {}), ("heun", 20, {}), ("euler", 50, {}),
    ("euler-a", 100, {}), ("dpmpp-2m-sde", 100, {}), ("ddim", 100, {"eta": 1.0}), ("ddpm", 200, {}),
    pytest.param("langevin", 500, {"corrector_steps": 1}),
])
def test_zero_terminal_snr_samplers(linear, zero_snr, name, steps, options):
    """From x_T ~ N(0, I) (exact at alpha_bar = 0) with a v-prediction oracle every sampler is finite and as accurate
    as on the original schedule: within 10% of s (moderate step counts: ddim-50 -8%, heun-20 +7%) and within 1.5%
    of the same sampler on plain linear. (DDPM over all 1000 steps: test_sampling.py,
    test_zero_terminal_snr_starts_from_pure_noise.)"""
    x = torch.randn(N, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    out = sample(oracle(zero_snr, "v"), x, name, steps, generator=torch.Generator().manual_seed(1), **options)
    assert_gaussian(out, mean_tol=0.003, std_tol=0.1 * S)
    ref = sample(oracle(linear, "v"), marginal(linear, T - 1), name, steps, generator=torch.Generator().manual_seed(1),
                 **options)
    assert bool(((out.std(0) - ref.std(0)).abs() < 0.015 * S).all()), (out.std(0), ref.std(0))


def test_zero_terminal_snr_first_step_uses_x0_only(zero_snr):
    """At alpha_bar = 0, x_t carries no information: x0_hat = E[x0] = m for every sample."""
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    seen = []
    sample(oracle(zero_snr, "v"), x, "dpmpp-2m", 10, callback=lambda r: seen.append((r.t, r.x0_hat.clone())))
    assert seen[0][0] == T - 1
    torch.testing.assert_close(seen[0][1], M.expand(64, 2), rtol=0, atol=1e-12)


def _mean_std(x):
    return x.mean(0), x.std(0)


def _close(a, b, tol):
    (ma, sa), (mb, sb) = _mean_std(a), _mean_std(b)
    return bool(((ma - mb).abs() < tol).all() and ((sa - sb).abs() < tol).all()), (ma, sa, mb, sb)


def test_clip_x0_rescues_ddim_from_the_terminal_snr_blowup(cosine):
    """Cosine: alpha at T-1 is 5e-5, so an epsilon error of 0.01 becomes an x0_hat error of ~200 there.
    Without clipping and without the grid cap, DDIM's first step throws the samples ~20 std away and 10 steps
    do not recover; clip_x0 = 3 (or the default capped grid) gives what exact epsilon gives."""
    x = torch.randn(N, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    uncapped = make_grid(cosine, 10, "trailing", sigma_max=None)
    assert float(uncapped[0]) == T - 1
    ref = sample_ddim(oracle(cosine, "epsilon"), x, uncapped)  # exact epsilon, same grid
    assert_gaussian(ref, std_tol=0.07)  # 10 DDIM steps under-disperse (0.24 instead of 0.30)

    bad = oracle(cosine, "epsilon", eps_error=0.01)
    first = []
    out = sample_ddim(bad, x, uncapped, callback=lambda r: first.append((r.x.std(), r.x0_hat.std())) if r.i == 0 else None)
    assert float(first[0][1]) > 100 and float(first[0][0]) > 10  # x0_hat ~ 150 std, x after one step ~ 20 std
    assert float(out.std()) > 10 * S

    clipped = oracle(cosine, "epsilon", eps_error=0.01)
    clipped.clip_x0 = 3.0
    x0s = []
    out = sample_ddim(clipped, x, uncapped, callback=lambda r: x0s.append(r.x0_hat))
    assert max(float(v.abs().max()) for v in x0s) <= 3.0
    ok, info = _close(out, ref, 0.05)
    assert ok and bool(torch.isfinite(out).all()), info

    # the default (capped) grid: clipped or not, the same as exact epsilon on that grid
    ref_capped = sample(oracle(cosine, "epsilon"), x, "ddim", 10)
    for den in (clipped, bad):
        ok, info = _close(sample(den, x, "ddim", 10), ref_capped, 0.02)
        assert ok, info


def test_clip_x0_with_dpmpp_2m(cosine):
    """DPM-Solver++ damps the first x0_hat by alpha' (1 - e^-h), so even unclipped and uncapped the blown-up
    x0_hat (std > 100) hardly moves the result; with clipping and the default grid it equals exact epsilon."""
    x = torch.randn(N, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    bad = oracle(cosine, "epsilon", eps_error=0.01)
    clipped = oracle(cosine, "epsilon", eps_error=0.01)
    clipped.clip_x0 = 3.0
    start = marginal(cosine, start_time(cosine, True, "dpmpp-2m"))  # the default grid starts at sigma = 10
    ref = sample(oracle(cosine, "epsilon"), start, "dpmpp-2m", 10)
    assert_gaussian(ref, std_tol=0.05)
    ok, info = _close(sample(clipped, start, "dpmpp-2m", 10), ref, 0.02)
    assert ok, info
    uncapped = make_grid(cosine, 10, "logsnr", sigma_max=None)
    first = []
    out = sample_dpmpp_2m(bad, x, uncapped, callback=lambda r: first.append(r.x0_hat.std()) if r.i == 0 else None)
    assert float(first[0]) > 100
    ok, info = _close(out, sample_dpmpp_2m(oracle(cosine, "epsilon"), x, uncapped), 0.05)
    assert ok, info


# 5. error paths --------------------------------------------------------------------------
def test_unknown_sampler_lists_every_name(linear):
    with pytest.raises(DiffkitError) as info:
        sample(oracle(linear), torch.zeros(2, 2, dtype=F64), "dpm++")
    msg = str(info.value)
    assert "dpm++" in msg and all(name in msg for name in SAMPLERS)


def test_unknown_spacing_lists_every_name(linear):
    for call in (lambda: make_grid(linear, 10, "uniform"),
                 lambda: sample(oracle(linear), torch.zeros(2, 2, dtype=F64), "euler", 10, spacing="uniform")):
        with pytest.raises(DiffkitError) as info:
            call()
        msg = str(info.value)
        assert "uniform" in msg and all(s in msg for s in SPACINGS)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_steps_out_of_range(linear, name):
    for steps in (0, -1, 1001, 2.5, True):
        with pytest.raises(DiffkitError, match="1000"):
            sample(oracle(linear), torch.zeros(2, 2, dtype=F64), name, steps)
    for spacing in ("karras", "logsnr"):
        with pytest.raises(DiffkitError, match="1000"):
            make_grid(linear, 1001, spacing)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_foreign_option_lists_accepted_ones(linear, name):
    foreign = "eta" if name == "langevin" else "snr"
    with pytest.raises(DiffkitError) as info:
        sample(oracle(linear), torch.zeros(2, 2, dtype=F64), name, 5, **{foreign: 0.5})
    msg = str(info.value)
    accepted = sampler_options(name)
    assert name in msg and foreign in msg
    assert all(a in msg for a in accepted) and (accepted or "none" in msg)


def test_sampler_options():
    assert sampler_options("dpmpp-2m") == ("lower_order_final",)
    assert sampler_options("dpmpp-2m-sde") == ("eta", "s_tmax")
    assert sampler_options("euler") == () and sampler_options("heun") == ()
    assert sampler_options("euler-a") == ("eta",)
    assert set(sampler_options("langevin")) == {"snr", "corrector_steps"}


@pytest.mark.parametrize("options", [{"snr": 0.0}, {"snr": -0.1}, {"snr": float("nan")}, {"corrector_steps": -1}])
def test_langevin_rejects_bad_options(linear, options):
    with pytest.raises(DiffkitError, match="snr"):
        sample(oracle(linear), torch.zeros(2, 2, dtype=F64), "langevin", 5, **options)


@pytest.mark.parametrize("name, options", [("euler-a", {"eta": -0.5}), ("euler-a", {"eta": float("nan")}),
                                           ("dpmpp-2m-sde", {"eta": -0.5}), ("dpmpp-2m-sde", {"eta": float("nan")}),
                                           ("langevin", {"corrector_steps": 1.5})])
def test_bad_option_values_raise_diffkit_error(linear, name, options):
    with pytest.raises(DiffkitError):
        sample(oracle(linear), torch.randn(4, 2, dtype=F64), name, 5, generator=torch.Generator().manual_seed(0),
               **options)


def test_nfe_per_step():
    assert nfe_per_step("heun") == 2
    assert nfe_per_step("langevin") == 2 and nfe_per_step("langevin", corrector_steps=3) == 4
    assert all(nfe_per_step(n) == 1 for n in SAMPLERS if n not in ("heun", "langevin"))


@pytest.mark.parametrize("name, options, expected", [
    ("ddpm", {}, 10), ("ddim", {}, 10), ("dpmpp-2m", {}, 10), ("dpmpp-3m", {}, 10), ("dpmpp-2m-sde", {}, 10),
    ("euler", {}, 10), ("heun", {}, 19), ("euler-a", {}, 10), ("langevin", {"corrector_steps": 2}, 28),
])
def test_network_calls(linear, name, options, expected):
    """Calls for a 10-time grid: one per step; heun 2K - 1 (Euler on the last step); langevin K + c (K - 1)."""
    calls = []
    model = gaussian_model(linear, "x0")
    den = Denoiser(lambda x, t: calls.append(1) or model(x, t), linear, "x0")
    sample(den, marginal(linear, T - 1, n=4), name, 10, generator=torch.Generator().manual_seed(0), **options)
    assert len(calls) == expected
    nfe = nfe_per_step(name, **options)
    assert 9 * nfe <= len(calls) <= 10 * nfe  # nfe_per_step is exact up to the last step


# 6. randomness ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, options", [("ddpm", {}), ("ddim", {"eta": 1.0}), ("dpmpp-2m-sde", {}),
                                           ("euler-a", {}), ("langevin", {}), ("euler-a", {"eta": 0.5})])
def test_stochastic_samplers_follow_the_generator(linear, name, options):
    x = marginal(linear, T - 1, n=128)
    x_copy = x.clone()

    def run(seed):
        return sample(oracle(linear), x, name, 30, generator=torch.Generator().manual_seed(seed), **options)

    assert torch.equal(run(1), run(1))
    assert float((run(1) - run(2)).abs().max()) > 1e-3
    assert torch.equal(x, x_copy)  # the input is not modified in place


@pytest.mark.parametrize("name", ["ddim", "euler", "heun", "dpmpp-2m", "dpmpp-3m"])
def test_ode_samplers_ignore_the_generator(linear, name):
    x = marginal(linear, T - 1, n=128)
    a = sample(oracle(linear), x, name, 15, generator=torch.Generator().manual_seed(1))
    b = sample(oracle(linear), x, name, 15, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and torch.equal(a, sample(oracle(linear), x, name, 15))


@pytest.mark.parametrize("sched", ["linear", "cosine",
                                   pytest.param("zero-snr")])
@pytest.mark.parametrize("steps", [5, 20, 100])
def test_dpmpp_2m_sde_eta0_is_dpmpp_2m(sched, steps):
    """With eta = 0 the SDE midpoint update x' = (sigma'/sigma) x + alpha' (1 - e^-h) (x0 + D1/2) is 2M's."""
    schedule = schedule_named(sched)
    pred = "v" if schedule.zero_terminal_snr else "x0"
    x = marginal(schedule, T - 1, n=256)
    a = sample(oracle(schedule, pred), x, "dpmpp-2m-sde", steps, generator=torch.Generator().manual_seed(0), eta=0.0)
    b = sample(oracle(schedule, pred), x, "dpmpp-2m", steps)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_dpmpp_2m_sde_eta1_differs_from_2m_and_is_unbiased(cosine):
    x = marginal(cosine, start_time(cosine, True, "dpmpp-2m-sde"))
    a = sample(oracle(cosine), x, "dpmpp-2m-sde", 100, generator=torch.Generator().manual_seed(5))
    b = sample(oracle(cosine), x, "dpmpp-2m", 100)
    assert float((a - b).abs().mean()) > 0.05  # fresh noise: a different coupling of x_T and x_0
    assert_gaussian(a, mean_tol=0.002, std_tol=0.01 * S)
