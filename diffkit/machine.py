"""What this machine is: CPU model, cores, torch's CPU capability, whether bf16 runs natively, and measured
matmul peaks. Defaults that depend on the hardware (training.autotune) ask here; every benchmark prints
`describe()` first, so no figure is read without its machine.

Native bf16 on a CPU means oneDNN has bf16 instructions to use (AVX512-BF16 or AMX-BF16); without them torch
emulates bf16, and a bf16 matmul runs hundreds of times slower than fp32 (0.3 against 105-140 GFLOP/s seen on
an AVX2-only EPYC).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import platform
import time
from contextlib import contextmanager

import torch


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            block = f.read().split("\n\n", 1)[0]
    except OSError:
        return {}
    fields = (line.split(":", 1) for line in block.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in fields}


def cpu_name() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine() or "unknown CPU"


# AMD cores by (cpu family, model range) as /proc/cpuinfo gives them (the ranges the Linux kernel's
# arch/x86/kernel/cpu/amd.c assigns to Zen 1-6): two EPYCs that both call themselves "AMD EPYC" in a virtual machine
# can be a Zen 4 (bf16 at half width, a bf16 matmul about 2.2x fp32) or a Zen 5 (full-width AVX-512, about 4x),
# and their bf16 training steps differ 1.6-1.9x
_AMD_CORES = (  # (family, first model, last model, core)
    (23, 0x00, 0x2F, "Zen / Zen+"), (23, 0x50, 0x5F, "Zen / Zen+"), (23, 0x30, 0x4F, "Zen 2"),
    (23, 0x60, 0x7F, "Zen 2"), (23, 0x90, 0x91, "Zen 2"), (23, 0xA0, 0xAF, "Zen 2"),
    (25, 0x00, 0x0F, "Zen 3"), (25, 0x20, 0x5F, "Zen 3"), (25, 0x10, 0x1F, "Zen 4"), (25, 0x60, 0xAF, "Zen 4"),
    (26, 0x00, 0x2F, "Zen 5"), (26, 0x40, 0x4F, "Zen 5"), (26, 0x60, 0x7F, "Zen 5"),
    (26, 0x50, 0x5F, "Zen 6"), (26, 0x80, 0xAF, "Zen 6"), (26, 0xC0, 0xCF, "Zen 6"),
)


def cpu_core() -> str:
    """The CPU's family and model as /proc/cpuinfo numbers them, after the core's name where it is known (AMD):
    'Zen 4, family 25 model 17'; '' where /proc/cpuinfo does not say."""
    info = _cpuinfo()
    try:
        family, model = int(info["cpu family"]), int(info["model"])
    except (KeyError, ValueError):
        return ""
    name = next((core for fam, first, last, core in _AMD_CORES
                 if info.get("vendor_id") == "AuthenticAMD" and fam == family and first <= model <= last), "")
    return (f"{name}, " if name else "") + f"family {family} model {model}"


def cores() -> int:
    return os.cpu_count() or 1


def cpu_capability() -> str:
    """torch's vectorised kernels for this CPU: DEFAULT, AVX2, AVX512, ..."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def cpu_bf16_units() -> str:
    """The CPU's bf16 instructions by name (AMX-BF16, AVX512-BF16), or 'none'."""
    flags = set(_cpuinfo().get("flags", "").split())
    units = [name for flag, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16")) if flag in flags]
    return " + ".join(units) or "none"


def cpu_bf16_native() -> bool:
    """Whether torch runs bf16 on this CPU natively (oneDNN's own check), not by emulation."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bf16_native(device: torch.device) -> bool:
    """Whether the device runs bf16 natively: a CPU with bf16 instructions, a CUDA GPU that supports it."""
    if device.type == "cpu":
        return cpu_bf16_native()
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return False


def machine_key() -> str:
    """A short hash of what makes timings on this machine comparable: CPU model, its family and model numbers,
    cores, capability, torch."""
    text = "|".join([cpu_name(), cpu_core(), str(cores()), cpu_capability(), str(cpu_bf16_native()),
                     torch.__version__])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextmanager
def intra_op_threads(n: int | None):
    """torch's intra-op thread count set to n (0 or None: left alone) inside the block, restored after it."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def matmul_gflops(dtype: torch.dtype = torch.float32, seconds: float = 0.25) -> float:
    """Measured GFLOP/s of a square matmul in `dtype` at torch's current thread count. The size grows from 128
    until one product takes >= 5 ms (at most 2048), so an emulated bf16 probe stays short; the fastest of three
    products decides (one product slowed by a hiccup stopped the growth at 256, where bf16 ran at 5% of its peak)."""
    n = 128
    while True:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        a @ b  # warm-up: kernel selection
        once = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            a @ b
            once = min(once, time.perf_counter() - t0)
        if once >= 0.005 or n >= 2048:
            break
        n *= 2
    reps = max(1, int(seconds / max(once, 1e-6)))
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def describe(peaks: bool = True) -> str:
    """The machine in a few '# ' lines, for the head of every benchmark table."""
    core = cpu_core()
    core = f" ({core})" if core else ""
    lines = [(f"# machine: {cpu_name()}{core}, {cores()} cores, torch {torch.__version__} CPU capability "
              f"{cpu_capability()}, bf16 units {cpu_bf16_units()} (native bf16: {'yes' if cpu_bf16_native() else 'no'})")]
    if torch.cuda.is_available():
        lines.append(f"# GPU: {torch.cuda.get_device_name()} (bf16: {'yes' if torch.cuda.is_bf16_supported() else 'no'})")
    if peaks:
        fp32, bf16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
        lines.append(f"# matmul peak on {torch.get_num_threads()} threads: fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.1f} "
                     f"GFLOP/s ({bf16 / fp32:.2f}x fp32)")
    return "\n".join(lines)
