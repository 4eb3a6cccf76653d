"""The CLI's eval command: score samples (points or images, or against prompts) or a run's likelihood."""

from __future__ import annotations

import json

from ..errors import ConfigError


def cmd_eval(a) -> None:
    from ..data.images import is_image_spec
    from ..data.points import load_file
    from ..devices import resolve_device
    from ..runs import eval_image_samples, eval_samples

    device = resolve_device(a.device)  # checked for every kind of eval (points are scored by NumPy / SciPy)
    if a.nll and a.straightness:
        raise ConfigError("--nll and --straightness are two measurements of a run; give one")
    if a.prompt is not None and not a.straightness:
        raise ConfigError("--prompt belongs to --straightness (a text run's trajectories); scoring samples drawn for "
                          "prompts takes --prompts FILE")
    if a.nll or a.straightness:
        from .score import cmd_eval_nll, cmd_eval_straightness

        return cmd_eval_nll(a) if a.nll else cmd_eval_straightness(a)
    if a.steps is not None:
        raise ConfigError("--steps belongs to --straightness (the ODE's steps)")
    for flag, value in (("--run", a.run), ("--n", a.n), ("--elbo-strata", a.elbo_strata), ("--probes", a.probes)):
        if value is not None:
            raise ConfigError(f"{flag} belongs to --nll; scoring samples takes --samples and --data")
    if a.samples is None or a.data is None:
        raise ConfigError("eval needs --samples FILE and --data NAME (or --nll --run RUN for a likelihood)")
    if a.prompts is not None:
        from .text import cmd_eval_prompts

        return cmd_eval_prompts(a, device)

    if is_image_spec(a.data):
        m = eval_image_samples(a.samples, a.data, cls=a.cls, seed=a.seed, device=device)
        if _printed_json(m, a.json):
            return
        _print_metrics(m, ("fd", "precision", "recall"), 16, 4)
        if "class_accuracy" in m:
            print(f"{'class accuracy':<16} {m['class_accuracy']:>10.4f} {m['judge_accuracy']:>11.4f}  (floor: the judge's test accuracy)")
        print("fd: Frechet distance on the judge CNN's penultimate features (a classifier-feature FD, not Inception FID); "
              "floor: train vs test images")
        return
    if a.cls is not None:
        raise ConfigError("--class applies to image samples; point samples are scored against the whole data set")
    x = load_file(a.samples)
    m = eval_samples(x, a.data, n_reference=a.n_ref, seed=a.seed)
    if _printed_json(m, a.json):
        return
    _print_metrics(m, ("energy", "mmd", "swd"), 10, 5)
    if "radius_mean" in m:
        print(f"radius mean {m['radius_mean']:.4f}  std {m['radius_std']:.4f}")


def _printed_json(m: dict, as_json: bool) -> bool:
    """--json: the metrics as JSON (True: nothing else to print)."""
    if as_json:
        print(json.dumps(m, indent=2))
    return as_json


def _print_metrics(m: dict, names, width: int, digits: int) -> None:
    """A table of metrics beside their data-vs-data floors."""
    spread = any(name + "_floor_std" in m for name in names)
    print(f"{'metric':<{width}} {'samples':>10} {'data floor':>11}" + (f"  (mean +- sd of {m['floor_draws']} draws of real data)" if spread else ""))
    for name in names:
        sd = f" +- {m[name + '_floor_std']:.{digits}f}" if name + "_floor_std" in m else ""
        print(f"{name:<{width}} {m[name]:>10.{digits}f} {m[name + '_floor']:>11.{digits}f}{sd}")
