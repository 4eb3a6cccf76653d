"""Command line faces of the score view: `diffkit sample --oracle` (the exact denoiser of a Gaussian mixture) and
`diffkit eval --nll` (likelihoods of held-out data under a run). args.py parses; these run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import ConfigError
from .common import check_new_file, fresh_seed, sampler_options, write_samples


def cmd_sample_oracle(a) -> None:
    from ..runs import sample_oracle
    from ..version import __version__
    from ..viz.plots import scatter

    for flag, given in (("--grid", a.grid is not None), ("--gif", a.gif is not None),
                        ("--guidance-interval", "guidance_interval" in vars(a)), ("--precision", a.precision != "auto")):
        if given:
            raise ConfigError(f"{flag} does not apply to --oracle (points of a mixture, guided at every level)")
    out = check_new_file(a.out, ".npy", a.overwrite, "--out")
    sidecar = check_new_file(str(out.with_suffix(".json")), ".json", a.overwrite, "--out's sidecar")
    plot = check_new_file(a.plot, ".png", a.overwrite, "--plot") if a.plot else None
    options = sampler_options(a)
    seed = a.seed if a.seed is not None else fresh_seed()
    x = sample_oracle(a.oracle, a.n, a.sampler, a.steps, schedule=a.schedule or "linear",
                      num_timesteps=a.timesteps or 1000, seed=seed, spacing=a.spacing, cls=a.cls,
                      guidance=a.guidance, objective=a.objective or "ddpm", shift=1.0 if a.shift is None else a.shift,
                      **options)
    record = {"oracle": a.oracle if a.oracle == "gaussians8" else str(Path(a.oracle).resolve()), "n": a.n,
              "sampler": a.sampler, "steps": a.steps, "spacing": a.spacing, "schedule": a.schedule or "linear",
              "timesteps": a.timesteps or 1000, "objective": a.objective or "ddpm", "shift": a.shift, "seed": seed,
              "class": a.cls, "guidance": a.guidance, "options": options, "diffkit": __version__}
    write_samples(out, sidecar, x, record)
    print(f"wrote {len(x)} samples of the {a.oracle} oracle to {out} (seed {seed}; settings in {sidecar})")
    if plot:
        if x.shape[1] != 2:
            raise ConfigError(f"--plot draws 2-D points; this mixture has {x.shape[1]} dimensions (the samples are saved)")
        scatter(x, plot, f"{a.sampler} on the exact {a.oracle} denoiser")
        print(f"wrote {plot}")


def cmd_eval_nll(a) -> None:
    from tqdm.auto import tqdm

    from ..devices import resolve_device
    from ..runs import load_run, nll_run

    if a.run is None:
        raise ConfigError("--nll scores a trained model: give --run RUN (and optionally --data for other held-out data)")
    if a.samples is not None or a.cls is not None:
        raise ConfigError("--nll scores held-out data under --run; it takes no --samples or --class")
    if not 0 < a.tol <= 0.1:
        raise ConfigError(f"--tol must be in (0, 0.1], got {a.tol}")
    run = load_run(a.run, device=resolve_device(a.device))
    n = a.n or (500 if run.config.fitted.is_images else 2000)
    bar = tqdm(total=200, desc="likelihood", unit="%", disable=not sys.stderr.isatty(), leave=False)

    def progress(stage, fraction):  # the ODE fills the first half of the bar, the ELBO the second
        bar.update(max(0, int(100 * fraction) + (100 if stage == "elbo" else 0) - bar.n))

    m = nll_run(run, a.data, n=n, seed=a.seed, rtol=a.tol, atol=a.tol, hutchinson=a.probes, strata=a.elbo_strata,
                progress=progress)
    bar.close()
    if a.json:
        print(json.dumps({k: m[k] for k in ("nll_ode", "nll_ode_se", "nll_elbo", "nll_elbo_se", "unit", "n", "nfe",
                                            "probes", "elbo_strata", "elbo_terms", "elbo_t")}))
        return
    print(f"{'likelihood of':<22} {m['n']} held-out {'test images' if m['unit'] == 'bits/dim' else 'points'} "
          f"({m['unit']}, lower is better)")
    div = "exact divergence" if m["probes"] is None else f"Hutchinson divergence, {m['probes']} probe(s)"
    print(f"{'probability-flow ODE':<22} {m['nll_ode']:>10.4f} +- {m['nll_ode_se']:.4f}  ({m['nfe']} network evaluations, "
          f"tolerance {a.tol:g}, {div})")
    print(f"{'negative ELBO':<22} {m['nll_elbo']:>10.4f} +- {m['nll_elbo_se']:.4f}  (an upper bound on the NLL)")


def cmd_eval_straightness(a) -> None:
    from ..devices import resolve_device
    from ..runs import load_run, straightness_run

    if a.run is None:
        raise ConfigError("--straightness measures a trained model: give --run RUN")
    for flag, value in (("--samples", a.samples), ("--data", a.data), ("--probes", a.probes),
                        ("--elbo-strata", a.elbo_strata), ("--prompts", a.prompts)):
        if value is not None:
            raise ConfigError(f"--straightness measures --run's own ODE; it takes no {flag}")
    run = load_run(a.run, device=resolve_device(a.device))
    m = straightness_run(run, a.n or 2000, "ddim", a.steps, seed=a.seed, cls=a.cls, prompt=a.prompt)
    if a.json:
        print(json.dumps(m))
        return
    print(f"straightness S = {m['straightness']:.4f} +- {m['straightness_se']:.4f} over {m['n']} trajectories "
          f"({m['objective']} run, ddim, {m['steps']} steps; 0 is straight)")
