"""The flow and EDM paths: their math, the parametrizations' conversions, that training and sampling show the
network the same (x, t), and that flow and edm runs train, sample and resume like ddpm runs."""

import contextlib
import io
import math
import shutil

import numpy as np
import pytest
import torch

from diffkit import Denoiser
from diffkit.config import RunConfig
from diffkit.data.images import load_images
from diffkit.data.points import make_dataset
from diffkit.errors import ConfigError
from diffkit.metrics.points import energy_distance
from diffkit.path import EDMPath, FlowPath, shift_time, unshift_time
from diffkit.prediction import target_on_path, to_eps_x0_on_path
from diffkit.runs import load_run, sample_run, train_config, train_run
from diffkit.runs.presets import default_objective
from diffkit.schedule import NoiseSchedule
from diffkit.training.objectives import PathObjective, objective_for

F64 = torch.float64


@pytest.mark.parametrize("shift", [1.0, 3.0, 0.5])
def test_flow_path_ends_shift_and_inverse(shift):
    path = FlowPath(1000, shift)
    assert float(path.tau(-1)) == 0.0 and float(path.tau(999)) == pytest.approx(1.0)
    assert path.zero_terminal_snr and float(path.alpha_bar_at([999])[0]) == 0.0
    u = torch.linspace(0.01, 0.99, 50, dtype=F64)
    assert torch.allclose(unshift_time(shift_time(u, shift), shift), u, atol=1e-12)
    t = torch.linspace(0, 998, 37, dtype=F64)
    abar = path.alpha_bar_at(t)
    assert torch.allclose(path.t_at_log_snr(torch.log(abar / (1 - abar))), t, atol=1e-6)
    # the table at the integers is the closed form, and alpha_bar = alpha^2 / (alpha^2 + sigma^2)
    ints = torch.arange(0, 999, dtype=F64)
    assert torch.allclose(path.alphas_cumprod[:-1], path.alpha_bar_at(ints), rtol=1e-12)
    a, s = path.path_scales(ints)
    assert torch.allclose(a + s, torch.ones_like(a)) and torch.allclose(s, shift_time((ints + 1) / 1000, shift))


def test_edm_path_is_log_uniform_and_inverts():
    path = EDMPath(1000, 0.002, 80.0, 0.5)
    assert float(path.sigma_at(0)) == pytest.approx(0.002) and float(path.sigma_at(999)) == pytest.approx(80.0)
    assert float(path.sigma_at(-1)) == 0.0
    sig = torch.tensor([0.01, 0.3, 1.0, 7.0, 60.0], dtype=F64)
    assert torch.allclose(path.sigma_at(path.t_at_sigma(sig)), sig, rtol=1e-10)
    lam = -2 * torch.log(sig)
    assert torch.allclose(path.t_at_log_snr(lam), path.t_at_sigma(sig), atol=1e-9)
    assert not path.zero_terminal_snr


@pytest.mark.parametrize("prediction", ["flow", "edm", "x0", "epsilon"])
def test_conversions_invert_the_targets(prediction):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(64, 3, generator=g, dtype=F64), torch.randn(64, 3, generator=g, dtype=F64)
    if prediction in ("flow", "x0"):
        sigma = torch.rand(64, 1, generator=g, dtype=F64) * 0.98 + 0.01
        alpha = 1 - sigma
    else:
        sigma = torch.exp(torch.randn(64, 1, generator=g, dtype=F64))
        alpha = torch.ones_like(sigma)
    x = alpha * x0 + sigma * eps
    out = target_on_path(prediction, x0, eps, x, sigma, 0.5)
    eps_hat, x0_hat = to_eps_x0_on_path(prediction, out, x, alpha, sigma, 0.5)
    assert torch.allclose(eps_hat, eps, atol=1e-9) and torch.allclose(x0_hat, x0, atol=1e-9)


class Spy(torch.nn.Module):
    """Returns the exact target for known (x0, eps): records what it was shown."""

    def __init__(self, x0, eps, prediction, path):
        super().__init__()
        self.x0, self.eps, self.prediction, self.path, self.seen = x0, eps, prediction, path, []

    def forward(self, x_in, t, cond=None):
        self.seen.append((x_in.clone(), t.clone()))
        if self.path.path == "flow":
            tau = t.double() / 1000
            sigma, c_in = tau.reshape(-1, 1), 1.0
        else:
            sigma = self.path.sigma_at(t.double()).reshape(-1, 1)
            c_in = 1 / torch.sqrt(sigma**2 + self.path.sigma_data**2)
        x = x_in.double() / c_in
        return target_on_path(self.prediction, self.x0, self.eps, x, sigma, getattr(self.path, "sigma_data", None))


@pytest.mark.parametrize("objective,prediction", [("flow", "flow"), ("edm", "edm"), ("flow", "x0")])
def test_the_denoiser_shows_the_network_what_training_showed_it(objective, prediction):
    """For a draw of the training objective, the Denoiser at the same level, given the samplers' VP view of the
    same x, calls the network with the same input and time, and turns the exact target into (eps, x0)."""
    cfg = train_config({"data": "spiral", "objective": objective, "prediction": prediction})
    path, g = cfg.path(), torch.Generator().manual_seed(3)
    obj = PathObjective(cfg, path)
    alpha, sigma, t_net, c_in, eps = obj.draw(16, (2,), g)
    eps = eps.double()
    x0 = torch.randn(16, 2, generator=g, dtype=F64)
    keep = (t_net > 1) & (t_net < 998) if objective == "flow" else (sigma > 0.003) & (sigma < 70)
    x = alpha[:, None] * x0 + sigma[:, None] * eps
    t = path.t_at_tau(sigma) if objective == "flow" else path.t_at_sigma(sigma)
    spy = Spy(x0, eps, prediction, path)
    den = Denoiser(spy, path, prediction)
    x_vp = x / torch.sqrt(alpha**2 + sigma**2)[:, None]
    eps_hat, x0_hat = den(x_vp, t, None)
    x_in, t_seen = spy.seen[-1]
    assert torch.allclose(t_seen[keep].double(), t_net[keep], rtol=1e-9)
    assert torch.allclose(x_in[keep], (c_in[:, None] * x)[keep], rtol=1e-9)
    assert torch.allclose(eps_hat[keep], eps[keep], atol=1e-8) and torch.allclose(x0_hat[keep], x0[keep], atol=1e-8)


def _energy(x, seed):
    ref = make_dataset("spiral", 3000, seed=seed)
    return energy_distance(x[:3000], ref)


@pytest.fixture(scope="module")
def path_runs(tmp_path_factory):
    root, runs = tmp_path_factory.mktemp("paths"), {}
    for objective in ("flow", "edm"):
        cfg = train_config({"data": "spiral", "objective": objective, "steps": 1500, "seed": 0, "precision": "fp32",
                            "threads": 1, "checkpoint_every": 500})
        with contextlib.redirect_stderr(io.StringIO()):
            train_run(cfg, root / objective, progress=False)
        runs[objective] = root / objective
    return runs


@pytest.mark.parametrize("objective", ["flow", "edm"])
def test_flow_and_edm_runs_learn_the_spiral(path_runs, objective):
    """Every sampler family runs on the path; at 20 dpmpp-2m steps the samples sit close to the data (an
    untrained network gives an energy distance near 1; the data against itself about 1e-3 at n = 3000)."""
    run = load_run(path_runs[objective])
    assert run.config.objective.name == objective and run.config.prediction == objective
    floor = energy_distance(make_dataset("spiral", 3000, seed=11), make_dataset("spiral", 3000, seed=12))
    for sampler, steps, bound in (("dpmpp-2m", 20, 0.01), ("ddim", 20, 0.02), ("euler", 30, 0.02),
                                  ("heun", 10, 0.05), ("ddpm", 200, 0.05)):
        e = _energy(sample_run(run, 3000, sampler, steps, seed=1), seed=5)
        assert e < bound, (sampler, e, floor)


def test_an_interrupted_flow_run_resumes_to_the_same_bits(path_runs, tmp_path):
    run = tmp_path / "flow"
    shutil.copytree(path_runs["flow"], run)
    steps = sorted(p.name for p in (run / "train_state").iterdir())
    shutil.rmtree(run / "train_state" / steps[-1])  # as if killed after the checkpoint before the last
    with contextlib.redirect_stderr(io.StringIO()):
        train_run(None, run, resume=True, progress=False)
    assert (run / "model.safetensors").read_bytes() == (path_runs["flow"] / "model.safetensors").read_bytes()


def test_flow_sampling_with_ddim_is_the_flow_euler_step():
    """On the linear path a DDIM step (x' = alpha' x0_hat + sigma' eps_hat) is x + (tau' - tau) u."""
    path = FlowPath(1000, 2.0)
    g = torch.Generator().manual_seed(0)
    x, u = torch.randn(8, 2, generator=g, dtype=F64), torch.randn(8, 2, generator=g, dtype=F64)
    tau, tau2 = 0.7, 0.4
    eps_hat, x0_hat = to_eps_x0_on_path("flow", u, x, 1 - tau, tau)
    assert torch.allclose((1 - tau2) * x0_hat + tau2 * eps_hat, x + (tau2 - tau) * u, atol=1e-12)
    assert math.isclose(float(path.tau(path.t_at_tau(torch.tensor([tau], dtype=F64)))), tau, rel_tol=1e-12)
    assert np.isfinite(path.log_snr[:-1].numpy()).all()


def test_training_times_on_the_log_snr_axis():
    """Each objective's draws on lambda = log(alpha^2 / sigma^2): flow logit-normal(0, 1) gives lambda = -2u, so
    N(0, 4); EDM's ln sigma ~ N(-1.2, 1.2^2) gives lambda ~ N(2.4, 2.4^2); ddpm's uniform steps of the linear
    schedule span its table's ends."""
    g = torch.Generator().manual_seed(0)
    flow = objective_for(train_config({"data": "spiral", "objective": "flow"}),
                         FlowPath(1000, 1.0)).log_snr(200_000, g).numpy()
    assert abs(flow.mean()) < 0.02 and abs(flow.std() - 2.0) < 0.02
    edm_cfg = train_config({"data": "spiral", "objective": "edm"})
    edm = objective_for(edm_cfg, edm_cfg.path()).log_snr(200_000, g).numpy()
    assert abs(edm.mean() - 2.4) < 0.03 and abs(edm.std() - 2.4) < 0.03
    sched = NoiseSchedule.from_name("linear", 1000)
    lam = objective_for(RunConfig(), sched).log_snr(50_000, g).numpy()
    table = sched.log_snr
    assert lam.max() <= float(table.max()) + 1e-9 and lam.min() >= float(table.min()) - 1e-9
    assert lam.max() > 8 and lam.min() < -9  # the linear schedule's uniform steps reach both ends


def test_edm_sigma_data_is_the_pixels_std():
    """On pixels EDM's sigma_data is the training images' std in [-1, 1] (digits: 0.75), not a fixed 0.5."""
    cfg = train_config({"data": "digits", "objective": "edm"})
    std = float((load_images("digits").train * 2 - 1).std())
    assert abs(cfg.objective.sigma_data - std) < 1e-3 and 0.7 < std < 0.8
    assert train_config({"data": "spiral", "objective": "edm"}).objective.sigma_data == 1.0


def test_each_image_set_gets_its_measured_objective():
    """mnist5k's pixels default to flow matching (logit-normal times), its measured winner; a ddpm flag without
    --objective picks ddpm; latent and text runs and the other sets stay ddpm; the default equals the explicit
    flags, so a run made either way is the same run."""
    flow = train_config({"data": "mnist5k", "cond": True})
    explicit = train_config({"data": "mnist5k", "cond": True, "objective": "flow", "time_dist": "logit-normal"})
    assert (flow.objective.name, flow.objective.time_dist, flow.prediction) == ("flow", "logit-normal", "flow")
    assert flow.to_dict() == explicit.to_dict()
    assert abs(flow.objective.sigma_data - float((load_images("mnist5k").train * 2 - 1).std())) < 1e-3
    by_schedule = train_config({"data": "mnist5k", "cond": True, "schedule": "linear"})
    assert by_schedule.objective.name == "ddpm" and by_schedule.schedule.name == "linear"
    ddpm = train_config({"data": "mnist5k", "cond": True, "objective": "ddpm"})
    assert ddpm.objective.name == "ddpm" and ddpm.schedule.name == "cosine"  # the image preset's schedule kept
    assert train_config({"data": "digits", "cond": True}).objective.name == "ddpm"
    assert default_objective("mnist5k", latent=True) == default_objective("mnist5k", text=True) == "ddpm"
    with pytest.raises(ConfigError, match="mnist5k's default; it takes flow, x0 .or give --objective ddpm"):
        train_config({"data": "mnist5k", "cond": True, "prediction": "epsilon"})


def test_shapes_default_is_flow_with_its_measured_times_on_the_four_level_unet():
    """shapes' default run: flow with logit-normal times centred at 0.25 (presets.IMAGE_TIME_LOC) and the loss's
    foreground weight 4 at tau in [0.4, 0.8], guided in (0.2, 3], the same with --objective flow (edm: none of
    them); a time flag changes only what it names, another distribution drops the preset's centre; the 32x32 U-Net
    has four levels with attention at 16, 8 and 4 px, and 28x28 keeps three."""
    shapes = train_config({"data": "shapes", "cond": True})
    o = shapes.objective
    assert (o.name, o.time_dist, o.time_loc, o.time_scale) == ("flow", "logit-normal", 0.25, None)
    assert (o.foreground_weight, o.foreground_band) == (4.0, (0.4, 0.8))  # presets.IMAGE_FOREGROUND_WEIGHT
    assert shapes.sampling.guidance_interval == (0.2, 3.0)  # presets.OWN_GUIDANCE_INTERVAL
    assert shapes.to_dict() == train_config({"data": "shapes", "cond": True, "objective": "flow"}).to_dict()
    assert (shapes.network.channel_mult, shapes.network.attention_levels) == ((1, 1, 2, 2), (1, 2, 3))
    assert shapes.train.steps == 750
    scaled = train_config({"data": "shapes", "cond": True, "time_scale": 0.8}).objective
    assert (scaled.time_loc, scaled.time_scale) == (0.25, 0.8)
    assert train_config({"data": "shapes", "cond": True, "time_loc": 0.0}).objective.time_loc == 0.0
    uniform = train_config({"data": "shapes", "cond": True, "time_dist": "uniform"}).objective
    assert (uniform.time_dist, uniform.time_loc) == ("uniform", None)
    edm = train_config({"data": "shapes", "cond": True, "objective": "edm"}).objective
    assert edm.time_loc is None and edm.foreground_weight == 0.0
    assert train_config({"data": "shapes", "cond": True, "objective": "edm"}).sampling.guidance_interval == (0.2, 1.0)
    off = train_config({"data": "shapes", "cond": True, "foreground_weight": 0.0}).objective
    assert (off.foreground_weight, off.time_loc) == (0.0, 0.25)
    assert train_config({"data": "shapes", "cond": True, "foreground_band": (0.3, 0.8)}).objective.foreground_band \
        == (0.3, 0.8)
    assert train_config({"data": "mnist5k", "cond": True}).objective.foreground_weight == 0.0
    assert train_config({"data": "shapes64", "cond": True}).network.attention_levels == (2, 3)
    assert train_config({"data": "shapes", "text": "minilm", "pixel": True}).objective.name == "ddpm"
    mnist = train_config({"data": "mnist5k", "cond": True})
    assert (mnist.network.channel_mult, mnist.objective.time_loc) == ((1, 1, 2), None)
