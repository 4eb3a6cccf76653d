"""DDPM, EDM, rectified flow and 2-rectified flow side by side on 2-D data: quality against network calls.

    .venv/bin/python benchmarks/paths.py [--data spiral moons gaussians8] [--steps 3000] [--n 20000] [--seeds 3]
                                         [--pairs 20000] [--plot docs/paths_2d.png] [--no-peers]
    .venv/bin/python benchmarks/paths.py --grids [--data spiral]       # each path's sampling grid
    .venv/bin/python benchmarks/paths.py --images digits [--n 1000] [--pairs 4000] [--teacher best]
    .venv/bin/python benchmarks/paths.py --images mnist5k --n 1000 --pairs 4000 --formulations flow-logit-normal \
        --reuse flow-logit-normal=runs/mnist5k                  # the 2-rectified row of a trained default run

Each formulation trains the same default MLP for the same number of steps (their wall times are printed: the
network and batch are the same, so equal steps are equal time up to noise); 2-rectified flow is reflow of the
flow-logit-normal run (its pairs and training time counted apart). Quality: the energy distance to fresh data
(n points, O(n log n) projections) minus the data-vs-data floor, mean and standard error over --seeds sampling
seeds, at 1, 2, 4, 8, 16 and 32 network calls with Euler (ddim on the trailing grid: on a flow exactly
x' = x + (tau' - tau) u) and with dpmpp-2m; and the straightness S of each (Liu et al. 2023, eq. 5). Where the data
is a Gaussian mixture, the exact ODE's rows (the oracle on the flow path) show the sampler's own error.
Peer rows (`make bench-peers` installs them): torchcfm's rectified-flow and OT-CFM matchers training the same MLP
for the flow run's wall time in a plain loop, as its own 2-D examples do; k-diffusion's EDM recipe where its
package imports (it imports torchvision at the top, which does not load beside the local torch build; the row
then says so).
Run it alone: two torch processes on 2 cores slow each other.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

from diffkit import machine
from diffkit.data.points import PointSource, check_spec
from diffkit.metrics.points import projected_energy_distance
from diffkit.runs import (
    eval_image_samples,
    load_run,
    reflow_run,
    sample_oracle,
    sample_run,
    straightness_run,
    train_config,
    train_run,
)

NFES = (1, 2, 4, 8, 20, 32)
FORMULATIONS = {"ddpm": {}, "edm": {"objective": "edm"}, "flow-uniform": {"objective": "flow", "time_dist": "uniform"},
                "flow-logit-normal": {"objective": "flow"}}


def excess(x, data: str, n: int, seed: int, floor: float) -> float:
    ref = PointSource(check_spec(data)).fresh(n, 10_000 + seed)
    return projected_energy_distance(x, ref) - floor


def data_floor(data: str, n: int) -> float:
    src = PointSource(check_spec(data))
    return statistics.mean(projected_energy_distance(src.fresh(n, 20_000 + k), src.fresh(n, 30_000 + k))
                           for k in range(3))


def rows_for(draw, data: str, n: int, seeds: int, floor: float, euler_only: bool = False) -> dict:
    """{(sampler, nfe): (mean, se)} of the excess energy distance; draw(sampler, steps, seed) -> samples."""
    out = {}
    for sampler in ("ddim",) if euler_only else ("ddim", "dpmpp-2m"):
        for nfe in NFES:
            if sampler == "dpmpp-2m" and nfe < 2:
                continue
            v = [excess(draw(sampler, nfe, s), data, n, s, floor) for s in range(seeds)]
            out[(sampler, nfe)] = (statistics.mean(v), statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else 0.0)
    return out


def train(data: str, flags: dict, steps: int, out: Path) -> float:
    cfg = train_config({"data": data, "steps": steps, "seed": 0, "precision": "fp32", "threads": 1, **flags})
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        train_run(cfg, out, progress=False)
    return time.perf_counter() - t0


def bench(data: str, a, root: Path) -> dict:
    floor, table, costs, straight = data_floor(data, a.n), {}, {}, {}
    for name, flags in FORMULATIONS.items():
        costs[name] = f"{train(data, flags, a.steps, root / name):.1f} s"
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        reflow_run(root / "flow-logit-normal", root / "2-rectified", pairs=a.pairs, train_steps=a.steps,
                   progress=False)
    costs["2-rectified"] = f"+{time.perf_counter() - t0:.1f} s (pairs and training)"
    for name in (*FORMULATIONS, "2-rectified"):
        run = load_run(root / name)
        table[name] = rows_for(lambda s, k, seed, run=run: sample_run(run, a.n, s, k, seed=seed), data, a.n, a.seeds,
                               floor)
        straight[name] = straightness_run(run, 2000)["straightness"]
    peers = peer_rows(data, a, floor, float(costs["flow-logit-normal"].split()[0])) if a.peers else {}
    for name, rows in peers.items():
        if isinstance(rows, str):
            costs[name] = rows
        else:
            table[name], costs[name] = rows, costs["flow-logit-normal"]
    if data == "gaussians8":
        table["exact flow (oracle)"] = rows_for(
            lambda s, k, seed: sample_oracle(data, a.n, s, k, objective="flow", seed=seed), data, a.n, a.seeds, floor)
    return {"floor": floor, "table": table, "costs": costs, "straight": straight}


# --- peers: the same data, network (diffkit's default MLP) and wall time, trained in the peer's own way ----------

def peer_rows(data: str, a, floor: float, seconds: float) -> dict:
    """{name: rows or the reason it cannot run}: torchcfm's rectified-flow (I-CFM, sigma = 0) and OT-CFM (exact
    OT couplings per batch, sigma = 0) matchers in a plain loop as its 2-D examples write it (Adam at 1e-3, batches
    of 256, x0 noise -> x1 data, t in [0, 1]), training diffkit's default MLP on the run's training points for
    `seconds`, sampled with Euler; k-diffusion's EDM, where its package imports."""
    out = {}
    try:
        from torchcfm.conditional_flow_matching import (
            ConditionalFlowMatcher,
            ExactOptimalTransportConditionalFlowMatcher,
        )
    except ImportError as e:  # a benchmark extra: `make bench-peers`
        out["torchcfm"] = f"not installed ({e}); `make bench-peers` installs it"
    else:
        for name, matcher in (("torchcfm rectified flow", ConditionalFlowMatcher(sigma=0.0)),
                              ("torchcfm OT-CFM", ExactOptimalTransportConditionalFlowMatcher(sigma=0.0))):
            net, norm, steps = _peer_train(data, seconds, lambda net, x1, g, m=matcher: _cfm_loss(m, net, x1, g))
            out[f"{name} ({steps} steps)"] = rows_for(lambda s, k, seed, net=net, norm=norm: _cfm_euler(
                net, norm, a.n, k, seed) if s == "ddim" else None, data, a.n, a.seeds, floor, euler_only=True)
    try:
        import k_diffusion  # noqa: F401
    except Exception as e:
        out["k-diffusion EDM"] = (
            f"cannot run here: `import k_diffusion` fails ({type(e).__name__}: {e}). Its package imports torchvision "
            "at the top (k_diffusion/utils.py, evaluation.py) and PyPI's torchvision does not load beside the local "
            "torch 2.13 build (torchvision 0.29.1: 'operator torchvision::nms does not exist'), so `make "
            "bench-peers` does not install it; diffkit's --objective edm follows the same recipe (Karras et al. "
            "2022, Table 1: preconditioning, log-normal sigma, loss weight)")
    return out


PEER_BATCH = 256  # torchcfm's 2-D examples


def _peer_train(data: str, seconds: float, loss_fn):
    import torch

    from diffkit.data.normalize import Normalizer
    from diffkit.nn.registry import build_network

    torch.set_num_threads(1)  # as the diffkit rows (threads 1)
    cfg = train_config({"data": data})
    x = PointSource(check_spec(data)).train_labeled(cfg.data.num_points, 0)[0]
    norm = Normalizer.fit(x)
    xn = torch.tensor(norm.apply(x), dtype=torch.float32)
    torch.manual_seed(0)
    net = build_network(cfg.network)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        x1 = xn[torch.randint(len(xn), (PEER_BATCH,), generator=g)]
        loss = loss_fn(net, x1, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    return net.eval(), norm, steps


def _cfm_loss(matcher, net, x1, g):
    """torchcfm's conditional flow matching loss: its matcher draws t, x_t and the target u_t for (noise, data)."""
    import torch

    t, xt, ut = matcher.sample_location_and_conditional_flow(torch.randn(x1.shape, generator=g), x1)
    return (net(xt, 1000 * t) - ut).square().mean()


def _cfm_euler(net, norm, n: int, nfe: int, seed: int):
    import torch

    x = torch.randn((n, 2), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for k in range(nfe):
            x = x + net(x, torch.full((n,), 1000.0 * k / nfe)) / nfe
    return norm.invert(x.double().numpy())


def print_table(data: str, r: dict, a) -> None:
    print(f"\n## {data}: excess energy distance over the data floor ({r['floor']:.2e}), mean +- se over {a.seeds} "
          f"seeds, n = {a.n}; training {a.steps} steps each\n")
    cols = [(s, k) for s in ("ddim", "dpmpp-2m") for k in NFES if not (s == "dpmpp-2m" and k < 2)]
    print("| formulation | train | S | " + " | ".join(f"{'euler' if s == 'ddim' else s} {k}" for s, k in cols) + " |")
    print("|---" * (len(cols) + 3) + "|")
    for name, rows in r["table"].items():
        cells = " | ".join(f"{rows[c][0]:.1e} +- {rows[c][1]:.0e}" if c in rows else "-" for c in cols)
        s = r["straight"].get(name)
        print(f"| {name} | {r['costs'].get(name, '-')} | {'-' if s is None else f'{s:.3f}'} | {cells} |")
    for name, why in r["costs"].items():
        if name not in r["table"]:
            print(f"\n{name}: {why}")
    print_checks(r["table"])


def ratio(a: tuple, ref: tuple) -> float:
    """a's excess over ref's, where ref's excess within 2 standard errors of zero counts as 2 standard errors."""
    return a[0] / max(ref[0], 2 * ref[1]) if ref[0] <= 2 * ref[1] else a[0] / ref[0]


def print_checks(t: dict) -> None:
    """The issue's comparisons, each with its numbers: edm and flow against ddpm at 20 calls (dpmpp-2m), 2-rectified
    flow's 1 call against 1-rectified flow's, its 4 Euler calls against its teacher's dpmpp-2m at 20."""
    ddpm = t["ddpm"][("dpmpp-2m", 20)]
    for name in ("edm", "flow-uniform", "flow-logit-normal"):
        x = t[name][("dpmpp-2m", 20)]
        z = (x[0] - ddpm[0]) / math.hypot(x[1], ddpm[1])
        print(f"- {name} at 20 calls (dpmpp-2m): {x[0]:.1e} against ddpm's {ddpm[0]:.1e}, a difference of "
              f"{z:+.1f} standard errors ({'within noise' if abs(z) <= 2 else 'not within noise'})")
    two, one = t["2-rectified"], t["flow-logit-normal"]
    print(f"- 2-rectified flow at 1 call: {one[('ddim', 1)][0] / max(two[('ddim', 1)][0], 2 * two[('ddim', 1)][1]):.0f}x "
          f"lower excess than 1-rectified flow's at 1 call (target >= 5x)")
    print(f"- 2-rectified flow at 4 Euler calls: {ratio(two[('ddim', 4)], one[('dpmpp-2m', 20)]):.2f}x its teacher's "
          f"dpmpp-2m at 20 calls (target <= 1.5x)")


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, (data, r) in zip(axes[0], results.items()):
        for name, rows in r["table"].items():
            ks = [k for k in NFES if ("ddim", k) in rows]
            ax.plot(ks, [max(rows[("ddim", k)][0], 1e-5) for k in ks], marker="o", label=name)
        ax.set(xscale="log", yscale="log", xlabel="network calls (Euler)", ylabel="excess energy distance",
               title=data)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"\nwrote {path}")


GRID_NFES = (4, 8, 16)


def bench_grids(data: str, a, root: Path) -> None:
    """The default grid per path, by measurement: each formulation's excess energy distance with ddim (Euler) and
    dpmpp-2m on the trailing grid (uniform in the path's index: uniform in the flow's shifted time, log-uniform in
    EDM's sigma, the VP schedule's own steps), Karras rho = 7 and uniform log-SNR."""
    floor = data_floor(data, a.n)
    print(f"\n## {data}: the grid per path, excess energy distance (mean +- se over {a.seeds} seeds, n = {a.n})\n")
    cols = [(s, k) for s in ("ddim", "dpmpp-2m") for k in GRID_NFES]
    print("| formulation | spacing | " + " | ".join(f"{s} {k}" for s, k in cols) + " |")
    print("|---" * (len(cols) + 2) + "|")
    for name in ("ddpm", "edm", "flow-logit-normal"):
        train(data, FORMULATIONS[name], a.steps, root / name)
        run = load_run(root / name)
        for spacing in ("trailing", "karras", "logsnr"):
            cells = []
            for sampler, nfe in cols:
                v = [excess(sample_run(run, a.n, sampler, nfe, seed=seed, spacing=spacing), data, a.n, seed, floor)
                     for seed in range(a.seeds)]
                cells.append(f"{statistics.mean(v):.1e} +- {statistics.stdev(v) / math.sqrt(len(v)):.0e}")
            print(f"| {name} | {spacing} | " + " | ".join(cells) + " |", flush=True)


IMAGE_NFES = (2, 4, 8, 20)


def bench_images(data: str, a, root: Path) -> None:
    """The default class-conditional run of an image set (its preset: network, steps, batch) under each objective,
    and 2-rectified flow by reflow of the formulation with the lowest FD at 20 calls (--teacher best) or of the
    one named; dpmpp-2m at each NFE, guided at w in the run's interval, classes cycled; the judge's FD against its
    floor and the class accuracy."""
    print(f"\n## {data}: FD / floor and guided class accuracy (w = {a.guidance}, {a.n} samples, classes cycled, "
          "dpmpp-2m)\n")
    print("| formulation | train | S | " + " | ".join(f"NFE {k}" for k in IMAGE_NFES) + " |")
    print("|---" * (len(IMAGE_NFES) + 3) + "|")
    fd20 = {}
    rows = {"ddpm": {"objective": "ddpm"}, "edm": {"objective": "edm"}, "flow-logit-normal": {"objective": "flow"},
            "2-rectified": None}
    rows = {k: v for k, v in rows.items() if v is None or k in a.formulations}
    reused = dict(r.split("=", 1) for r in a.reuse)
    where = {name: root / name for name in rows} | reused
    for name, flags in rows.items():
        if flags is None and not a.reflow:
            break
        t0 = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):
            if flags is None:
                teacher = min(fd20, key=fd20.get) if a.teacher == "best" else a.teacher
                name = f"2-rectified ({teacher})"
                where[name] = root / name
                reflow_run(where[teacher], where[name], pairs=a.pairs, guidance=a.guidance, progress=False)
            elif name not in reused:
                train_run(train_config({"data": data, "cond": True, **flags}), where[name], progress=False)
        cost = time.perf_counter() - t0
        run = load_run(where[name])
        K = run.config.network.num_classes
        cells = []
        for nfe in IMAGE_NFES:
            labels = [i % K for i in range(a.n)]
            x = sample_run(run, a.n, "dpmpp-2m", nfe, seed=0, cond=labels, guidance=a.guidance)
            m = eval_image_samples(x, data, labels=labels, progress=False)
            cells.append(f"{m['fd'] / m['fd_floor']:.2f}x, {m['class_accuracy']:.1%}")
            fd20[name] = m["fd"]
        s = straightness_run(run, 500, cls=0)["straightness"]
        spent = "reused" if name in reused else f"{'+' if flags is None else ''}{cost:.0f} s"
        print(f"| {name} | {spent} | {s:.3f} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["spiral", "moons", "gaussians8"])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=20_000)
    ap.add_argument("--plot")
    ap.add_argument("--grids", action="store_true", help="instead: each path's sampling grid, by measurement")
    ap.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True,
                    help="2-D: torchcfm's and k-diffusion's rows at the flow run's wall time (default on)")
    ap.add_argument("--images", help="instead: an image set (digits, mnist5k), its default class-conditional run")
    ap.add_argument("--guidance", type=float, default=3.0, help="--images: the guidance scale (default 3)")
    ap.add_argument("--formulations", nargs="+", default=["ddpm", "edm", "flow-logit-normal"],
                    choices=["ddpm", "edm", "flow-logit-normal"], help="--images: the rows to train (default all)")
    ap.add_argument("--reflow", action=argparse.BooleanOptionalAction, default=True,
                    help="--images: also the 2-rectified row (default on)")
    ap.add_argument("--reuse", nargs="+", default=[], metavar="NAME=RUN",
                    help="--images: take a formulation's run from a run directory trained before (e.g. "
                         "flow-logit-normal=runs/mnist5k) instead of training it; its train cell says so")
    ap.add_argument("--teacher", default="best", choices=("best", "ddpm", "edm", "flow-logit-normal"),
                    help="--images: the reflow teacher (default: the lowest FD at 20 calls)")
    a = ap.parse_args()
    print(machine.describe())
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DIFFKIT_CACHE"] = str(Path(tmp) / "cache")
        if a.images:
            return bench_images(a.images, a, Path(tmp))
        if a.grids:
            for data in a.data:
                (Path(tmp) / data).mkdir()
                bench_grids(data, a, Path(tmp) / data)
            return
        for data in a.data:
            (Path(tmp) / data).mkdir()
            results[data] = bench(data, a, Path(tmp) / data)
            print_table(data, results[data], a)
    if a.plot:
        plot(results, a.plot)


if __name__ == "__main__":
    main()
