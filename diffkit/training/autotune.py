"""Precision and threads decided on the machine a run starts on, at every start (resume included); and whether
`diffkit train` compiles the network where nobody said (auto_compile: a rule from measurements, no probe).

A run's config records what was asked: `precision` auto / fp32 / bf16 / fp16 and `threads` (0: auto, N: N
intra-op threads). What actually runs is settled here when training starts, and written to the log:

- precision auto: bf16 autocast only where the device runs it natively *and* faster. CUDA: bf16 when the GPU
  supports it. CPU: no native bf16 (machine.cpu_bf16_native) -> fp32, no probe; native -> a short probe of
  the run's own training step in fp32 and in bf16, and bf16 only when it is at least BF16_MARGIN times
  faster (a clear margin, so noise never flips it); a step under SMALL_STEP_S stays in fp32 (it is bound by
  per-operation overhead, not arithmetic). Anything else (MPS): fp32.
- an explicit bf16 on a CPU without native bf16 runs, after a notice of the slowdown the probe measured.
- threads auto (CPU): one thread or all the cores this process may use (cores / processes on the machine).
  A step under SMALL_STEP_S on one thread stays there (the 2-D MLP's ops are too small to split); otherwise
  all cores when timed at least THREADS_MARGIN times faster than one (an image U-Net's are), else one.

Probe timings are cached as JSON under $DIFFKIT_CACHE/probes, one file per machine and network shape, so a
machine measures a kind of run once. The probe trains a copy of the network on one micro-batch drawn from a
generator of its own, with the global RNG state restored after: the run's own draws are untouched.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .. import machine
from ..devices import PRECISIONS, autocast
from ..errors import notice
from ..machine import intra_op_threads
from ..nn import registry
from ..store.cache import cache_root
from ..store.manifest import atomic_write
from .adamw import adamw

BF16_MARGIN = 1.15     # bf16 must run the step this many times faster than fp32 to be chosen
THREADS_MARGIN = 1.10  # all cores must run the step this many times faster than one thread to be chosen
# a step faster than this in fp32 is bound by per-operation overhead: it stays on one thread and in fp32 without
# timing more (the 2-D MLP, 1024 points: 4.4 ms on 1 thread against 5.2 on 2 on a Xeon; on a Zen 4 EPYC 6.0
# against 8.2 ms, where a probe of its forward, backward and AdamW alone favoured 2 threads, and bf16 timed
# within +-15% of fp32 either way, run to run)
SMALL_STEP_S = 0.02
ROUNDS = 3             # timing rounds, candidates interleaved; each keeps its fastest round's median
# `diffkit train` compiles the network (torch.compile, Runtime.compile) unless told, where it was measured to pay:
# a U-Net on pixels (no text encoder) trained in bf16 on a CPU with AMX-BF16, for at least COMPILE_MIN_STEPS
# steps. On a 2-core Xeon with AMX (benchmarks/compile.py, bf16): digits' step 72.3 -> 54.8 ms (1.32x), mnist5k's
# 208 -> 176 ms (1.18x), shapes' 316 -> 271 ms (1.17x); compiling costs 49-101 s the first time a machine meets a
# network shape and 2.6-4.0 s after (inductor's cache), repaid within 81-143 steps: the default runs (750-2000
# steps) gain from their second run on (mnist5k from its first). COMPILE_MIN_STEPS is 3x the slowest repayment.
# Later that day, at the narrower digits preset and with AOTAutograd's cache working: digits 54.4 -> 39.5 ms
# (1.38x), mnist5k 233.8 -> 164.1 ms (1.42x), 2.8-3.1 s warm. The text-to-image U-Net on latents (shapes' default,
# 64 wide, batch 128) too, in either precision: eager 244 ms a step in fp32 or bf16, compiled 198-210 ms in fp32
# (1.16-1.23x), 213 in bf16; 52 s cold, 3.4 s warm (2026-12-07, the same Xeon; compiled gradients within 7e-7 of
# eager's in fp32). Elsewhere it was measured not to pay (fp32 on an AVX2 EPYC: 0.92-1.11x; the 2-D MLP 1.11x
# here, repaid after 5,800 steps) or not measured (class-conditional latent U-Nets, pixel text U-Nets, the DiT).
COMPILE_MIN_STEPS = 500


@dataclass(frozen=True)
class Settled:
    """What a training start runs with, and why (one line each, printed by the trainer)."""

    precision: str   # fp32 / bf16 / fp16
    threads: int     # intra-op threads while training (0: torch's default, left alone)
    precision_why: str
    threads_why: str

    @staticmethod
    def encode(settled: Settled | None, device: torch.device) -> torch.Tensor:
        """[precision index, threads] for the ranks' all-reduce; zeros for a rank that decided nothing."""
        code = torch.zeros(2, dtype=torch.float64, device=device)
        if settled is not None:
            code[0], code[1] = PRECISIONS.index(settled.precision), settled.threads
        return code

    @staticmethod
    def decode(code: torch.Tensor) -> Settled:
        precision, threads = code.tolist()
        return Settled(PRECISIONS[int(precision)], int(threads), "rank 0's choice", "rank 0's choice")

    def lines(self) -> list[str]:
        return [f"precision: {self.precision} ({self.precision_why})",
                f"threads: {self.threads or 'default'} ({self.threads_why})"]


def settle(asked_precision: str, asked_threads: int, device: torch.device, share: int,
           timer: Callable[..., list[float]]) -> Settled:
    """Decide precision and threads. share: the cores this process may use; timer((precision, threads), ...) ->
    seconds of one training step for each (the probe; called only where a choice depends on it)."""
    probe_bf16 = asked_precision == "auto" and device.type == "cpu" and machine.bf16_native(device)
    threads, threads_why = _threads(asked_threads, device, share, timer, probe_bf16)
    precision, precision_why = _precision(asked_precision, device, threads, timer)
    return Settled(precision, threads, precision_why, threads_why)


def auto_compile(config, steps: int, asked_precision: str, device: torch.device) -> str | None:
    """Why `diffkit train` compiles this run by default (COMPILE_MIN_STEPS' measurements: a pixel U-Net without a
    text encoder in bf16, or a latent U-Net with one; not a derived run: distill, reflow and finetune train eager,
    and so does `train --resume` of one), or None: it runs eager."""
    unet = registry.kind_of(config.network) == "unet" and config.parent is None  # derived runs: their own commands
    latent, text = config.data.latent is not None, config.data.text is not None
    if unet and not latent and not text and asked_precision in ("auto", "bf16"):
        what, gain = "a pixel U-Net in bf16", "1.17-1.42x"
    elif unet and latent and text and asked_precision in ("auto", "bf16", "fp32"):
        what, gain = "a text-to-image U-Net on latents", "1.15-1.23x"
    else:
        return None
    if not (device.type == "cpu" and steps >= COMPILE_MIN_STEPS and "AMX-BF16" in machine.cpu_bf16_units()
            and machine.cpu_bf16_native()):
        return None
    return (f"auto: {what} on AMX-BF16, {steps} steps >= {COMPILE_MIN_STEPS}, where it measured {gain} a step; "
            "--no-compile runs eager")


def compile_network(model: torch.nn.Module) -> torch.nn.Module:
    """torch.compile(model) with inductor's kernels under diffkit's cache, not /tmp (unless the user named a cache):
    compiling costs once per machine and network shape (17-101 s cold, 1.6-4 s warm on 2 cores: docs/speed.md).
    Static shapes: a second network shape in one process (a library user training digits, then mnist5k) compiles
    anew instead of turning dynamic, where inductor failed on the U-Net's attention (torch 2.13)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    if os.environ.get("TORCHINDUCTOR_CACHE_DIR") in (None, os.path.abspath(default_cache_dir())):  # not the user's
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_root() / "inductor")
    return torch.compile(model, dynamic=False)


def _threads(asked: int, device: torch.device, share: int, timer, probe_bf16: bool) -> tuple[int, str]:
    if asked > 0:
        n = min(asked, share)
        return n, "asked for" if n == asked else f"asked for {asked}, capped at this process's {share} cores"
    if device.type != "cpu":
        return (share, "this process's share of the cores") if share < machine.cores() else (0, "torch's default")
    if share <= 1:
        return 1, "one core for this process"
    one, = timer(("fp32", 1))
    if one < SMALL_STEP_S:
        return 1, (f"this run's step took {_ms(one)} on one thread; a step this small is bound by per-operation "
                   "overhead, which more threads add to")
    # the comparisons still to come, timed interleaved (bf16 at all cores: the likely precision comparison)
    one, all_, *_ = timer(("fp32", 1), ("fp32", share), *([("bf16", share)] if probe_bf16 else []))
    if one / all_ >= THREADS_MARGIN:
        return share, f"this run's step took {_ms(all_)} on {share} threads against {_ms(one)} on one"
    return 1, (f"this run's step took {_ms(one)} on one thread against {_ms(all_)} on {share}: more threads are "
               f"not {THREADS_MARGIN:g}x faster")


def _precision(asked: str, device: torch.device, threads: int, timer) -> tuple[str, str]:
    native = machine.bf16_native(device)
    if asked == "bf16" and device.type == "cpu" and not native:
        fp32, bf16 = timer(("fp32", threads), ("bf16", threads))
        notice(f"this CPU has no native bf16, so torch emulates it: this run's training step took {_ms(bf16)} in bf16 "
               f"against {_ms(fp32)} in fp32 ({bf16 / fp32:.1f}x slower); --precision auto or fp32 avoids that")
    if asked != "auto":
        return asked, "asked for"
    if device.type == "cuda":
        return ("bf16", "this GPU supports bf16") if native else ("fp32", "this GPU has no bf16")
    if device.type != "cpu":
        return "fp32", f"bf16 autocast is chosen only on CPUs and CUDA GPUs that run it natively, not on {device.type}"
    if not native:
        return "fp32", "this CPU has no native bf16"
    fp32, = timer(("fp32", threads))
    if fp32 < SMALL_STEP_S:
        return "fp32", (f"this run's step took {_ms(fp32)} in fp32; a step this small is bound by per-operation "
                        "overhead, which bf16 does not reduce")
    fp32, bf16 = timer(("fp32", threads), ("bf16", threads))
    if fp32 / bf16 >= BF16_MARGIN:
        return "bf16", f"native on this CPU; this run's step took {_ms(bf16)} against {_ms(fp32)} in fp32"
    return "fp32", (f"this CPU has native bf16, but this run's step took {_ms(bf16)} in bf16 against {_ms(fp32)} in "
                    f"fp32: not {BF16_MARGIN:g}x faster")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def core_share(runtime) -> int:
    """The CPU cores one process may use: all of them, or on a CPU an even share among the processes of this
    machine (two 2-thread ranks on two cores slow each other down many times over)."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", runtime.world_size))
    if runtime.device.type != "cpu" or local <= 1:
        return machine.cores()
    return max(1, machine.cores() // local)


def batch_shapes(value):
    """The shapes of the tensors in a (nested) batch: what a step's cost depends on."""
    if isinstance(value, torch.Tensor):
        return list(value.shape)
    if isinstance(value, dict):
        return {k: batch_shapes(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [batch_shapes(v) for v in value]
    return None


# part of every probe's cache key: raised when a change to the code moves step times, so cached probes are taken
# again (2: a distillation step's teacher calls sped up by nn/unet.py's GroupNorm on bf16 channels_last maps;
# 3: again, by GroupNorm.modulated)
PROBE_FORMAT = 3


class StepProbe:
    """Times a training step of a copy of `network` on one batch under (precision, threads), cached per machine
    and network shape (shape_key names the network; the batch's shapes are added). step(model, batch) runs the
    forward pass and returns the loss (the trainer's objective)."""

    def __init__(self, network: torch.nn.Module, batch, step: Callable, device: torch.device, shape_key: dict):
        self.network, self.batch, self.step, self.device = network, batch, step, device
        text = json.dumps({"machine": machine.machine_key(), "device": device.type, "batch": batch_shapes(batch),
                           "format": PROBE_FORMAT, **shape_key}, sort_keys=True,
                          default=str)
        self.path = cache_root() / "probes" / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.json"
        self.times = self._read()

    def __call__(self, *candidates: tuple[str, int]) -> list[float]:
        """Seconds per step of each (precision, threads); those not cached are measured together, interleaved
        round by round, so a burst of other work on the machine hits them alike."""
        todo = [c for c in dict.fromkeys(candidates) if f"{c[0]}@{c[1]}" not in self.times]
        if todo:
            self.times.update(self._measure(todo))
            self._write()
        return [self.times[f"{p}@{t}"] for p, t in candidates]

    def _measure(self, candidates: list[tuple[str, int]]) -> dict[str, float]:
        nets = {c: copy.deepcopy(self.network) for c in candidates}
        opts = {c: adamw(nets[c].parameters(), 1e-6, 0.01, self.device) for c in candidates}
        best = {c: float("inf") for c in candidates}
        with torch.random.fork_rng(devices=[]):
            first = {}
            for c in candidates:  # warm-up: kernel selection and allocations
                with intra_op_threads(c[1]):
                    first[c] = self._timed(nets[c], opts[c], c[0])
            slow = max(first.values()) > 1.0  # an emulated bf16 step: one timed step is enough
            steps = 1 if slow else max(2, min(32, int(0.15 / max(min(first.values()), 1e-4))))
            for _ in range(1 if slow else ROUNDS):
                for c in candidates:
                    with intra_op_threads(c[1]):
                        median = statistics.median(self._timed(nets[c], opts[c], c[0]) for _ in range(steps))
                    best[c] = min(best[c], median)
        return {f"{p}@{t}": s for (p, t), s in best.items()}

    def _timed(self, net, opt, precision: str) -> float:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast(self.device, precision):
            loss = self.step(net, self.batch)
        loss.float().mean().backward()
        opt.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0

    def _read(self) -> dict[str, float]:
        try:
            times = json.loads(self.path.read_text())["seconds"]
            return {str(k): float(v) for k, v in times.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}

    def _write(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            record = {"machine": machine.cpu_name(), "cores": machine.cores(), "seconds": self.times}
            atomic_write(self.path, json.dumps(record, indent=1).encode())
        except OSError:
            pass  # a read-only cache folder: the probe runs again next time
