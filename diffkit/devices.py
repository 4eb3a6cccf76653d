"""Devices and precision: which accelerator to run on, autocast, the fp16 gradient scaler, device-independent noise.

Noise is drawn on the CPU from a CPU torch.Generator and then moved, so one seed gives the same x_T and the
same sampler noise on every device (up to floating-point differences in the network itself).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from .errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")
# auto: decided on the machine at every training start (training/autotune.py); the others run as asked
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """'auto' (CUDA if present, else Apple's MPS, else the CPU), 'cpu', 'cuda', 'cuda:N' or 'mps' as a
    torch.device; a ConfigError naming what is present when the asked-for device is not."""
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind not in DEVICES[1:] or (index and (not index.isdigit() or kind != "cuda")):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} was asked for but this machine has no CUDA GPU that torch can use "
                              f"(torch {torch.__version__}); use --device cpu or auto")
        if index and int(index) >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} does not exist; this machine has CUDA devices "
                              f"0..{torch.cuda.device_count() - 1}")
    if kind == "mps" and not _mps_available():
        raise ConfigError("device 'mps' was asked for but Apple's Metal backend is not available here; "
                          "use --device cpu or auto")
    return torch.device(name)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return precision


def autocast(device: torch.device, precision: str):
    """The network's matmuls and convolutions in bf16 / fp16 (torch.autocast); fp32: no autocast. Time, the
    schedule tables and the loss stay float32 / float64 outside it (DESIGN.md: the time contract)."""
    if check_precision(precision) == "fp32":
        return nullcontext()
    if precision == "auto":
        raise ValueError("precision 'auto' is settled into fp32 or bf16 before autocast (training/autotune.py)")
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str):
    """fp16 needs loss scaling so small gradients do not flush to zero (Micikevicius et al. 2018); bf16 has
    float32's exponent range and does not. None when no scaler is needed."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def randn(shape, generator: torch.Generator | None, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """N(0, I) drawn on the generator's device (the CPU for a CPU generator) and moved to `device`: the same
    generator state gives the same numbers whatever device the result lives on."""
    where = generator.device if generator is not None else torch.device("cpu")
    drawn = dtype if dtype in (torch.float32, torch.float64) else torch.float32  # bf16 / fp16: rounded from float32
    z = torch.randn(tuple(shape), generator=generator, device=where, dtype=drawn)
    return z.to(device=device or where, dtype=dtype)


def randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return randn(x.shape, generator, device=x.device, dtype=x.dtype)


def module_device(network) -> torch.device:
    """The device of a network's first parameter (or buffer); the CPU for plain callables (e.g. an oracle)."""
    for tensor in (*getattr(network, "parameters", tuple)(), *getattr(network, "buffers", tuple)()):
        return tensor.device
    return torch.device("cpu")
