"""The lab's "Few steps" panel: a distilled student and its teacher side by side from the same noise at the same
budget of network calls (1-8), with the calls each really made, the seconds each took and, for 2-D runs, the
energy distance of their samples to fresh data."""

from __future__ import annotations

import time

from ..data.points import PointSource
from ..errors import DiffkitError
from ..metrics.points import energy_distance
from ..runs import load_run, run_sampling, sample_run, student_guidance

TEACHER_SAMPLER = "dpmpp-2m"  # the teacher's few-step sampler (ddim at one step, where dpmpp-2m is ddim anyway)


def _counted(run, **kw) -> tuple:
    """(samples, network calls per sample, seconds) of sample_run(run, **kw)."""
    rows, net = [], run.denoiser.network
    run.denoiser.network = lambda x, *rest: rows.append(len(x)) or net(x, *rest)
    try:
        t0 = time.perf_counter()
        x = sample_run(run, **kw)
        return x, sum(rows) / len(x), time.perf_counter() - t0
    finally:
        run.denoiser.network = net


def fewsteps_panel(name: str, student, nfe: int, n: int, seed: int, cls: int | None) -> dict:
    """student: a loaded distilled Run. The teacher samples with dpmpp-2m at `nfe` steps (guided at the w folded
    into the student: calls inside the guidance interval count twice); the student with its own sampler at `nfe`
    steps (a progressive student at most at the steps it learned)."""
    cfg = student.config
    if not cfg.distilled:
        raise DiffkitError(f"{name!r} is not a distilled student; the few-steps panel compares a student (`diffkit "
                           "distill`) with its teacher")
    parent = cfg.parent
    try:
        teacher = load_run(parent.path, device=next(student.network.parameters()).device)
    except DiffkitError:
        raise DiffkitError(f"the teacher of {name!r} ({parent.path}) cannot be loaded; restore it to compare") from None
    sampler, top = run_sampling(cfg, None, None)
    steps = min(nfe, top) if parent.kind == "progressive" else nfe
    cond = {}
    if cfg.network.num_classes:
        cond["cond"] = cls if cls is not None else [i % cfg.network.num_classes for i in range(n)]
    elif cfg.data.text:
        raise DiffkitError("the few-steps panel draws class-conditional and unconditional students; sample a text "
                           "student from the prompt panel")
    scale = student_guidance(cfg, None, True) if parent.guidance_range else parent.guidance  # w an input: its midpoint
    w = {"guidance": scale} if scale not in (None, 1) else {}
    out = {}
    for role, run, kw in (("teacher", teacher, {"sampler": TEACHER_SAMPLER if nfe > 1 else "ddim", "steps": nfe, **w}),
                          ("student", student, {"sampler": sampler, "steps": steps})):
        x, calls, seconds = _counted(run, n=n, seed=seed, **cond, **kw)
        out[role] = {"samples": x, "sampler": kw["sampler"], "steps": kw["steps"], "calls": calls,
                     "seconds": seconds}
        if cfg.fitted.image_shape is None:
            out[role]["energy"] = float(energy_distance(x, PointSource(cfg.data.spec).fresh(n, seed + 1)))
    return {"method": parent.kind, "learned_steps": parent.steps, "guidance": scale, **out}
