"""The MLP's sampling fast path (diffkit/nn/mlp_fast.py) against MLP.forward: milliseconds per call of the default
MLP (a 2-D run's network) on one batch, no gradients, one thread, at one time shared by the batch (a sampler's
call), at a few levels over the rows (a distillation teacher's call: 32 levels, as a 4-step student's first round)
and at a time per row. Weights random (the arithmetic is the same for any); the fastest of --repeats timings.

    .venv/bin/python benchmarks/mlp_fast.py [--rows 1024] [--levels 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from diffkit import machine
from diffkit.nn.mlp import MLP, MLPConfig
from diffkit.nn.mlp_fast import fold_for_sampling

sys.path.insert(0, str(Path(__file__).parent))
from roofline import fastest  # the timing helper the roofline and cost benchmarks share


def per_call_ms(fn, calls: int, repeats: int) -> float:
    """Milliseconds per call: the fastest of `repeats` timed blocks of `calls` calls (roofline.fastest)."""
    return fastest(lambda: [fn() for _ in range(calls)], repeats)[0] / calls * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--levels", type=int, default=32)
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    print(machine.describe(peaks=False))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = MLP(MLPConfig()).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    folded = fold_for_sampling(net)
    x = torch.randn(a.rows, 2)
    times = {
        "one time for the batch (a sampler)": torch.tensor([321.5]).expand(a.rows),
        f"{a.levels} levels over the rows (a distillation teacher)":
            (torch.linspace(0, 999, a.levels)[torch.randint(0, a.levels, (a.rows,))]),
        "a time per row": torch.rand(a.rows) * 999,
    }
    print(f"\n| times ({a.rows} rows, one thread) | MLP.forward ms | fast path ms | speed-up |")
    print("|---|---|---|---|")
    with torch.no_grad():
        for name, t in times.items():
            plain = per_call_ms(lambda t=t: net(x, t.contiguous()), a.calls, a.repeats)
            fast = per_call_ms(lambda t=t: folded(x, t), a.calls, a.repeats)
            print(f"| {name} | {plain:.3f} | {fast:.3f} | {plain / fast:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
