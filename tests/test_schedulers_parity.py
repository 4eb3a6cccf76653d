"""Parity of diffkit.schedulers with diffusers' schedulers: same config, same deterministic model,
same starting noise and generator => the same full sampling loop (float64, 1e-5 relative)."""

import itertools
import math

import diffusers
import pytest
import torch

from diffkit import schedulers as ours
from diffkit.errors import DiffkitError

NAMES = ["DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler", "EulerDiscreteScheduler"]
RTOL = 1e-5


def model(x, t):
    """A fixed smooth nonlinear 'network' (prediction depends on x and t)."""
    return torch.tanh(0.8 * x + 0.3 * torch.sin(x.flip(-1))) * (0.5 + float(t) / 2000.0) + 0.1 * x


def loop(cls, cfg, K, *, seed=0, **step_kw):
    s = cls(**cfg)
    s.set_timesteps(K)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * s.init_noise_sigma
    x0s = []
    for t in s.timesteps:
        out = s.step(model(s.scale_model_input(x, t), t), t, x, generator=g, **step_kw)
        x = out.prev_sample
        x0s.append(getattr(out, "pred_original_sample", None))
    return x, s.timesteps, x0s


def rel(a, b):
    return float((a - b).norm() / a.norm())


CASES = [(name, pred, beta, spacing) for name, pred, beta, spacing in itertools.product(
    NAMES, ["epsilon", "v_prediction"], ["linear", "squaredcos_cap_v2"], ["leading", "trailing", "linspace"])]
# diffusers' Euler step runs in float32 (sample.to(float32)); from the cosine schedule's sigma = 2e4 start its
# update sample + (sample - x0) / sigma * (sigma' - sigma) cancels ~2e4-sized numbers, costing ~1e-4 relative.
# test_euler_cosine_gap_is_diffusers_float32 shows our result equals that formula evaluated in float64.
FLOAT32_LIMITED = {("EulerDiscreteScheduler", "v_prediction", "squaredcos_cap_v2", "trailing"),
                   ("EulerDiscreteScheduler", "v_prediction", "squaredcos_cap_v2", "linspace")}


@pytest.mark.parametrize("name, pred, beta, spacing", CASES)
@pytest.mark.parametrize("K", [10, 25])
def test_full_loop_parity(name, pred, beta, spacing, K):
    cfg = {"prediction_type": pred, "beta_schedule": beta, "timestep_spacing": spacing}
    if name in ("DDPMScheduler", "DDIMScheduler"):
        cfg["clip_sample"] = False
    a, ta, _ = loop(getattr(diffusers, name), cfg, K)
    b, tb, _ = loop(getattr(ours, name), cfg, K)
    assert torch.equal(ta.double(), tb.double()), (ta, tb)
    assert ta.dtype == tb.dtype
    tol = 2e-4 if (name, pred, beta, spacing) in FLOAT32_LIMITED else RTOL
    assert rel(a, b) < tol


@pytest.mark.parametrize("cfg", [
    {"clip_sample": True},                                              # DDPM default: x0 clipped to [-1, 1]
    {"variance_type": "fixed_large", "clip_sample": False, "timestep_spacing": "trailing"},
    {"steps_offset": 1, "clip_sample": False, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
     "beta_end": 0.012},
])
def test_ddpm_stochastic_parity(cfg):
    a, _, xa = loop(diffusers.DDPMScheduler, cfg, 50, seed=3)
    b, _, xb = loop(ours.DDPMScheduler, cfg, 50, seed=3)
    assert rel(a, b) < RTOL
    assert rel(xa[-1], xb[-1]) < RTOL  # pred_original_sample too


@pytest.mark.parametrize("eta, cfg", [(1.0, {"clip_sample": False}), (0.5, {"set_alpha_to_one": False,
                                      "clip_sample": True, "timestep_spacing": "trailing"})])
def test_ddim_eta_parity(eta, cfg):
    a, _, _ = loop(diffusers.DDIMScheduler, cfg, 20, seed=5, eta=eta)
    b, _, _ = loop(ours.DDIMScheduler, cfg, 20, seed=5, eta=eta)
    assert rel(a, b) < RTOL


@pytest.mark.parametrize("order, K", [(1, 12), (2, 10), (2, 30)])
def test_dpm_solver_orders_parity(order, K):
    cfg = {"solver_order": order, "prediction_type": "v_prediction", "timestep_spacing": "trailing"}
    a, _, _ = loop(diffusers.DPMSolverMultistepScheduler, cfg, K)
    b, _, _ = loop(ours.DPMSolverMultistepScheduler, cfg, K)
    assert rel(a, b) < RTOL


def test_dpm_solver_third_order_uses_the_full_second_derivative_term():
    """solver_order=3 deliberately differs from diffusers: its multistep update uses half the x0'' term (D2), so it
    is only second order (tests/test_fast_samplers.py shows ours converging at third order or better). Both agree
    when the x0 history is linear in lambda (D2 = 0): here, a model whose x0 prediction is constant."""
    cfg = {"solver_order": 3, "prediction_type": "sample", "timestep_spacing": "trailing"}

    def run(cls, fn):
        sch = cls(**cfg)
        sch.set_timesteps(20)
        x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        for t in sch.timesteps:
            x = sch.step(fn(x, t), t, x).prev_sample
        return x

    const = lambda x, t: torch.full_like(x, 0.3)
    assert rel(run(diffusers.DPMSolverMultistepScheduler, const), run(ours.DPMSolverMultistepScheduler, const)) < RTOL
    curved = lambda x, t: torch.tanh(x) * (1 + float(t) / 500)
    assert rel(run(diffusers.DPMSolverMultistepScheduler, curved), run(ours.DPMSolverMultistepScheduler, curved)) > 1e-4


@pytest.mark.parametrize("name", ["DDIMScheduler", "DPMSolverMultistepScheduler", "EulerDiscreteScheduler"])
def test_zero_terminal_snr_v_prediction_parity(name):
    cfg = {"rescale_betas_zero_snr": True, "prediction_type": "v_prediction", "timestep_spacing": "trailing"}
    if name == "DDIMScheduler":
        cfg["clip_sample"] = False
    a, _, _ = loop(getattr(diffusers, name), cfg, 15)
    b, _, _ = loop(getattr(ours, name), cfg, 15)
    assert torch.isfinite(b).all()
    assert rel(a, b) < (2e-4 if name == "EulerDiscreteScheduler" else RTOL)


def test_euler_cosine_gap_is_diffusers_float32():
    """Replaying diffusers' Euler formula in float64 reproduces our result to 1e-10."""
    cfg = {"prediction_type": "v_prediction", "beta_schedule": "squaredcos_cap_v2", "timestep_spacing": "linspace"}
    ref = diffusers.EulerDiscreteScheduler(**cfg)
    ref.set_timesteps(10)
    sigmas = ours.EulerDiscreteScheduler(**cfg)
    sigmas.set_timesteps(10)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * sigmas.init_noise_sigma
    y = x.clone()
    for i, t in enumerate(sigmas.timesteps):
        s, s_next = float(sigmas.sigmas[i]), float(sigmas.sigmas[i + 1])
        v = model(y / math.sqrt(s**2 + 1), t)
        x0 = v * (-s / math.sqrt(s**2 + 1)) + y / (s**2 + 1)   # diffusers' v-prediction x0, in float64
        y = y + (y - x0) / s * (s_next - s)                    # diffusers' Euler update, in float64
    ours_out, _, _ = loop(ours.EulerDiscreteScheduler, cfg, 10)
    theirs, _, _ = loop(diffusers.EulerDiscreteScheduler, cfg, 10)
    assert rel(y, ours_out) < 1e-10
    assert rel(theirs, ours_out) > 1e-6  # the gap really is diffusers' float32 arithmetic
    assert abs(float(ref.init_noise_sigma) - sigmas.init_noise_sigma) < 1e-3 * sigmas.init_noise_sigma


@pytest.mark.parametrize("name", ["DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler"])
@pytest.mark.parametrize("beta", ["linear", "squaredcos_cap_v2"])
def test_add_noise_parity(name, beta):
    a, b = getattr(diffusers, name)(beta_schedule=beta), getattr(ours, name)(beta_schedule=beta)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(6, 3, 4, 4, generator=g, dtype=torch.float64), torch.randn(6, 3, 4, 4, generator=g,
                                                                                         dtype=torch.float64)
    t = torch.tensor([0, 1, 250, 500, 998, 999])
    if name == "DPMSolverMultistepScheduler":
        # diffusers' DPM-Solver looks the noise level up in its inference schedule (and before set_timesteps
        # pairs descending timesteps with ascending sigmas), so compare on scheduled timesteps
        a.set_timesteps(25)
        b.set_timesteps(25)
        t = a.timesteps[[0, 3, 12, 24, 24, 5]]
    assert rel(a.add_noise(x0, noise, t), b.add_noise(x0, noise, t)) < RTOL


def test_euler_add_noise_and_scale_parity():
    a, b = diffusers.EulerDiscreteScheduler(), ours.EulerDiscreteScheduler()
    a.set_timesteps(20)
    b.set_timesteps(20)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(3, 2, generator=g, dtype=torch.float64)
    t = a.timesteps[[0, 7, 19]]
    assert rel(a.add_noise(x0, noise, t), b.add_noise(x0, noise, t)) < RTOL
    for tt in t:
        a._step_index = None
        assert rel(a.scale_model_input(x0, tt), b.scale_model_input(x0, tt)) < RTOL


def test_from_config_round_trip_and_unsupported_keys():
    ref = diffusers.DPMSolverMultistepScheduler(beta_schedule="squaredcos_cap_v2", solver_order=3)
    s = ours.DPMSolverMultistepScheduler.from_config(ref.config)  # a full diffusers config, defaults and all
    assert s.config.solver_order == 3 and s.config["beta_schedule"] == "squaredcos_cap_v2"
    with pytest.raises(DiffkitError, match="does not support use_karras_sigmas=True"):
        ours.DPMSolverMultistepScheduler(use_karras_sigmas=True)
    with pytest.raises(DiffkitError, match="unknown prediction_type 'flow'"):
        ours.DDIMScheduler(prediction_type="flow")
    with pytest.raises(DiffkitError, match="unknown beta_schedule"):
        ours.DDPMScheduler(beta_schedule="quadratic")
    with pytest.raises(DiffkitError, match="num_inference_steps must be an integer from 1 to 1000"):
        ours.DDIMScheduler().set_timesteps(0)


def test_trained_betas_match_named_schedule():
    named = ours.DDIMScheduler(beta_schedule="linear")
    custom = ours.DDIMScheduler(trained_betas=torch.linspace(1e-4, 0.02, 1000).tolist())
    assert torch.allclose(named.alphas_cumprod, custom.alphas_cumprod, rtol=1e-6)


# --- save_pretrained / from_pretrained: diffusers' scheduler_config.json, both ways ------------------------------

SAVED = [("DDPMScheduler", {"beta_schedule": "scaled_linear", "prediction_type": "v_prediction", "clip_sample": False}),
         ("DDIMScheduler", {"beta_schedule": "scaled_linear", "steps_offset": 1, "set_alpha_to_one": False}),
         ("DPMSolverMultistepScheduler", {"beta_schedule": "squaredcos_cap_v2", "solver_order": 3}),
         ("EulerDiscreteScheduler", {"timestep_spacing": "trailing", "rescale_betas_zero_snr": True,
                                     "prediction_type": "v_prediction"})]


@pytest.mark.parametrize("name, kw", SAVED)
def test_saved_adapters_load_in_diffusers_and_back(tmp_path, name, kw):
    mine = getattr(ours, name)(**kw)
    path = mine.save_pretrained(tmp_path / "a")
    assert path.name == "scheduler_config.json"
    theirs = getattr(diffusers, name).from_pretrained(tmp_path / "a")
    for key, value in kw.items():
        assert theirs.config[key] == value, key
    torch.testing.assert_close(theirs.alphas_cumprod.double(), mine.alphas_cumprod.double(), rtol=1e-6, atol=1e-12)
    mine.set_timesteps(12)
    theirs.set_timesteps(12)
    assert mine.timesteps.tolist() == theirs.timesteps.round().long().tolist()
    theirs.save_pretrained(tmp_path / "b")  # diffusers' file, every key it writes, back into the adapter
    again = getattr(ours, name).from_pretrained(tmp_path, subfolder="b")
    assert {k: again.config[k] for k in kw} == kw
    again.set_timesteps(12)
    assert again.timesteps.tolist() == mine.timesteps.tolist()


def test_from_pretrained_refuses_a_missing_or_bad_config(tmp_path):
    with pytest.raises(DiffkitError, match="scheduler_config.json does not exist"):
        ours.DDIMScheduler.from_pretrained(tmp_path)
    (tmp_path / "scheduler_config.json").write_text("[1, 2]")
    with pytest.raises(DiffkitError, match="holds a JSON list"):
        ours.DDIMScheduler.from_pretrained(tmp_path)
    (tmp_path / "scheduler_config.json").write_text('{"beta_schedule": "sigmoid"}')
    with pytest.raises(DiffkitError, match="beta_schedule"):
        ours.DDIMScheduler.from_pretrained(tmp_path)
