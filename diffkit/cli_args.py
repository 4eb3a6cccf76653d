"""argparse value types for the command line: each parses one flag's text or says, in one sentence, what it
accepts (argparse turns the ArgumentTypeError into `error: ...`, exit 2)."""

from __future__ import annotations

import argparse
import math

from .errors import ConfigError


def positive_int(name):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {text!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {v}")
        return v
    return parse


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
    if text.strip().lower() == "all":
        return ()
    from .denoiser import check_guidance_interval

    try:
        return check_guidance_interval(tuple(float(v) for v in text.split(",")), "--guidance-interval")
    except (ValueError, ConfigError) as e:
        raise argparse.ArgumentTypeError(f"--guidance-interval takes LO,HI with 0 <= LO < HI (e.g. 0.2,1) or 'all', "
                                         f"got {text!r}") from None


def port_arg(text):
    try:
        v = int(text)
    except ValueError:
        v = -1
    if not 1 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"--port takes an integer in 1..65535, got {text!r}")
    return v
