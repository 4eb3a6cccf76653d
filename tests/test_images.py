"""The image stack: the U-Net, and every sampler (on the U-Net and the DiT), adapter, guidance, resume and determinism on [B, C, H, W]."""

from __future__ import annotations

import json

import pytest
import torch

from diffkit import Denoiser, NoiseSchedule
from diffkit import schedulers as adapters
from diffkit.cond import TokenConditioning
from diffkit.nn.dit import DiT, DiTConfig
from diffkit.nn.registry import build_network, network_from_dict, network_to_dict
from diffkit.nn.unet import UNet, UNetConfig
from diffkit.sampling import SAMPLERS, sample

TINY = {"channels": 8, "channel_mult": (1, 2), "groups": 4, "head_channels": 8}


def randomized(net, seed=0, std=0.05):
    """Every weight non-zero (the zero-initialised output layers included), so outputs depend on the input."""
    torch.manual_seed(seed)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=std)
    return net.eval()


# --- the U-Net ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("C, H, W", [(1, 8, 8), (3, 16, 12), (1, 13, 13), (3, 7, 9)])
def test_unet_keeps_the_image_shape_and_starts_at_zero(C, H, W):
    cfg = UNetConfig(in_channels=C, attention_levels=(1,), **{**TINY, "channel_mult": (1, 2, 2)})
    net = UNet(cfg)
    x, t = torch.randn(3, C, H, W), torch.tensor([0.0, 500.0, 999.0])
    assert torch.equal(net(x, t), torch.zeros(3, C, H, W))  # zero-initialised output conv
    out = randomized(net)(x, t)
    assert out.shape == (3, C, H, W) and out.abs().max() > 1e-3


def test_unet_reads_time_class_and_every_pixel():
    net = randomized(UNet(UNetConfig(num_classes=3, attention_levels=(1,), **TINY)))
    x = torch.randn(2, 1, 8, 8)
    t = torch.full((2,), 300.0)
    base = net(x, t, torch.tensor([0, 0]))
    assert (net(x, t + 200, torch.tensor([0, 0])) - base).abs().max() > 1e-4
    assert (net(x, t, torch.tensor([2, 2])) - base).abs().max() > 1e-4
    assert (net(x, t) - net(x, t, torch.tensor([3, 3]))).abs().max() == 0  # no cond = the null class 3
    # the receptive field covers the image: a change in one corner reaches the opposite one
    x2 = x.clone()
    x2[:, :, 0, 0] += 1.0
    assert (net(x2, t, torch.tensor([0, 0])) - base)[:, :, -1, -1].abs().max() > 1e-6
    # rows are independent (GroupNorm, not BatchNorm)
    torch.testing.assert_close(net(x[:1], t[:1], torch.tensor([0])), base[:1])


def test_unet_config_round_trips_through_the_registry():
    cfg = UNetConfig(in_channels=3, num_classes=4, attention_levels=(1,), **TINY)
    d = json.loads(json.dumps(network_to_dict(cfg)))
    assert d["kind"] == "unet" and network_from_dict(d) == cfg
    assert isinstance(build_network(network_from_dict(d)), UNet)


# --- every sampler and adapter on images ---------------------------------------------------------------

@pytest.fixture(scope="module", params=["unet", "dit"])
def image_denoiser(request):
    """The same tests on both image networks: a tiny U-Net and a tiny DiT."""
    if request.param == "unet":
        net = randomized(UNet(UNetConfig(in_channels=3, **TINY)), std=0.03)
    else:
        net = randomized(DiT(DiTConfig(in_channels=3, patch_size=2, width=16, depth=2, heads=2)), std=0.03)
    return Denoiser(net, NoiseSchedule.from_name("linear", 1000), "v", clip_x0=1.0)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_runs_on_images(image_denoiser, name):
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    steps = 4 if name != "ddpm" else 6
    with torch.no_grad():
        a = sample(image_denoiser, x, name, steps, generator=torch.Generator().manual_seed(1))
        b = sample(image_denoiser, x, name, steps, generator=torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.isfinite(a).all() and a.abs().max() < 5
    assert torch.equal(a, b)  # same seed, bitwise


@pytest.mark.parametrize("name", ["DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler", "EulerDiscreteScheduler"])
def test_every_adapter_runs_on_images(image_denoiser, name):
    net = image_denoiser.network
    s = getattr(adapters, name)(prediction_type="v_prediction")
    s.set_timesteps(5)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * s.init_noise_sigma
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in s.timesteps:
            out = net(s.scale_model_input(x, t), torch.full((2,), float(t)))
            x = s.step(out, t, x, generator=g).prev_sample
    assert x.shape == (2, 3, 8, 8) and torch.isfinite(x).all()


def test_ddim_adapter_equals_the_sampler_on_images(image_denoiser):
    """The adapter reuses the sampler's step math: a DDIM loop matches sample_ddim on the same grid (K divides T,
    so diffusers' previous timestep t - T // K is the grid's next time)."""
    from diffkit.sampling import sample_ddim

    net = image_denoiser.network
    s = adapters.DDIMScheduler(prediction_type="v_prediction", timestep_spacing="trailing", clip_sample=False)
    s.set_timesteps(5)
    x0 = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x = x0.clone()
    net64 = net.double()
    try:
        with torch.no_grad():
            for t in s.timesteps:
                x = s.step(net64(x, torch.full((2,), float(t), dtype=torch.float64)), t, x).prev_sample
            plain = Denoiser(net64, NoiseSchedule.from_name("linear", 1000), "v")
            ref = sample_ddim(plain, x0.clone(), s.timesteps.double())
    finally:
        net.float()
    torch.testing.assert_close(x, ref, rtol=1e-6, atol=1e-8)


# --- the Denoiser's contracts -----------------------------------------------------------------------------

def test_guidance_with_a_token_cond_dict():
    """A text-style cond (token embeddings + padding mask) goes through guidance without any change."""
    seen = []

    def net(x, t, cond):
        seen.append({k: v.shape for k, v in cond.items()})
        masked = (cond["tokens"] * cond["mask"][..., None]).sum(1)  # [B, D]
        return x + masked[:, :1, None, None] if x.dim() == 4 else x + masked[:, :x.shape[1]]

    null = TokenConditioning(torch.zeros(3, 4), torch.tensor([True, False, False]))
    d = Denoiser(net, NoiseSchedule.from_name("linear", 1000), "epsilon", conditioning=null, guidance_scale=3.0)
    x = torch.randn(5, 1, 4, 4)
    cond = {"tokens": torch.randn(5, 3, 4), "mask": torch.tensor([[True, True, False]] * 5)}
    eps, _x0 = d(x, 500.0, cond)
    assert seen == [{"tokens": (10, 3, 4), "mask": (10, 3)}]  # one batched call: cond and null
    plain = Denoiser(net, d.schedule, "epsilon")
    eps_c, _ = plain(x, 500.0, cond)
    eps_u, _ = plain(x, 500.0, null.null(cond))
    torch.testing.assert_close(eps, eps_u + 3.0 * (eps_c - eps_u))


def test_denoiser_keeps_gradients_time_dtype_and_device():
    times = []

    def net(x, t, cond=None):
        times.append(t)
        return x * 0.5

    d = Denoiser(net, NoiseSchedule.from_name("linear", 1000), "epsilon")
    x = torch.randn(2, 1, 4, 4, requires_grad=True)
    eps, x0 = d(x, 999.0)
    x0.sum().backward()  # not under no_grad: gradients reach x
    assert x.grad is not None and x.grad.abs().sum() > 0
    d(torch.randn(2, 1, 4, 4, dtype=torch.bfloat16), 999.0)
    assert times[-1].dtype == torch.float32 and float(times[-1][0]) == 999.0  # bf16 would round 999 to 1000
    eps, x0 = d(torch.randn(2, 1, 4, 4, device="meta"), 500.0)  # no CPU-only call on the way
    assert eps.device.type == "meta" and x0.device.type == "meta" and times[-1].device.type == "meta"


def test_sampling_path_runs_on_the_meta_device_and_in_bfloat16():
    net = UNet(UNetConfig(**TINY)).to("meta")
    d = Denoiser(net, NoiseSchedule.from_name("linear", 1000), "v", clip_x0=1.0)
    with torch.no_grad():
        out = sample(d, torch.empty(2, 1, 8, 8, device="meta"), "dpmpp-2m", 4)
    assert out.device.type == "meta" and out.shape == (2, 1, 8, 8)
    bf = randomized(UNet(UNetConfig(**TINY))).to(torch.bfloat16)
    d = Denoiser(bf, d.schedule, "v", clip_x0=1.0)
    with torch.no_grad():
        out = sample(d, torch.randn(2, 1, 8, 8, dtype=torch.bfloat16), "ddim", 4)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_guidance_interval_guides_only_inside_it():
    """Kynkaanniemi et al. 2024: w applies for sigma_ve in (lo, hi]; the plain conditional model elsewhere."""
    from diffkit.cond import ClassConditioning

    def net(x, t, cond):
        return x * 0.1 + cond[:, None, None, None].to(x.dtype)

    schedule = NoiseSchedule.from_name("linear", 1000)
    base = Denoiser(net, schedule, "epsilon", conditioning=ClassConditioning(3))
    guided = base.replace(guidance_scale=4.0)
    limited = guided.replace(guidance_interval=(0.2, 1.0))
    x, cond = torch.randn(3, 1, 4, 4), torch.tensor([0, 1, 2])
    sigma = lambda t: float(((1 - schedule.alpha_bar_at([t])) / schedule.alpha_bar_at([t])).sqrt())
    inside = next(t for t in range(1000) if 0.2 < sigma(t) <= 1.0)
    for t, expect in ((inside, guided), (999, base), (0, base)):
        torch.testing.assert_close(limited(x, float(t), cond)[0], expect(x, float(t), cond)[0])
    assert (guided(x, 999.0, cond)[0] - base(x, 999.0, cond)[0]).abs().max() > 0.1
    # per-row times: per-row scales
    ts = torch.tensor([float(inside), 999.0, 0.0])
    eps = limited(x, ts, cond)[0]
    for i, expect in enumerate((guided, base, base)):
        torch.testing.assert_close(eps[i], expect(x[i:i + 1], ts[i:i + 1], cond[i:i + 1])[0][0])
    with pytest.raises(Exception, match="guidance interval"):
        guided.replace(guidance_interval=(1.0, 0.5))


def test_per_row_guidance_scales_follow_the_chunks():
    from diffkit.cond import ClassConditioning

    def net(x, t, cond):
        return x * 0.1 + cond[:, None, None, None].to(x.dtype)

    d = Denoiser(net, NoiseSchedule.from_name("linear", 1000), "epsilon", conditioning=ClassConditioning(3),
                 guidance_scale=4.0, guidance_interval=(0.2, 1.0))
    x, cond = torch.randn(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1])
    ts = torch.tensor([150.0, 999.0, 0.0, 150.0, 600.0])
    torch.testing.assert_close(d.replace(chunk=2)(x, ts, cond)[0], d(x, ts, cond)[0])


def test_unet_heads_divide_any_width_and_odd_widths_are_refused():
    from diffkit.errors import ConfigError

    net = UNet(UNetConfig(channels=50, channel_mult=(1, 2), attention_levels=(1,), groups=5))  # 100 channels, 3 -> 2 heads
    assert net(torch.randn(1, 1, 8, 8), torch.tensor([3.0])).shape == (1, 1, 8, 8)
    with pytest.raises(ConfigError, match="even"):
        UNetConfig(channels=33).check()
    with pytest.raises(ConfigError, match="positive"):
        UNetConfig(head_channels=0).check()
