"""The score view's entry points: sampling an oracle, the oracle of a trained run, the model's score error per t,
and likelihoods of held-out data in the data's own units (nats per point, or bits per dimension for images).
Thin over diffkit.oracle and diffkit.likelihood, as pipeline.py is over the samplers.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..cond import check_guidance_target, class_id, null_untrained
from ..data.images import is_image_spec, load_images
from ..data.mixture import BUILTIN_MIXTURES, GaussianMixture, load_mixture
from ..data.normalize import Normalizer
from ..data.points import PointSource, check_spec
from ..devices import module_device
from ..errors import ConfigError, DataError
from ..likelihood import elbo, ode_nll
from ..oracle import OracleDenoiser
from ..path import path_for
from ..sampling import SAMPLER_TABLE, make_grid
from ..sampling import sample as run_sampler
from ..straightness import linear_view, straightness_of
from ..training.objectives import objective_for
from .pipeline import Run, check_sample_memory, conditioning, load_run

MAX_NLL_POINTS = 100_000


def mixture_normalizer(mix: GaussianMixture) -> Normalizer:
    """What Normalizer.fit would find on endless data of the mixture: its exact mean and std per dimension."""
    mean, std = mix.moments()
    return Normalizer(mean=mean.tolist(), std=np.where(std > 0, std, 1.0).tolist())


def sample_oracle(spec: str, n: int, sampler: str = "ddim", steps: int | None = None, *, schedule: str = "linear",
                  num_timesteps: int = 1000, seed: int = 0, spacing: str | None = None, cls=None,
                  guidance: float | None = None, callback=None, objective: str = "ddpm", shift: float = 1.0,
                  **options) -> np.ndarray:
    """n samples float32 [n, D] of a sampler run on the exact denoiser of a mixture (pure discretisation
    error), in the mixture's coordinates. The diffusion runs on the mixture standardized by its exact
    moments, as a trained run would see its data. cls: a class of a labelled mixture (guidance needs one).
    objective: the path it runs on (ddpm: the VP `schedule`; flow with its `shift`; edm)."""
    mix = load_mixture(spec)
    norm = mixture_normalizer(mix)
    if shift != 1.0 and objective != "flow":
        raise ConfigError(f"--shift shifts a flow's times; the {objective} path has none")
    if objective != "ddpm" and schedule != "linear":
        raise ConfigError(f"--schedule chooses a ddpm schedule; the {objective} path has its own")
    oracle = OracleDenoiser(mix.affine(np.asarray(norm.mean), np.asarray(norm.std)),
                            path_for(objective, schedule=schedule, num_timesteps=num_timesteps, shift=shift))
    labels = None
    if cls is not None:
        if not mix.num_classes:
            raise ConfigError(f"the mixture {spec} has no labels, so it has no classes to sample; drop --class")
        labels = torch.full((n,), class_id(cls, [str(c) for c in range(mix.num_classes)], mix.num_classes,
                                           owner=f"the mixture {spec}"))
    check_guidance_target(labels, guidance)
    if guidance is not None:
        oracle = oracle.replace(guidance_scale=guidance)
    check_sample_memory(n, (mix.dim,))
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn((n, mix.dim), generator=g, dtype=torch.float64)
    x = run_sampler(oracle, x_T, sampler, steps, spacing, generator=g, callback=callback, cond=labels, **options)
    return norm.invert(x.numpy())


def run_mixture(run: Run) -> GaussianMixture | None:
    """The mixture a point run was trained on (gaussians8 or a mixture .json), or None."""
    spec = run.config.data.spec
    if run.config.fitted.kind != "points":
        return None
    if spec in BUILTIN_MIXTURES:
        return BUILTIN_MIXTURES[spec]()
    if Path(spec).suffix.lower() == ".json" and Path(spec).is_file():
        return load_mixture(spec)
    return None


def run_oracle(run: Run) -> OracleDenoiser | None:
    """The exact denoiser of a run's data in the run's coordinates and schedule, when its data has one."""
    mix = run_mixture(run)
    return None if mix is None else OracleDenoiser.for_run(mix, run)


@torch.no_grad()
def score_error(denoiser, oracle: OracleDenoiser, x0: torch.Tensor, ts, *, generator=None, cond=None) -> np.ndarray:
    """E ||eps_hat - eps_exact||^2 = sigma_t^2 E ||s_theta - s_true||^2 at each t of ts, over x_t ~ q(x_t | x0)
    for the given x0 [N, D] (model coordinates); float64 [len(ts)]. The weight sigma_t^2 is the one under which
    the training loss is the score-matching loss (Vincent 2011; Song et al. 2021, eq. 7)."""
    out = []
    for t in ts:
        ab = denoiser.schedule.alpha_bar_at([float(t)])[0]
        eps = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
        x_t = (ab.sqrt() * x0.double() + (1 - ab).sqrt() * eps)
        eps_model, _ = denoiser(x_t.float(), float(t), cond)
        eps_true = oracle.network.exact(x_t, torch.tensor([float(t)]), cond)["eps"]
        out.append(float(((eps_model.double() - eps_true) ** 2).sum(1).mean()))
    return np.array(out)


def likelihood_model(run: Run):
    """A run's Denoiser as its likelihood sees it: unguided (cond None is the null class), unclipped, on the
    plain network (not a sampling fast path: the ODE differentiates through it), weights frozen."""
    if isinstance(run.network, torch.nn.Module):
        run.network.requires_grad_(False)
    return run.denoiser.replace(network=run.network, chunk=None, guidance_scale=1.0, clip_x0=None)


def _quantize(x: np.ndarray, generator: torch.Generator) -> np.ndarray:
    """8-bit pixels q = round(255 x), uniformly dequantized: (q + u) / 256, u ~ U[0, 1) (Theis et al. 2016)."""
    q = np.round(np.clip(x, 0.0, 1.0) * 255.0)
    u = torch.rand(x.shape, generator=generator, dtype=torch.float64).numpy()
    return (q + u) / 256.0


def nll_run(run: Run | str | Path, data: str | None = None, *, n: int = 2000, seed: int = 0, rtol: float = 1e-5,
            atol: float = 1e-5, hutchinson: int | None = None, strata: int | None = None, ode: bool = True,
            progress=None) -> dict:
    """Likelihood of held-out data under a run: probability-flow ODE NLL and the negative ELBO, with standard
    errors over the points, in the data's own coordinates (the normalizer's Jacobian included).

    Points: nats per point on n fresh draws (built-ins and mixtures) or n points of a file. Images: bits per
    dimension on up to n test images, 8-bit pixels uniformly dequantized. A conditional run is scored as the
    unconditional model (the null class), i.e. log p(x), not log p(x | class).
    strata: ELBO terms evaluated per point (default T - 1 for points, 100 for images: one t per stratum).
    hutchinson: probes of the divergence estimate (default: exact up to 16 dimensions, 1 probe above).
    Returns {"nll_ode", "nll_ode_se", "nll_elbo", "nll_elbo_se", "unit", "n", "probes", "elbo_strata",
    "elbo_terms" (mean per term: L_0, the strata, L_T), "elbo_t" (first / last t of each stratum), "nfe"}."""
    if not isinstance(run, Run):
        run = load_run(run)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 < n <= MAX_NLL_POINTS:
        raise ConfigError(f"the likelihood needs 2..{MAX_NLL_POINTS} points, got {n!r}")
    if null_untrained(run.config):
        raise ConfigError("this run was trained with p_uncond 0, so its unconditional model (the null class) never "
                          "trained and log p(x) would be meaningless; score a run trained with --p-uncond > 0")
    if run.config.fitted.kind == "latents":
        raise ConfigError("this run diffuses a VAE's latents, so its likelihood would be of latents, not of "
                          "images; score a pixel-space run")
    images = run.config.fitted.is_images
    spec = data or run.config.data.spec
    g = torch.Generator().manual_seed(seed)
    if images:
        if not is_image_spec(spec):
            raise DataError(f"{spec} is not image data, but the run models {run.config.fitted.shape} images")
        test = load_images(spec).test
        x = _quantize(test[np.random.default_rng(seed).permutation(len(test))[:n]], g)
        if list(x.shape[1:]) != list(run.config.fitted.shape):
            raise DataError(f"{spec} holds images of shape {list(x.shape[1:])}; the run models {run.config.fitted.shape}")
    else:
        if is_image_spec(spec):
            raise DataError(f"{spec} is image data, but the run models {run.config.fitted.shape[0]}-D points")
        x = PointSource(check_spec(spec)).fresh(n, seed)
        if x.shape[1] != run.config.fitted.shape[0]:
            raise DataError(f"{spec} holds {x.shape[1]}-D points; the run models {run.config.fitted.shape[0]}-D points")
    norm = run.normalizer
    z = torch.from_numpy(norm.apply(x).astype(np.float64)).to(module_device(run.network))
    strata = strata or (run.denoiser.schedule.num_timesteps - 1 if not images else 100)
    model = likelihood_model(run)
    D = int(np.prod(x.shape[1:]))
    log_jac = float(np.sum(np.log(np.broadcast_to(norm.std, x.shape[1:]))))  # -log p_x = -log p_z + sum log std
    offset = log_jac + (D * math.log(256) if images else 0.0)  # images: P(q) >= 256^-D p_y((q + u) / 256)
    scale = 1.0 / (D * math.log(2)) if images else 1.0

    def to_unit(v):
        return (v + offset) * scale

    out = {"unit": "bits/dim" if images else "nats/point", "n": len(x), "probes": None, "elbo_strata": strata}
    if ode:
        r = ode_nll(model, z, rtol=rtol, atol=atol, hutchinson=hutchinson, generator=g,
                    progress=None if progress is None else (lambda f: progress("ode", f)))
        v = to_unit(r["nll"])
        out.update(nll_ode=float(v.mean()), nll_ode_se=float(v.std(ddof=1) / math.sqrt(len(v))), nfe=r["nfe"],
                   probes=r["probes"])
    e = elbo(model, z, strata=strata, generator=g, progress=None if progress is None else (lambda f: progress("elbo", f)))
    v = to_unit(e["nll"])
    terms = e["terms"].mean(0) * scale
    terms[0] += offset * scale  # the change of units sits in L_0, so the terms still sum to the bound
    out.update(nll_elbo=float(v.mean()), nll_elbo_se=float(v.std(ddof=1) / math.sqrt(len(v))),
               elbo_terms=terms.tolist(), elbo_t=e["t"].tolist())
    return out


def trajectories_run(run: Run | str | Path, n: int = 2000, sampler: str = "ddim", steps: int | None = None, *,
                     seed: int = 0, cls=None, prompt: str | None = None) -> dict:
    """A run's ODE trajectories from n noises (x_T ~ N(0, I) from seed, so runs of one data shape share them), in
    the linear path's coordinates (straightness.py): tau [K + 1] and z [K + 1, n, ...] (numpy, the run's normalized
    units), each trajectory's S [n], and the network calls; a conditional run unguided on class cls or, for a text
    run, on prompt (None: the null class or prompt)."""
    if not isinstance(run, Run):
        run = load_run(run)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 < n <= MAX_NLL_POINTS:
        raise ConfigError(f"straightness is averaged over 2..{MAX_NLL_POINTS} trajectories, got {n!r}")
    steps = steps or (20 if sampler.startswith("dpmpp") else 100)
    check_sample_memory(n, run.config.fitted.shape)
    g = torch.Generator().manual_seed(seed)
    device = module_device(run.network)
    labels = conditioning(run.config, cls, prompt, n, None, device)[0]
    x_T = torch.randn((n, *run.config.fitted.shape), generator=g).to(device)
    grid = make_grid(run.denoiser.schedule, steps, "trailing")
    tau, z = linear_view(run.denoiser.replace(guidance_scale=1.0), x_T, grid, sampler, cond=labels)
    return {"tau": tau.numpy(), "z": z.numpy(), "straightness": straightness_of(tau, z), "steps": len(grid),
            "nfe": SAMPLER_TABLE[sampler].nfe() * (len(tau) - 1)}


def straightness_run(run: Run | str | Path, n: int = 2000, sampler: str = "ddim", steps: int | None = None, *,
                     seed: int = 0, cls=None, prompt: str | None = None) -> dict:
    """S (Liu et al. 2023, eq. 5) of a run's ODE trajectories from n noises (straightness.py): its mean and
    standard error, in the run's normalized coordinates; a conditional run is measured unguided on class cls or,
    for a text run, on prompt (None: the null class or prompt)."""
    if not isinstance(run, Run):
        run = load_run(run)
    t = trajectories_run(run, n, sampler, steps, seed=seed, cls=cls, prompt=prompt)
    s = t["straightness"]
    return {"straightness": float(s.mean()), "straightness_se": float(s.std(ddof=1) / math.sqrt(n)), "n": n,
            "sampler": sampler, "steps": t["steps"], "objective": run.config.objective.name}


def time_log_snr(run: Run | str | Path, n: int = 20_000, *, seed: int = 0) -> np.ndarray:
    """The log-SNR lambda = log(alpha^2 / sigma^2) of n training times as the run's objective draws them (ddpm:
    uniform steps of its schedule; flow: its time distribution and shift; edm: log-normal sigma): where on the
    common axis each formulation spends its training (Kingma & Gao 2023, Fig. 2). float64 [n]."""
    if not isinstance(run, Run):
        run = load_run(run)
    g = torch.Generator().manual_seed(seed)
    return objective_for(run.config, run.denoiser.schedule).log_snr(n, g).numpy()
