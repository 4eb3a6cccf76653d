"""Eight calls on an image set: where a guided teacher's few-step sampler sits against the guided ODE it
approximates, and a consistency student's re-noising levels against it (paired over sampling seeds).

    .venv/bin/python benchmarks/distill_eight.py --teacher T --student S [--teacher-steps 6 8 12 20 50 100]
        [--levels 0.7,0.26,0.1 ...] [--n 2000] [--seeds 3]
    .venv/bin/python benchmarks/distill_eight.py --teacher T --train 12,1.0 18,0.5 [--student-seed 0] --keep DIR

T: a class-conditional run, sampled by dpmpp-2m at w = 3 in its own guidance interval (benchmarks/distill.py's
reference); its rows at 50 and 100 steps are the guided ODE's own answer, which a deterministic student (progressive
distillation learns that ODE) approaches at best. S: a consistency student of T; each --levels value is one grid of
re-noising levels (data standard deviations, highest first) below the first call at the top, so K levels make K + 1
calls. Every row is compared with the teacher's first --teacher-steps row: the paired difference of FD over the
floor, seed by seed, in standard errors (positive: the row is better). --train LEVELS,LR_SHARE ...: distill a
consistency student of T (w = 3 folded in, its default training length) per pair, with that many levels and that
share of the teacher's learning rate, into DIR, and score each as S (its wall and CPU time printed).
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from distill import GUIDANCE, Scorer, calls_per_sample, draw_fn, paired  # noqa: E402  (the distillation benchmark's)

from diffkit import machine, sampling  # noqa: E402
from diffkit.runs import distill_config, load_run, train_run  # noqa: E402


class FixedLevels:
    """The renoise spacing with the levels given (the library's grid keeps its first call at the top and places
    the rest by its own rule; this benchmark tries other places). Used as a context manager around a draw."""

    def __init__(self, sigmas: list[float]):
        self.sigmas, self.plain = sigmas, sampling.make_grid

    def grid(self, schedule, steps, spacing, **kw):
        plain = self.plain(schedule, steps, spacing, **kw)
        if spacing not in ("renoise", "renoise-low"):  # the consistency sampler's grids (both the same up to 4 calls)
            return plain
        lam = torch.tensor([-2.0 * math.log(s) for s in self.sigmas], dtype=torch.float64)
        return torch.cat([plain[:1], schedule.t_at_log_snr(lam)])

    def __enter__(self):
        sampling.make_grid = self.grid

    def __exit__(self, *exc):
        sampling.make_grid = self.plain


def better_by(base: dict, row: dict) -> float:
    """How far the row's score is below the base's, in standard errors of their paired difference over the seeds
    (distill.paired; positive: the row is better)."""
    m, se = paired(base, row)
    return m / se if se > 0 else math.copysign(math.inf, m)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--student", help="a consistency student of the teacher")
    ap.add_argument("--teacher-steps", type=int, nargs="+", default=[6, 8, 12, 20, 50, 100])
    ap.add_argument("--levels", nargs="*", default=["0.7,0.26,0.1", "34,13,4.9,1.85,0.7,0.26,0.1",
                                                    "1.4,1,0.7,0.5,0.35,0.2,0.1", "0.7,0.26,0.1,0.1,0.1,0.1,0.1"])
    ap.add_argument("--train", nargs="*", default=[], metavar="LEVELS,LR_SHARE",
                    help="distill a consistency student per pair (levels, share of the teacher's learning rate)")
    ap.add_argument("--student-seed", type=int, default=0)
    ap.add_argument("--keep", help="where --train puts its students (default: a temporary folder)")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args()
    print(machine.describe(), flush=True)
    torch.set_num_threads(machine.cores())
    teacher = load_run(a.teacher)
    data = teacher.config.data.spec
    score = Scorer(data, a)
    print(f"\n{data}, {a.seeds} seeds of {a.n}; FD over the floor (mean +- se), guided accuracy; 'vs first': the "
          "paired difference with the first teacher row in standard errors (positive: better)\n")
    print("| row | calls | FD / floor | accuracy | vs first |\n|---|---|---|---|---|")
    base = None
    for k in a.teacher_steps:
        r = score(draw_fn(teacher, "dpmpp-2m", k, True, a.n, True))
        base = base or r
        vs = "-" if r is base else f"{better_by(base, r):+.1f}"
        print(f"| teacher dpmpp-2m {k}, w = {GUIDANCE:g} | {calls_per_sample(teacher, 'dpmpp-2m', k, True):g} | "
              f"{r['q'][0]:.3f} +- {r['q'][1]:.3f} | {r['acc']:.1%} | {vs} |", flush=True)
    students = [("consistency student", a.student)] if a.student else []
    keep = Path(a.keep or tempfile.mkdtemp(prefix="distill_eight_"))
    for pair in a.train:
        levels, share = pair.split(",")
        out = keep / f"levels{levels}-lr{share}-seed{a.student_seed}"
        config = distill_config(a.teacher, method="consistency", guidance=GUIDANCE, levels=int(levels),
                                lr=teacher.config.train.lr * float(share), seed=a.student_seed)
        wall, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        train_run(config, out, overwrite=True, progress=False)
        used = resource.getrusage(resource.RUSAGE_SELF)
        print(f"# {out.name}: {config.train.steps} steps, {time.perf_counter() - wall:.0f} s, "
              f"{used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime:.0f} CPU-s", file=sys.stderr, flush=True)
        students.append((f"{levels} levels, lr {share}x, seed {a.student_seed}", out))
    for name, path in students:
        student = load_run(path)
        r = score(draw_fn(student, "consistency", 1, True, a.n, False))
        print(f"| {name}, 1 call | 1 | {r['q'][0]:.3f} +- {r['q'][1]:.3f} | {r['acc']:.1%} | - |", flush=True)
        for spec in a.levels:
            sigmas = [float(s) for s in spec.split(",")]
            with FixedLevels(sigmas):
                r = score(draw_fn(student, "consistency", len(sigmas) + 1, True, a.n, False))
            print(f"| {name}, levels {spec} | {len(sigmas) + 1} | {r['q'][0]:.3f} +- {r['q'][1]:.3f} | "
                  f"{r['acc']:.1%} | {better_by(base, r):+.1f} |", flush=True)


if __name__ == "__main__":
    main()
