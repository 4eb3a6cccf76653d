"""How close each default step runs to this machine's roofline.

    .venv/bin/python benchmarks/roofline.py [--models mlp digits mnist5k shapes dit vae] [--seconds 4]

1. Peaks: square fp32 and bf16 matmuls, one thread and all cores (diffkit.machine.matmul_gflops).
2. Per default network (`diffkit train --data D [--cond]` as it is configured today, the DiT as `--net dit` on
   mnist5k, the VAE as `diffkit train-vae --data mnist5k`): the FLOPs of one training step and of one sampling call
   per sample, counted by torch.utils.flop_counter.FlopCounterMode (matmuls, convolutions and attention, forward and
   backward; elementwise work is not counted), the step's time on the trainer's own settled precision and threads
   (the real Trainer.train_step: data draw, loss, backward, optimizer, EMA; under torch.compile where `diffkit
   train` compiles by default on this machine, training.autotune.auto_compile), and the achieved FLOP/s.
3. The op that dominates each step, timed alone at the step's own shapes and precision: for the U-Nets the 3x3
   convolution with the most FLOPs (forward and backward); for the MLP, DiT and VAE the matmul / convolution peak.
   The share of that peak is what the step reaches.
4. Sampling: samples per second at the reference setting, dpmpp-2m at 20 steps (images guided at w = 3 in the
   run's interval; calls counted), and the FLOP/s that is.

Every figure names the machine (the header); run it alone: a second torch process on 2 cores slows both.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from diffkit import machine
from diffkit.devices import autocast
from diffkit.nn import registry
from diffkit.runs import load_run, sample_run, train_config, train_run, vae_train_config
from diffkit.runs.train import make_trainer
from diffkit.training.autotune import auto_compile
from diffkit.training.distributed import Runtime

sys.path.insert(0, str(Path(__file__).parent))
from distill import calls_per_sample  # noqa: E402  (network calls per sample, counted)

MODELS = {  # name: (what it is, train flags, vae?)
    "mlp": ("2-D MLP, spiral", {"data": "spiral"}, False),
    "digits": ("U-Net, digits 8x8, class-conditional", {"data": "digits", "cond": True}, False),
    "mnist5k": ("U-Net, mnist5k 28x28, class-conditional", {"data": "mnist5k", "cond": True}, False),
    "shapes": ("U-Net, shapes 32x32 RGB, class-conditional", {"data": "shapes", "cond": True}, False),
    "dit": ("DiT, mnist5k 28x28 pixels, class-conditional", {"data": "mnist5k", "cond": True, "net": "dit"}, False),
    "vae": ("VAE, mnist5k", {"data": "mnist5k"}, True),
}


def timed(fn, seconds: float, warmup: int = 3) -> float:
    """Seconds per call of fn: a few warm-up calls, then as many as fit in `seconds` (at least 5)."""
    for _ in range(warmup):
        fn()
    n, t0 = 0, time.perf_counter()
    while n < 5 or time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n


def fastest(fn, repeats: int = 3) -> tuple[float, object]:
    """(the fastest of `repeats` timed calls of fn after one warm-up call, in seconds; the last call's result)."""
    out, best = fn(), float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def peaks(seconds: float) -> dict:
    out = {}
    for threads in sorted({1, machine.cores()}):
        with machine.intra_op_threads(threads):
            for dtype in (torch.float32, torch.bfloat16):
                out[(str(dtype).split(".")[-1], threads)] = machine.matmul_gflops(dtype, seconds=seconds / 4)
    return out


def biggest_conv(network: torch.nn.Module, inputs) -> tuple[torch.nn.Conv2d, tuple] | None:
    """The Conv2d of the network with the most FLOPs in one forward pass, and the input shape it saw."""
    seen = []
    hooks = [m.register_forward_hook(lambda m, a, out: seen.append((m, tuple(a[0].shape), out[0].numel())))
             for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.no_grad():
            network(*inputs)
    finally:
        for h in hooks:
            h.remove()
    if not seen:
        return None
    # FLOPs of a conv: 2 x output elements x in_channels / groups x kernel area
    def flops(item):
        m, shape, out_per_row = item
        return 2 * shape[0] * out_per_row * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
    conv, shape, _ = max(seen, key=flops)
    return conv, shape


def conv_peak(conv: torch.nn.Conv2d, shape: tuple, precision: str, seconds: float) -> float:
    """GFLOP/s of this convolution alone, forward and backward (input and weight gradients), at `shape`."""
    layer = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                            groups=conv.groups)
    x = torch.randn(shape, requires_grad=True)

    def step():
        with autocast(torch.device("cpu"), precision):
            y = layer(x)
        y.float().sum().backward()

    flops = count_flops(step)
    return flops / timed(step, seconds) / 1e9


def step_row(name: str, seconds: float, root: Path) -> dict:
    what, flags, vae = MODELS[name]
    config = vae_train_config(flags) if vae else train_config(flags)
    trainer = make_trainer(config, root / name, progress=False)
    with contextlib.redirect_stderr(io.StringIO()):
        settled = trainer.settle()
    batch = config.train.batch_size
    compiled = not vae and auto_compile(config, config.train.steps, config.train.precision, trainer.device)
    with machine.intra_op_threads(settled.threads):
        flops = count_flops(trainer.train_step)  # eager: the compiled step does the same arithmetic
        if compiled:  # the step as `diffkit train` runs it here (autotune.auto_compile); its first calls compile
            fast = make_trainer(config, root / f"{name}-compiled", progress=False, runtime=Runtime(compile=True))
            with contextlib.redirect_stderr(io.StringIO()):
                fast.settle()
            step = timed(fast.train_step, seconds)
        else:
            step = timed(trainer.train_step, seconds)
        row = {"what": what, "batch": batch, "precision": settled.precision, "threads": settled.threads,
               "compiled": bool(compiled), "step_ms": step * 1e3, "gflop_step": flops / 1e9,
               "gflops": flops / step / 1e9}
        x0, draws, cond = trainer._draw_batch(torch.Generator().manual_seed(1))
        net = trainer.network
        inputs = (x0,) if vae else (x0, draws[0], cond)
        if not vae:
            with torch.no_grad(), autocast(trainer.device, settled.precision):
                row["gflop_call"] = count_flops(lambda: net(*inputs)) / batch / 1e9  # one sampling call, per sample
        found = None if registry.kind_of(config.network) == "dit" else biggest_conv(net, inputs)
        if found is not None:  # the DiT's one conv (its patch embedding) is small: its step is matmuls
            conv, shape = found
            row["op"] = (f"conv {conv.in_channels}->{conv.out_channels} {conv.kernel_size[0]}x"
                         f"{conv.kernel_size[1]} at {'x'.join(map(str, shape))}")
            row["op_peak"] = conv_peak(conv, shape, settled.precision, seconds / 2)
    return row


def sampling_row(name: str, root: Path, n: int) -> dict | None:
    """Samples per second of a briefly trained default run at dpmpp-2m 20 (images: guided, w = 3)."""
    _what, flags, vae = MODELS[name]
    if vae:
        return None
    out = root / f"{name}-sampling"
    with contextlib.redirect_stderr(io.StringIO()):
        train_run(train_config({**flags, "steps": 2}), out, progress=False)
    run = load_run(out)
    images = run.config.fitted.image_shape is not None
    def kw(m):
        classes = run.config.network.num_classes
        return {"cond": [i % classes for i in range(m)], "guidance": 3.0} if images else {}

    sampler, steps = "dpmpp-2m", 20  # the reference setting of the docs' tables
    sample_run(run, min(n, 64), sampler, steps, seed=0, **kw(min(n, 64)))  # warm-up
    t0 = time.perf_counter()
    sample_run(run, n, sampler, steps, seed=1, **kw(n))
    rate = n / (time.perf_counter() - t0)
    return {"sampler": f"{sampler} {steps}" + (" guided" if images else ""), "rate": rate,
            "calls": calls_per_sample(run, sampler, steps, images)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--seconds", type=float, default=4.0, help="timing per measurement")
    ap.add_argument("--samples", type=int, default=1000, help="samples per sampling measurement (points x 20)")
    a = ap.parse_args()
    torch.set_num_threads(machine.cores())
    print(machine.describe(peaks=False))
    pk = peaks(a.seconds)
    print("\n## Peaks (square matmul, GFLOP/s)\n\n| dtype | 1 thread | all cores |\n|---|---|---|")
    for dtype in ("float32", "bfloat16"):
        print(f"| {dtype} | {pk[(dtype, 1)]:.0f} | {pk[(dtype, machine.cores())]:.0f} |")
    rows, sampling = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models:
            print(f"# {name} ...", file=sys.stderr, flush=True)
            rows[name] = step_row(name, a.seconds, Path(tmp))
            sampling[name] = sampling_row(name, Path(tmp), a.samples * (20 if name == "mlp" else 1))
    print("\n## Training steps (the trainer's own precision and threads; compiled where `diffkit train` compiles by "
          "default here)\n")
    print("| network | batch | precision, threads | step ms | GFLOP per step | achieved GFLOP/s | dominant op, "
          "alone | its GFLOP/s | share of it | share of the matmul peak |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        mm = pk[("bfloat16" if r["precision"] == "bf16" else "float32", r["threads"])]
        op = r.get("op", "matmul (the peak above)")
        op_peak = r.get("op_peak", mm)
        how = f"{r['precision']}, {r['threads']}" + (", compiled" if r["compiled"] else "")
        print(f"| {r['what']} | {r['batch']} | {how} | {r['step_ms']:.1f} | "
              f"{r['gflop_step']:.3f} | {r['gflops']:.1f} | {op} | {op_peak:.0f} | {r['gflops'] / op_peak:.0%} | "
              f"{r['gflops'] / mm:.0%} |")
    print("\n## Sampling (all cores)\n\n| network | sampler, calls per sample | samples/s | GFLOP per call per sample "
          "| achieved GFLOP/s |")
    print("|---|---|---|---|---|")
    for name, s in sampling.items():
        if s is None:
            continue
        r = rows[name]
        print(f"| {r['what']} | {s['sampler']}, {s['calls']:g} calls | {s['rate']:.0f} | {r['gflop_call']:.3g} | "
              f"{s['calls'] * r['gflop_call'] * s['rate']:.1f} |")


if __name__ == "__main__":
    main()
