"""Distillation: students against their teachers, quality against network calls.

Per data set: the teacher (the data's default `diffkit train` run, images class-conditional; points: 3000 steps, see
POINTS_TEACHER) at its reference
setting (dpmpp-2m at 20 steps; images guided at w = 3 in the run's interval, so calls inside it count twice); the
teacher's own best sampler at 1, 2, 4, 8 calls per sample (ddim, dpmpp-2m, euler, heun, each at the most steps
that fit; the oracle's rows on gaussians8); a progressive student per K = 1, 2, 4, 8 (`diffkit distill --steps K`)
and one consistency student sampled at 1, 2, 4, 8 steps (images: guidance w = 3 folded into every student). Quality:
the excess energy distance over the data-vs-data floor (points) or the judge's FD over its floor and the guided class
accuracy (images), mean +- standard error over --seeds sampling seeds. Cost: CPU-seconds and peak memory of each
training (its own process), samples per second at each setting.

    .venv/bin/python benchmarks/distill.py --data spiral gaussians8 [--n 20000] [--seeds 3]
    .venv/bin/python benchmarks/distill.py --data digits --n 2000 [--plot docs/distill_digits.png]
    .venv/bin/python benchmarks/distill.py --data mnist5k --n 1000 --ks 4 --nfes 4 --no-consistency   # ~40 min
    .venv/bin/python benchmarks/distill.py --data mnist5k ... --teacher-run runs/mnist5k --teacher-cpu 2061  # reuse
    .venv/bin/python benchmarks/distill.py --data digits --ks 8 --nfes 8 --no-consistency --train-steps 860  # try
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from diffkit import machine
from diffkit.data.images import IMAGE_DATASETS
from diffkit.runs import eval_image_samples, load_run, sample_oracle, sample_run

sys.path.insert(0, str(Path(__file__).parent))
from paths import data_floor, excess  # noqa: E402  (the 2-D quality measure of benchmarks/paths.py)

NFES = (1, 2, 4, 8)
KS = (1, 2, 4, 8)
SAMPLERS = ("ddim", "dpmpp-2m", "euler", "heun")
GUIDANCE = 3.0
# points: the teacher is TrainConfig's full 3000-step run at lr 2e-3 (every figure in docs/distill.md was measured on
# it), not the shorter default run of spiral and gaussians8 (presets.SHORT_POINTS); the students' default training
# lengths are shares of their teacher's steps
POINTS_TEACHER = {"steps": 3000, "lr": 2e-3}

JOB = """
import json, resource, sys, time, contextlib, io
from diffkit.runs import distill_run, train_config, train_run
spec = json.loads(sys.argv[1])
t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
with contextlib.redirect_stderr(io.StringIO()):
    if spec["kind"] == "teacher":
        train_run(train_config(spec["flags"]), spec["out"], progress=False)
    else:
        distill_run(spec["teacher"], spec["out"], progress=False, **spec["flags"])
c1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime,
                  "peak_mb": c1.ru_maxrss / 1024}))
"""


def job(spec: dict) -> dict:
    """Train a teacher or distill a student in a process of its own (its CPU-seconds and peak memory apart)."""
    out = subprocess.run([sys.executable, "-c", JOB, json.dumps(spec)], check=False, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def calls_per_sample(run, sampler: str, steps: int, guided: bool) -> float:
    """Network calls per sample, counted (guided steps inside the interval call the network on twice the batch)."""
    rows, net = [], run.denoiser.network
    run.denoiser.network = lambda x, *rest: rows.append(len(x)) or net(x, *rest)
    try:
        kw = {"cond": 0, "guidance": GUIDANCE} if guided else {}
        sample_run(run, 4, sampler, steps, seed=0, **kw)
    finally:
        run.denoiser.network = net
    return sum(rows) / 4


def best_fit(run, nfe: int, guided: bool) -> list[tuple[str, int]]:
    """Per sampler, the most steps whose calls per sample fit in nfe."""
    out = []
    for sampler in SAMPLERS:
        fits = [k for k in range(1, nfe + 1) if calls_per_sample(run, sampler, k, guided) <= nfe]
        if fits:
            out.append((sampler, max(fits)))
    return out


def mean_se(v: list[float]) -> tuple[float, float]:
    return statistics.mean(v), (statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else 0.0)


class Scorer:
    """Quality of a setting over seeds: points (excess energy distance) or images (FD / floor, accuracy)."""

    def __init__(self, data: str, a):
        self.data, self.n, self.seeds = data, a.n, a.seeds
        self.images = data in IMAGE_DATASETS
        self.floor = None if self.images else data_floor(data, a.n)

    def __call__(self, draw) -> dict:
        q, acc, rate = [], [], []
        for seed in range(self.seeds):
            t0 = time.perf_counter()
            x = draw(seed)
            rate.append(self.n / (time.perf_counter() - t0))
            if self.images:
                labels = [i % 10 for i in range(self.n)]
                m = eval_image_samples(x, self.data, labels=labels, seed=seed, progress=False)
                q.append(m["fd"] / m["fd_floor"])
                acc.append(m["class_accuracy"])
            else:
                q.append(excess(x, self.data, self.n, seed, self.floor))
        # the rate: the fastest seed's (each draw is one timed batch; a slower one met other work on the machine)
        return {"q": mean_se(q), "v": q, "acc": statistics.mean(acc) if acc else None, "rate": max(rate)}


def draw_fn(run, sampler, steps, images: bool, n: int, guided: bool):
    labels = [i % 10 for i in range(n)] if images else None
    kw = {"cond": labels, "guidance": GUIDANCE} if guided else ({"cond": labels} if images else {})
    return lambda seed: sample_run(run, n, sampler, steps, seed=seed, **kw)


def timed_repeats(draws: dict, repeats: int, report=None) -> dict:
    """Seconds of each setting's draw(0), `repeats` times, the settings taken in turn within every repeat, so a slow
    spell of a shared machine falls on all of them alike; report(r, times) after each repeat."""
    times = {name: [] for name in draws}
    for r in range(repeats):
        for name, draw in draws.items():
            t0 = time.perf_counter()
            draw(0)
            times[name].append(time.perf_counter() - t0)
        if report is not None:
            report(r, times)
    return times


def throughput(draws: dict, n: int, repeats: int) -> dict:
    """Samples per second of each setting: the fastest of `repeats` interleaved timed draws (a single timed batch of
    a short row varied by up to a third between runs)."""
    return {name: n / min(t) for name, t in timed_repeats(draws, repeats).items()}


def bench(data: str, a, root: Path) -> dict:
    images = data in IMAGE_DATASETS
    score = Scorer(data, a)
    flags = {"data": data, **({"cond": True} if images else {}), **({} if images else POINTS_TEACHER),
             **({"objective": a.teacher_objective} if a.teacher_objective else {})}
    rows, costs = {}, {}
    teacher_dir = Path(a.teacher_run) if a.teacher_run else root / "teacher"
    if a.teacher_run:  # a default run trained before (read in place), its CPU-seconds measured where it trained
        costs["teacher"] = {"cpu": a.teacher_cpu, "wall": float("nan"), "peak_mb": float("nan")}
    else:
        costs["teacher"] = job({"kind": "teacher", "flags": flags, "out": str(teacher_dir)})
    print(f"# {data}: teacher trained in {costs['teacher']['wall']:.0f} s", file=sys.stderr, flush=True)
    teacher = load_run(teacher_dir)
    ref_calls = calls_per_sample(teacher, "dpmpp-2m", 20, images)
    rows["teacher, dpmpp-2m 20 (reference)"] = {ref_calls: score(draw_fn(teacher, "dpmpp-2m", 20, images, a.n, images))}
    best = {}
    for nfe in NFES:
        cells = {f"{s} {k}": score(draw_fn(teacher, s, k, images, a.n, images)) for s, k in best_fit(teacher, nfe, images)}
        name = min(cells, key=lambda c: cells[c]["q"][0])
        best[nfe] = {**cells[name], "setting": name}
    rows["teacher, its best sampler"] = best
    if data == "gaussians8":
        oracle = {}
        for nfe in NFES:
            cells = {f"{s} {k}": score(lambda seed, s=s, k=k: sample_oracle(data, a.n, s, k, seed=seed))
                     for s, k in (("ddim", nfe), ("dpmpp-2m", nfe), ("heun", max(1, nfe // 2)))}
            name = min(cells, key=lambda c: cells[c]["q"][0])
            oracle[nfe] = {**cells[name], "setting": name}
        rows["exact denoiser (oracle), best sampler"] = oracle
    guide = {"guidance": GUIDANCE} if images else {}
    progressive = {}
    for k in KS:
        name = f"progressive K={k}"
        costs[name] = job({"kind": "student", "teacher": str(teacher_dir), "out": str(root / name),
                           "flags": {"method": "progressive", "steps": k, **guide,
                                     **({"train_steps": a.train_steps} if a.train_steps else {})}})
        print(f"# {data}: {name} in {costs[name]['wall']:.0f} s", file=sys.stderr, flush=True)
        progressive[k] = score(draw_fn(load_run(root / name), "ddim", k, images, a.n, False))
    rows["progressive students (one per K)"] = progressive
    if a.consistency:
        costs["consistency"] = job({"kind": "student", "teacher": str(teacher_dir),
                                    "out": str(root / "consistency"), "flags": {"method": "consistency", **guide}})
        student = load_run(root / "consistency")
        rows["consistency student"] = {k: score(draw_fn(student, "consistency", k, images, a.n, False)) for k in NFES}
    if images and a.grid:
        grid(teacher, root, a.grid)
    rates = {}
    if images and 4 in KS:  # the throughput line: the 4-call students against the reference
        draws = {"reference": draw_fn(teacher, "dpmpp-2m", 20, images, a.n, images),
                 "progressive K=4": draw_fn(load_run(root / "progressive K=4"), "ddim", 4, images, a.n, False)}
        if a.consistency:
            draws["consistency at 4"] = draw_fn(load_run(root / "consistency"), "consistency", 4, images, a.n, False)
        rates = throughput(draws, a.n, a.rate_repeats)
    return {"rows": rows, "costs": costs, "ref_calls": ref_calls, "rates": rates}


def grid(teacher, root: Path, path: str) -> None:
    """Rows of the same noises, one column per class: the teacher at about 40 calls (dpmpp-2m, guided at w = 3 in
    its interval), then the progressive students at 4, 2 and 1 calls."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffkit.viz.images import grid_array

    steps = next(k for k in range(2, 100) if calls_per_sample(teacher, "dpmpp-2m", k, True) >= 40)
    classes, per = list(range(10)), 3
    labels = [c for c in classes for _ in range(per)]
    shown = [(f"teacher, dpmpp-2m {steps} steps ({calls_per_sample(teacher, 'dpmpp-2m', steps, True):g} calls)",
              sample_run(teacher, len(labels), "dpmpp-2m", steps, seed=0, cond=labels, guidance=GUIDANCE))]
    for k in (4, 2, 1):  # the progressive students that were distilled, then the consistency student at 4, 2, 1
        if (root / f"progressive K={k}").exists():
            student = load_run(root / f"progressive K={k}")
            shown.append((f"progressive student, {k} call{'s' if k > 1 else ''}",
                          sample_run(student, len(labels), seed=0, cond=labels)))
    if (root / "consistency").exists():
        student = load_run(root / "consistency")
        shown += [(f"consistency student, {k} call{'s' if k > 1 else ''}",
                   sample_run(student, len(labels), steps=k, seed=0, cond=labels)) for k in (4, 2, 1)]
    fig, axes = plt.subplots(len(shown), 1, figsize=(5, 1.45 * len(shown)))
    for ax, (title, x) in zip(axes, shown):
        ax.imshow(grid_array(x.reshape(10, per, *x.shape[1:]).transpose(1, 0, 2, 3, 4).reshape(-1, *x.shape[1:]),
                             nrow=10, scale=2), cmap="gray")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}", file=sys.stderr)


def cell(c: dict, images: bool) -> str:
    m, se = c["q"]
    q = f"{m:.2f}x +- {se:.2f}" if images else f"{m:.1e} +- {se:.0e}"
    acc = f", {c['acc']:.1%}" if c.get("acc") is not None else ""
    setting = f" ({c['setting']})" if "setting" in c else ""
    return f"{q}{acc}{setting}, {c['rate']:.0f}/s"


def print_table(data: str, r: dict, a) -> None:
    images = data in IMAGE_DATASETS
    what = "FD / floor, guided class accuracy" if images else "excess energy distance over the data floor"
    print(f"\n## {data}: {what}; mean +- se over {a.seeds} sampling seeds of {a.n}; samples per second\n")
    ref_name = "teacher, dpmpp-2m 20 (reference)"
    (ref_calls, ref), = r["rows"][ref_name].items()
    print(f"Reference: the teacher at dpmpp-2m 20 steps{' guided at w = 3 in its interval' if images else ''}, "
          f"{ref_calls:g} calls per sample: {cell(ref, images)}\n")
    print("| row | " + " | ".join(f"{k} call{'s' if k > 1 else ''}" for k in NFES) + " |")
    print("|---" * (len(NFES) + 1) + "|")
    for name, cells in r["rows"].items():
        if name == ref_name:
            continue
        print(f"| {name} | " + " | ".join(cell(cells[k], images) if k in cells else "-" for k in NFES) + " |")
    t = r["costs"]["teacher"]
    print(f"\nCost (own process each): teacher {t['cpu']:.0f} CPU-s ({t['wall']:.0f} s wall, peak {t['peak_mb']:.0f} MB)")
    for name, c in r["costs"].items():
        if name != "teacher":
            print(f"- {name}: {c['cpu']:.0f} CPU-s = {c['cpu'] / t['cpu']:.2f}x the teacher's training "
                  f"({c['wall']:.0f} s wall, peak {c['peak_mb']:.0f} MB)")
    print_checks(data, r, images)


def excess_ratio(x: tuple, ref: tuple) -> float:
    """x's excess over ref's, where ref's excess within 2 standard errors of zero counts as 2 standard errors."""
    return x[0] / max(ref[0], 2 * ref[1])


def paired(a: dict, b: dict, scale: float = 1.0) -> tuple[float, float]:
    """Mean and standard error of a - scale * b over the sampling seeds, which both rows share (the same starting
    noise and the same reference sample per seed), so the seed-to-seed noise they have in common cancels."""
    return mean_se([x - scale * y for x, y in zip(a["v"], b["v"])])


def print_checks(data: str, r: dict, images: bool) -> None:
    """The issue's acceptance lines, each with its numbers."""
    rows = r["rows"]
    (_ref_calls, ref), = rows["teacher, dpmpp-2m 20 (reference)"].items()
    prog, cons, best = rows["progressive students (one per K)"], rows.get("consistency student", {}), \
        rows["teacher, its best sampler"]
    print()
    if images:  # FD ratios are of FD itself (its floor is the same for every row)
        targets = ((4, 1.5, 0.95),) if data == "mnist5k" else ((4, 1.2, 0.99), (1, 2.0, 0.95))  # the issue's
        for k, fd_max, acc_min in targets:
            if k not in prog:
                continue
            s = prog[k]
            print(f"- progressive at {k} call{'s' if k > 1 else ''}: FD {s['q'][0] / ref['q'][0]:.2f}x the teacher's "
                  f"(target <= {fd_max}), accuracy {s['acc']:.1%} (target >= {acc_min:.0%}), "
                  f"{s['rate'] / ref['rate']:.1f}x the reference's samples per second (one timed batch per seed)")
    else:
        for k, target in ((k, t) for k, t in ((4, 1.2), (1, 2.0)) if k in prog):
            m, se = paired(prog[k], ref, target)
            print(f"- progressive at {k} call{'s' if k > 1 else ''}: excess {excess_ratio(prog[k]['q'], ref['q']):.2f}x "
                  f"the teacher's at its reference (target <= {target}; paired over seeds, student - {target} x "
                  f"reference = {m:.1e} +- {se:.0e})")
    for name, cells in (("progressive", prog), ("consistency", cons)):
        for k in (k for k in NFES if k in cells):
            m, bm = cells[k]["q"][0], best[k]["q"][0]
            d, dse = paired(best[k], cells[k])  # the teacher's best minus the student, seed by seed
            z = d / dse if dse else math.inf
            print(f"- {name} at {k}: {m:.3g} against the teacher's best ({best[k]['setting']}) {bm:.3g}: "
                  f"{'better by ' + format(z, '.1f') + ' se' if z > 2 else 'NOT better by 2 se (' + format(z, '.1f') + ')'} "
                  "of the paired difference")
    rates = r.get("rates", {})
    for name in (n for n in rates if n != "reference"):
        print(f"- throughput of {name}: {rates[name]:.0f} against the reference's {rates['reference']:.0f} samples/s = "
              f"{rates[name] / rates['reference']:.2f}x (target >= 6x; the fastest of interleaved timings)")
    t = r["costs"]["teacher"]["cpu"]
    for name, limit in ((n, v) for n, v in (("progressive K=4", 1.0), ("progressive K=1", 2.0)) if n in r["costs"]):
        print(f"- cost of {name}: {r['costs'][name]['cpu'] / t:.2f}x the teacher's training (target <= {limit})")


# one colour per row on every data set's panel (points add the oracle's row; colours by order would shift)
ROW_COLOURS = {"teacher, dpmpp-2m 20 (reference)": "C0", "teacher, its best sampler": "C1",
               "progressive students (one per K)": "C2", "consistency student": "C3",
               "exact denoiser (oracle), best sampler": "C7"}


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, (data, r) in zip(axes[0], results.items()):
        images = data in IMAGE_DATASETS
        for name, cells in r["rows"].items():
            ks = sorted(cells)
            ax.plot(ks, [max(cells[k]["q"][0], 1e-6) for k in ks], marker="o", label=name, color=ROW_COLOURS.get(name))
        ax.set(xscale="log", yscale="log", xlabel="network calls per sample",
               ylabel="FD / floor" if images else "excess energy distance", title=data)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"\nwrote {path}")


def main() -> None:
    global KS, NFES
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["spiral", "gaussians8"])
    ap.add_argument("--n", type=int, default=20_000, help="samples per seed (images: 2000 is plenty)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--plot")
    ap.add_argument("--grid", help="images: a PNG of the teacher at about 40 calls against the students at 4, 2, 1 "
                    "calls (the progressive ones distilled, then the consistency student)")
    ap.add_argument("--ks", type=int, nargs="+", default=list(KS), help="the progressive students' K (default 1 2 4 8)")
    ap.add_argument("--nfes", type=int, nargs="+", default=list(NFES), help="the budgets of the table (default 1 2 4 8)")
    ap.add_argument("--teacher-objective", choices=["ddpm", "edm", "flow"],
                    help="the teacher's objective (default: the data set's default run's)")
    ap.add_argument("--teacher-run", help="take this trained run as the teacher instead of training one (with "
                                          "--teacher-cpu: its training's CPU-seconds, measured where it trained)")
    ap.add_argument("--teacher-cpu", type=float)
    ap.add_argument("--train-steps", type=int, help="the progressive students' training steps (default: theirs)")
    ap.add_argument("--keep", help="keep the teacher and the students in this folder (default: a temporary one)")
    ap.add_argument("--rate-repeats", type=int, default=3,
                    help="images: timed draws per setting for the throughput line (default 3)")
    ap.add_argument("--consistency", action=argparse.BooleanOptionalAction, default=True,
                    help="also the consistency student (default yes)")
    a = ap.parse_args()
    KS, NFES = tuple(a.ks), tuple(a.nfes)
    if bool(a.teacher_run) != (a.teacher_cpu is not None) or (a.teacher_run and len(a.data) > 1):
        ap.error("--teacher-run and --teacher-cpu go together, with one --data")
    torch.set_num_threads(os.cpu_count() or 1)
    print(machine.describe())
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = a.keep or tmp
        os.environ.setdefault("DIFFKIT_CACHE", str(Path(tmp) / "cache"))
        for data in a.data:
            (Path(tmp) / data).mkdir(parents=True)
            results[data] = bench(data, a, Path(tmp) / data)
            print_table(data, results[data], a)
    if a.plot:
        plot(results, a.plot)


if __name__ == "__main__":
    main()
