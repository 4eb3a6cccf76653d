"""argparse value types that each parse one flag's text or say, in one sentence, what it accepts (argparse turns
the ArgumentTypeError into `error: ...`, exit 2), and the flag groups several commands share."""

from __future__ import annotations

import argparse
import math

from ..errors import ConfigError


def positive_int(name, minimum: int = 1):
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {what}, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be {what}, got {v}")
        return v
    return parse


def non_negative_int(name):
    return positive_int(name, minimum=0)


def finite_float(name, minimum=None):
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not math.isfinite(v) or (minimum is not None and v < minimum):
            raise argparse.ArgumentTypeError(f"{name} must be a finite number >= {minimum}, got {text}")
        return v
    return parse


def positive_float(name):
    """A number > 0, inf included."""
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"{name} must be a number > 0 (inf: no limit), got {text}")
        return v
    return parse


def int_tuple(name, allow_empty=False):
    def parse(text):
        try:
            v = tuple(int(p) for p in text.split(",") if p.strip() != "")
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} takes comma-separated integers, e.g. 1,2,2; got {text!r}") from None
        if (not v and not allow_empty) or any(p < 0 for p in v) or (not allow_empty and any(p == 0 for p in v)):
            raise argparse.ArgumentTypeError(f"{name} takes comma-separated positive integers, got {text!r}")
        return v
    return parse


def seed_arg(text):
    try:
        v = int(text)
    except ValueError:
        v = -1
    if not 0 <= v < 2**63:
        raise argparse.ArgumentTypeError(f"--seed takes an integer in [0, 2^63), got {text!r}")
    return v


def interval_arg(text):
    """--guidance-interval: LO,HI, or 'all' (None: every level); not given, the flag is absent (the run's)."""
    if text.strip().lower() == "all":
        return None
    from ..denoiser import check_guidance_interval

    try:
        return check_guidance_interval(tuple(float(v) for v in text.split(",")), "--guidance-interval")
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(f"--guidance-interval takes LO,HI with 0 <= LO < HI (e.g. 0.2,1) or 'all', "
                                         f"got {text!r}") from None


def band_arg(text):
    """--foreground-band: LO,HI, checked as config.json's is (config.check_foreground_band)."""
    from ..config import check_foreground_band

    try:
        return check_foreground_band(tuple(float(v) for v in text.split(",")))
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(f"--foreground-band takes two flow times LO,HI with 0 <= LO < HI <= 1 "
                                         f"(e.g. 0.4,0.8), got {text!r}") from None


def port_arg(text):
    try:
        v = int(text)
    except ValueError:
        v = -1
    if not 1 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"--port takes an integer in 1..65535, got {text!r}")
    return v


def device_arg(parser) -> None:
    parser.add_argument("--device", default="auto", help="auto (a CUDA GPU if present, else Apple's mps, else the "
                                                         "CPU), cpu, cuda, cuda:N or mps (default auto)")


def sampler_args(s) -> None:
    """The sampler's own options (common.SAMPLER_FLAGS): `sample`, `edit`."""
    s.add_argument("--sigma-min", type=finite_float("--sigma-min", 0.0),
                   help="narrow the grid: lowest noise level before the final step, in data standard deviations "
                        "(default: 0.5 / steps for dpmpp-*, else the schedule's own)")
    s.add_argument("--sigma-max", type=finite_float("--sigma-max", 0.0),
                   help="narrow the grid: highest noise level, in data standard deviations "
                        "(default: 10 for dpmpp-*, else 160)")
    s.add_argument("--eta", type=finite_float("--eta", 0.0), help="noise of ddim / euler-a / dpmpp-2m-sde")
    s.add_argument("--s-tmax", type=positive_float("--s-tmax"), metavar="SIGMA",
                   help="dpmpp-2m-sde: fresh noise only on steps from levels <= SIGMA, in data standard deviations "
                        "(inf: every step, the sampler's default; shapes runs record 3)")
    s.add_argument("--variance", help="DDPM variance: beta or posterior")
    s.add_argument("--snr", type=finite_float("--snr", 0.0), help="langevin corrector signal-to-noise ratio")
    s.add_argument("--corrector-steps", type=int, help="langevin corrector steps per step")
