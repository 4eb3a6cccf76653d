"""Images per second of a distilled student against its teacher's reference setting (dpmpp-2m 20, guided at
w = 3 in the run's interval), timed in turn within each repeat so a slow spell of a shared machine falls on both;
prints every repeat's ratio, their median and the fastest of each.

    .venv/bin/python benchmarks/distill_rate.py --teacher RUN --student RUN [--steps 4] [--n 1000] [--repeats 5]

The draws are benchmarks/distill.py's own (class labels i % 10; the student unguided, its own sampler at K steps:
ddim for a progressive student, consistency sampling for a consistency student).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from distill import draw_fn, timed_repeats  # noqa: E402  (the benchmark's draws and timing)

from diffkit import machine  # noqa: E402
from diffkit.runs import load_run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--student", required=True)
    ap.add_argument("--steps", type=int, default=4, help="the student's sampling steps")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    print(machine.describe(), flush=True)
    teacher, student = load_run(a.teacher), load_run(a.student)
    images = teacher.config.fitted.is_images
    draws = {"reference": draw_fn(teacher, "dpmpp-2m", 20, images, a.n, images),
             "student": draw_fn(student, None, a.steps, images, a.n, False)}
    draws["student"](0)  # warm-up (the reference's first draw is long enough to be its own)

    def report(r, times):
        print(f"repeat {r}: reference {a.n / times['reference'][-1]:.1f}/s, student {a.n / times['student'][-1]:.1f}/s,"
              f" ratio {times['reference'][-1] / times['student'][-1]:.2f}x", flush=True)

    times = timed_repeats(draws, a.repeats, report)
    ratios = [ref / stu for ref, stu in zip(times["reference"], times["student"])]
    print(f"fastest of each: {a.n / min(times['reference']):.1f} against {a.n / min(times['student']):.1f}/s = "
          f"{min(times['reference']) / min(times['student']):.2f}x; each repeat's ratio: median "
          f"{statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f}); target >= 6x")


if __name__ == "__main__":
    main()
