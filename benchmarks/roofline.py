"""How close each default step runs to this machine's roofline.

    .venv/bin/python benchmarks/roofline.py [--models mlp digits mnist5k shapes dit vae] [--seconds 4]

1. Peaks: square fp32 and bf16 matmuls, one thread and all cores (diffkit.machine.matmul_gflops).
2. Per default network (`diffkit train --data D [--cond]` as it is configured today, the DiT as `--net dit` on
   mnist5k, the VAE as `diffkit train-vae --data mnist5k`): the FLOPs of one training step and of one sampling call
   per sample, counted by torch.utils.flop_counter.FlopCounterMode (matmuls, convolutions and attention, forward and
   backward; elementwise work is not counted), the step's time on the trainer's own settled precision and threads
   (the real Trainer.train_step: data draw, loss, backward, optimizer, EMA; under torch.compile where `diffkit
   train` compiles by default on this machine, training.autotune.auto_compile), and the achieved FLOP/s.
3. The op that dominates each step, timed alone at the step's own shapes and precision: for the U-Nets and the
   VAE their 3x3 convolutions, every shape the step calls (forward and backward), weighted by the FLOPs the step
   spends at each (the step's 3x3 FLOPs over the time they take alone); beside it the biggest single one (the
   most FLOPs in one call: this benchmark's reading before 2026-12-07). For the MLP and DiT the matmul peak. The
   share of that peak is what the step reaches.
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


def step_convs(network: torch.nn.Module, inputs) -> list[tuple[torch.nn.Conv2d, tuple, bool]]:
    """Every 3x3 Conv2d call of one forward pass: (the conv, the input shape it saw, whether that input needs a
    gradient in a training step: the first conv's input, the noisy image, does not)."""
    seen = []
    hooks = [m.register_forward_hook(lambda m, a, out: seen.append((m, tuple(a[0].shape), a[0].requires_grad)))
             for m in network.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    try:
        network(*inputs)  # with autograd on, so that requires_grad says what the step differentiates
    finally:
        for h in hooks:
            h.remove()
    return seen


def conv_flops(conv: torch.nn.Conv2d, shape: tuple) -> float:
    """Forward FLOPs of a conv: 2 x output elements x in_channels / groups x kernel area (stride-1, same padding
    as the U-Nets' and the VAE's 3x3 convolutions; strided ones counted at their output size)."""
    out_h = (shape[2] + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
    out_w = (shape[3] + 2 * conv.padding[1] - conv.kernel_size[1]) // conv.stride[1] + 1
    return 2.0 * shape[0] * conv.out_channels * out_h * out_w * conv.in_channels // conv.groups * 9


def conv_peak(conv: torch.nn.Conv2d, shape: tuple, precision: str, seconds: float, input_grad: bool = True) -> float:
    """GFLOP/s of this convolution alone at `shape`: the op itself, forward and backward (the weight gradient, and
    the input's where the step needs it), on tensors already in the step's precision (no casts, no loss around it:
    around a small convolution those take a large share; digits' 64->64 at 8x8 ran at 529-570 GFLOP/s with them,
    685 without)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    x = torch.randn(shape, dtype=dtype)
    w = torch.randn(conv.weight.shape, dtype=dtype)
    b = torch.randn(conv.out_channels, dtype=dtype)
    how = (conv.stride, conv.padding, conv.dilation, False, (0, 0), conv.groups)
    g = torch.randn_like(torch.ops.aten.convolution(x, w, b, *how))

    def step():
        torch.ops.aten.convolution(x, w, b, *how)
        torch.ops.aten.convolution_backward(g, x, w, [conv.out_channels], *how, [input_grad, True, True])

    flops = count_flops(step)
    return flops / timed(step, seconds) / 1e9


def conv_roofline(calls, precision: str, seconds: float) -> dict:
    """The 3x3 convolutions of a step at their own shapes, each timed alone (forward and backward): their FLOP-
    weighted speed, i.e. the step's 3x3 FLOPs over the time they take alone, each shape as often as the step calls
    it; and the biggest single one (the most FLOPs in one call) with its own speed."""
    groups: dict[tuple, list] = {}
    for conv, shape, grad in calls:
        key = (conv.in_channels, conv.out_channels, conv.stride, conv.padding, conv.groups, shape, grad)
        groups.setdefault(key, [conv, shape, grad, 0])[3] += 1
    rates = {key: conv_peak(conv, shape, precision, seconds, grad) for key, (conv, shape, grad, _) in groups.items()}
    work = {key: count * conv_flops(conv, shape) * (3 if grad else 2)  # forward, weight and input gradients
            for key, (conv, shape, grad, count) in groups.items()}
    biggest = max(groups, key=lambda key: conv_flops(groups[key][0], groups[key][1]))
    conv, shape = groups[biggest][:2]
    return {"convs": f"{len(calls)} calls at {len(groups)} shapes",
            "conv_peak": sum(work.values()) / sum(work[key] / rates[key] for key in groups),
            "op": f"conv {conv.in_channels}->{conv.out_channels} 3x3 at {'x'.join(map(str, shape))}",
            "op_peak": rates[biggest]}


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
        calls = [] if registry.kind_of(config.network) == "dit" else step_convs(net, inputs)
        if calls:  # the DiT's one conv (its patch embedding, not 3x3) is small: its step is matmuls
            row.update(conv_roofline(calls, settled.precision, seconds / 4))
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
    print("| network | batch | precision, threads | step ms | GFLOP per step | achieved GFLOP/s | dominant op: "
          "its 3x3 convolutions alone | their GFLOP/s | share of it | the biggest one alone | its GFLOP/s | share "
          "of it | share of the matmul peak |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        mm = pk[("bfloat16" if r["precision"] == "bf16" else "float32", r["threads"])]
        convs, conv_peak_ = (r["convs"], r["conv_peak"]) if "convs" in r else ("matmul (the peak above)", mm)
        op, op_peak = r.get("op", "-"), r.get("op_peak")
        how = f"{r['precision']}, {r['threads']}" + (", compiled" if r["compiled"] else "")
        biggest = f"{op_peak:.0f} | {r['gflops'] / op_peak:.0%}" if op_peak else "- | -"
        print(f"| {r['what']} | {r['batch']} | {how} | {r['step_ms']:.1f} | {r['gflop_step']:.3f} | "
              f"{r['gflops']:.1f} | {convs} | {conv_peak_:.0f} | {r['gflops'] / conv_peak_:.1%} | {op} | {biggest} | "
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
