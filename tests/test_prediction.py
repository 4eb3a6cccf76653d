"""Conversions between epsilon, x0, v and the score."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffkit import Denoiser, DiffkitError, NoiseSchedule
from diffkit import prediction as P

F64 = torch.float64
PREDS = ("epsilon", "x0", "v")


def _draw(seed: int, alpha_bar: float, shape=(16, 3)):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=g, dtype=F64) * 2.0 + 0.5
    eps = torch.randn(shape, generator=g, dtype=F64)
    ab = torch.full((shape[0], 1), alpha_bar, dtype=F64)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return x0, eps, ab, x_t


alpha_bars = st.floats(1e-4, 1 - 1e-4, allow_nan=False)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(alpha_bar=alpha_bars, seed=st.integers(0, 2**31 - 1))
def test_roundtrips(alpha_bar, seed):
    x0, eps, ab, x_t = _draw(seed, alpha_bar)
    tol = {"rtol": 1e-9, "atol": 1e-9}
    # eps -> x0 and x0 -> eps
    torch.testing.assert_close(P.x0_from_eps(x_t, eps, ab), x0, rtol=1e-8, atol=1e-8 / alpha_bar**0.5)
    torch.testing.assert_close(P.eps_from_x0(x_t, x0, ab), eps, rtol=1e-8, atol=1e-8 / (1 - alpha_bar) ** 0.5)
    # v from (eps, x0), then back through v alone
    v = P.v_from_eps_x0(eps, x0, ab)
    torch.testing.assert_close(v, ab.sqrt() * eps - (1 - ab).sqrt() * x0, **tol)
    torch.testing.assert_close(P.x0_from_v(x_t, v, ab), x0, **tol)
    torch.testing.assert_close(P.eps_from_v(x_t, v, ab), eps, **tol)
    # v is a rotation of (eps, x0): |v|^2 + |x_t|^2 = |eps|^2 + |x0|^2
    torch.testing.assert_close(v**2 + x_t**2, eps**2 + x0**2, **tol)
    # score
    score = P.score_from_eps(eps, ab)
    torch.testing.assert_close(score, -eps / (1 - ab).sqrt(), **tol)
    torch.testing.assert_close(P.eps_from_score(score, ab), eps, **tol)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(alpha_bar=alpha_bars, seed=st.integers(0, 2**31 - 1), prediction=st.sampled_from(PREDS))
def test_target_and_to_eps_x0_consistent(alpha_bar, seed, prediction):
    """A network that outputs exactly the target yields back the true (eps, x0)."""
    x0, eps, ab, x_t = _draw(seed, alpha_bar)
    out = P.target(prediction, x0, eps, ab)
    expected_target = {"epsilon": eps, "x0": x0, "v": ab.sqrt() * eps - (1 - ab).sqrt() * x0}[prediction]
    torch.testing.assert_close(out, expected_target, rtol=0, atol=1e-12)
    eps_hat, x0_hat = P.to_eps_x0(prediction, out, x_t, ab)
    torch.testing.assert_close(eps_hat, eps, rtol=1e-8, atol=1e-8 / (1 - alpha_bar) ** 0.5)
    torch.testing.assert_close(x0_hat, x0, rtol=1e-8, atol=1e-8 / alpha_bar**0.5)
    # the pair is consistent with x_t
    torch.testing.assert_close(ab.sqrt() * x0_hat + (1 - ab).sqrt() * eps_hat, x_t, rtol=1e-9, atol=1e-9)


def test_pinned_values():
    ab = torch.tensor([[0.64]], dtype=F64)  # sqrt = 0.8, sigma = 0.6
    x0, eps = torch.tensor([[1.0]], dtype=F64), torch.tensor([[2.0]], dtype=F64)
    x_t = 0.8 * x0 + 0.6 * eps  # 2.0
    assert float(P.v_from_eps_x0(eps, x0, ab)) == pytest.approx(0.8 * 2 - 0.6 * 1)
    assert float(P.score_from_eps(eps, ab)) == pytest.approx(-2 / 0.6)
    assert float(P.x0_from_eps(x_t, eps, ab)) == pytest.approx(1.0)


def test_score_is_gradient_of_log_density_for_gaussian_data():
    """For x0 ~ N(0, 1): q(x_t) = N(0, 1), so score = -x_t; E[eps | x_t] = sigma x_t gives -eps/sigma = -x_t."""
    ab = torch.tensor([[0.3]], dtype=F64)
    x_t = torch.linspace(-3, 3, 7, dtype=F64)[:, None]
    eps_mean = (1 - ab).sqrt() * x_t
    torch.testing.assert_close(P.score_from_eps(eps_mean, ab), -x_t, rtol=1e-12, atol=1e-12)


def test_unknown_prediction_type():
    x = torch.zeros(2, 2)
    ab = torch.full((2, 1), 0.5)
    for call in (lambda: P.check_prediction("sample"), lambda: P.target("sample", x, x, ab),
                 lambda: P.to_eps_x0("sample", x, x, ab),
                 lambda: Denoiser(lambda a, b: a, NoiseSchedule.from_name("linear", 10), "sample")):
        with pytest.raises(DiffkitError) as info:
            call()
        msg = str(info.value)
        assert "sample" in msg and all(p in msg for p in PREDS)


@pytest.mark.parametrize("prediction", PREDS)
def test_denoiser_converts_each_prediction_type(prediction):
    """Denoiser(network predicting `prediction`) returns the same (eps_hat, x0_hat) for all types."""
    sched = NoiseSchedule.from_name("linear", 1000)
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(8, 2, generator=g, dtype=F64)
    eps = torch.randn(8, 2, generator=g, dtype=F64)
    t = torch.tensor(321.0, dtype=F64)
    ab = sched.alphas_cumprod[321]
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps

    def network(x, tt):
        assert x.shape == (8, 2) and tt.shape == (8,) and bool((tt == 321).all())
        return P.target(prediction, x0, eps, ab)

    eps_hat, x0_hat = Denoiser(network, sched, prediction)(x_t, t)
    torch.testing.assert_close(eps_hat, eps, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(x0_hat, x0, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("prediction", P.PATH_PREDICTIONS["vp"])  # the VP conversions (flow, edm: *_on_path)
def test_to_x0_is_the_x0_of_to_eps_x0(prediction):
    g = torch.Generator().manual_seed(3)
    x_t, out = torch.randn(64, 2, generator=g, dtype=torch.float64), torch.randn(64, 2, generator=g, dtype=torch.float64)
    ab = torch.tensor(0.37, dtype=torch.float64)
    torch.testing.assert_close(P.to_x0(prediction, out, x_t, ab), P.to_eps_x0(prediction, out, x_t, ab)[1],
                               rtol=0, atol=1e-14)
