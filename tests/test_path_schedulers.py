"""diffkit's FlowMatchEulerDiscreteScheduler and EDMEulerScheduler against diffusers' own, step by step over whole
trajectories, with a model whose output depends on x and t (so a wrong timestep or input scale shows)."""

import diffusers  # the test extra (make test installs it): a missing one fails, never skips
import pytest
import torch

from diffkit import path_schedulers as ours
from diffkit.errors import DiffkitError


def model(x, t):
    t = torch.as_tensor(t, dtype=torch.float32)
    return 0.7 * x - 0.2 * torch.sin(0.01 * t) * x.flip(-1) + 0.05 * torch.cos(t)


def trajectory(scheduler, steps, x, scale_input):
    scheduler.set_timesteps(steps)
    out = [x]
    for t in scheduler.timesteps:
        inp = scheduler.scale_model_input(x, t) if scale_input else x
        x = scheduler.step(model(inp, t), t, x).prev_sample
        out.append(x)
    return torch.stack(out), scheduler.timesteps


def max_rel(a, b):
    """The largest error of any step's state, relative to that state's size (max norm)."""
    a, b = a.double().reshape(len(a), -1), b.double().reshape(len(b), -1)
    return float(((a - b).abs().amax(1) / b.abs().amax(1)).max())


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("steps", [4, 10, 28])
def test_flow_match_euler_matches_diffusers(shift, steps):
    x = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    theirs, t_theirs = trajectory(diffusers.FlowMatchEulerDiscreteScheduler(shift=shift), steps, x, False)
    mine, t_mine = trajectory(ours.FlowMatchEulerDiscreteScheduler(shift=shift), steps, x, False)
    assert max_rel(t_mine, t_theirs) <= 1e-6
    assert max_rel(mine, theirs) <= 1e-5
    noise, t = torch.randn_like(x), t_theirs[steps // 2]
    a, b = ours.FlowMatchEulerDiscreteScheduler(shift=shift), diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    a.set_timesteps(steps)
    b.set_timesteps(steps)
    assert max_rel(a.scale_noise(x, t, noise)[None], b.scale_noise(x, t.reshape(1), noise)[None]) <= 1e-6


@pytest.mark.parametrize("steps,kw", [(4, {}), (10, {"sigma_data": 1.0}), (25, {"final_sigmas_type": "sigma_min"}),
                                      (12, {"prediction_type": "v_prediction", "sigma_max": 20.0})])
def test_edm_euler_matches_diffusers(steps, kw):
    x = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1)) * 80.0
    theirs, t_theirs = trajectory(diffusers.EDMEulerScheduler(**kw), steps, x, True)
    mine, t_mine = trajectory(ours.EDMEulerScheduler(**kw), steps, x, True)
    assert max_rel(t_mine, t_theirs) <= 1e-6
    assert max_rel(mine, theirs) <= 1e-5
    assert ours.EDMEulerScheduler(**kw).init_noise_sigma == pytest.approx(diffusers.EDMEulerScheduler(**kw).init_noise_sigma)


def test_flow_scheduler_refuses_what_it_does_not_support():
    with pytest.raises(DiffkitError, match="shift"):
        ours.FlowMatchEulerDiscreteScheduler(shift=0.0)
    with pytest.raises(DiffkitError, match="use_karras_sigmas"):
        ours.FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True)
    with pytest.raises(DiffkitError, match="sigma_schedule"):
        ours.EDMEulerScheduler(sigma_schedule="exponential")
