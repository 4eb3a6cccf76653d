"""The lab's routes over trained runs: the list of runs, sampling (with its trajectory), guidance, the sampler
comparison, the score field and the prompt panel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi import APIRouter, Request

from ..errors import DiffkitError
from .requests import (
    IMAGE_SETS,
    POINT_SETS,
    EditRequest,
    FewStepsRequest,
    GuidanceRequest,
    PathsRequest,
    PromptRequest,
    SampleRequest,
    SamplersRequest,
    ScoreRequest,
    WarmRequest,
)
from .state import lab_state, pack, run_dirs

router = APIRouter()


@router.get("/api/runs")
def runs(request: Request):
    return {"runs": [_describe(p) for p in run_dirs(lab_state(request).runs_dir)]}


@router.post("/api/sample")
def sample(req: SampleRequest, request: Request):
    """Sample from pure noise to data; with `trajectory`, per step: x_t, x0_hat, eps_hat (pixel-space image runs:
    a latent's noise is not a picture) and the step's time, alpha_bar and SNR (2-D: up to 500 points; images: up
    to 16)."""
    from ..runs import sample_run, to_data

    run = lab_state(request).load(req.run)
    images = run.config.fitted.image_shape is not None
    pixels = images and run.decoder is None
    keep = 16 if images else 500
    frames, preds, noises, times = [], [], [], []

    def record(step):
        frames.append(pack(to_data(run, step.x[:keep]), images))
        preds.append(pack(to_data(run, step.x0_hat[:keep]), images))
        if pixels and step.eps_hat is not None:  # shown as a picture: 0 at mid-grey, +-2 at black / white
            noises.append(pack(to_data(run, step.eps_hat[:keep] / 2), True))
        abar = float(run.denoiser.schedule.alpha_bar_at(max(step.t, 0.0)))
        times.append({"t": round(step.t, 3), "alpha_bar": abar,
                      "snr_db": round(10 * float(np.log10(abar / max(1 - abar, 1e-12))), 3)})

    n = min(req.n, 64) if images else req.n
    x = sample_run(run, n, req.sampler, req.steps, seed=req.seed, cond=req.cls,
                   guidance=req.guidance if req.cls is not None else None,
                   callback=record if req.trajectory else None)
    return {"kind": _kind(run), "shape": run.config.fitted.image_shape or run.config.fitted.shape,
            "samples": pack(x, images), "frames": frames, "x0_hat": preds,
            "eps_hat": noises if len(noises) == len(frames) else None, "times": times}


@router.post("/api/warm")
def warm(req: WarmRequest, request: Request):
    """Load a run (network, VAE, text encoder) into the lab's cache; the page asks for its text run in the
    background, so the prompt panel's first draw does not wait for the loading."""
    import time

    t0 = time.perf_counter()
    lab_state(request).load(req.run)
    return {"run": req.run, "seconds": round(time.perf_counter() - t0, 3)}


@router.post("/api/guidance")
def guidance(req: GuidanceRequest, request: Request):
    """The same noise under guidance scale w; diversity (mean distance to the samples' centroid, in data
    units) and adherence (points: the share whose nearest real neighbours share the class; images: the
    judge's accuracy)."""
    from ..runs import sample_run

    state = lab_state(request)
    run = state.load(req.run)
    if not run.config.network.num_classes:
        raise DiffkitError(f"run {req.run!r} is unconditional; guidance needs a run trained with cond")
    images = run.config.fitted.image_shape is not None
    n = min(req.n, 64) if images else req.n
    x = sample_run(run, n, "dpmpp-2m", req.steps, seed=req.seed, cond=req.cls, guidance=req.w)
    flat = x.reshape(len(x), -1)
    diversity = float(np.linalg.norm(flat - flat.mean(0), axis=1).mean())
    adherence = state.adherence(run, x, req.cls)
    return {"kind": _kind(run), "shape": run.config.fitted.image_shape or run.config.fitted.shape,
            "samples": pack(x, images), "diversity": diversity, "adherence": adherence}


@router.post("/api/samplers")
def samplers(req: SamplersRequest, request: Request):
    """Energy distance to fresh data against network calls, for the samplers on a 2-D run (cached)."""
    from ..metrics.points import energy_distance
    from ..runs import sample_run
    from ..runs.evaluate import reference_draws
    from ..sampling import SAMPLER_TABLE

    state = lab_state(request)
    run = state.load(req.run)
    if run.config.fitted.kind != "points":
        raise DiffkitError("the sampler comparison scores 2-D runs (energy distance to fresh data); "
                           f"{req.run!r} holds images")
    key = ("samplers", req.run, tuple(req.nfe), req.n, tuple(req.samplers))
    if key in state.cache:
        return state.cache[key]
    rows = []
    reference, (other,) = reference_draws(run.config.data.spec, req.n, draws=1)  # one reference for every row
    floor = energy_distance(other, reference)
    for name in req.samplers:
        per_step = SAMPLER_TABLE[name].nfe()
        for nfe in req.nfe:
            steps = max(1, round(nfe / per_step))
            x = sample_run(run, req.n, name, steps, seed=0)
            rows.append({"sampler": name, "nfe": nfe, "steps": steps, "energy": energy_distance(x, reference),
                         "floor": floor})
    state.cache[key] = {"run": req.run, "rows": rows}
    return state.cache[key]


@router.post("/api/score")
def score(req: ScoreRequest, request: Request):
    """The score field of a 2-D run at step t (arrows x_t -> x_t + sigma_t^2 score, in normalized units), the
    exact one beside it where the data is a Gaussian mixture, and the model's score error per t."""
    from .score_panel import score_panel

    state = lab_state(request)
    run = state.load(req.run)
    with state.lock:
        curves = state.cache.setdefault(("score-curves",), {})
    return score_panel(run, req.run, req.t, req.n, req.seed, curves)


@router.post("/api/paths")
def paths(req: PathsRequest, request: Request):
    """The same noises along each 2-D run's probability-flow ODE (Euler / DDIM steps), in the linear path's
    coordinates, with each run's straightness, network calls and training-time distribution on the log-SNR axis."""
    from .paths_panel import paths_panel

    state = lab_state(request)
    runs = [(name, state.load(name)) for name in req.runs]
    with state.lock:
        cache = state.cache.setdefault(("paths-panel",), {})
    return paths_panel(runs, req.steps, req.n, req.seed, cache)


@router.post("/api/fewsteps")
def fewsteps(req: FewStepsRequest, request: Request):
    """A distilled student and its teacher from the same noise at the same number of network calls."""
    from .fewsteps_panel import fewsteps_panel

    run = lab_state(request).load(req.run)
    images = _kind(run) == "images"
    out = fewsteps_panel(req.run, run, req.nfe, min(req.n, 64) if images else req.n, req.seed, req.cls)
    for role in ("teacher", "student"):
        out[role]["samples"] = pack(out[role]["samples"], images)
    return {**out, "kind": _kind(run), "shape": run.config.fitted.image_shape}


@router.post("/api/prompt")
def prompt(req: PromptRequest, request: Request):
    """Samples of a text run for one prompt at guidance w, the same seed every time; shapes runs: adherence."""
    from .prompt_panel import prompt_panel

    run = lab_state(request).load(req.run)
    out = prompt_panel(run, req.run, req.prompt, req.w, req.n, req.seed, req.steps)
    return {**out, "samples": pack(out["samples"], True)}


@router.post("/api/edit")
def edit(req: EditRequest, request: Request):
    """A held-out image inpainted under a mask and / or moved by img2img towards a class or prompt."""
    from .edit_panel import edit_panel

    run = lab_state(request).load(req.run)
    out = edit_panel(run, req.run, req.index, req.mask, req.strength, req.cls, req.prompt, req.w, req.seed, req.steps)
    return {**out, "input": pack(out["input"][None], True)[0], "result": pack(out["result"][None], True)[0]}


# --- helpers -------------------------------------------------------------------------------------------

def _kind(run) -> str:
    """What the page draws: "points" or "images" (a latent run's samples are decoded images)."""
    return "images" if run.config.fitted.image_shape is not None else "points"


def _describe(path: Path) -> dict:
    from ..runs import read_config

    try:
        cfg = read_config(path)
    except DiffkitError as e:
        return {"name": path.name, "error": str(e)}
    return {"name": path.name, "data": cfg.data.spec if cfg.data.spec in POINT_SETS + IMAGE_SETS else "file",
            "kind": "images" if cfg.fitted.image_shape is not None else cfg.fitted.kind,
            "shape": cfg.fitted.image_shape or cfg.fitted.shape, "cond": bool(cfg.network.num_classes),
            "text": bool(cfg.data.text),
            "classes": cfg.fitted.class_names or list(range(cfg.network.num_classes)),
            "steps": cfg.train.steps, "schedule": cfg.schedule.name, "timesteps": cfg.schedule.num_timesteps,
            "prediction": cfg.prediction, "objective": cfg.objective.name,
            "reflow": cfg.reflowed, "distilled": cfg.parent.kind if cfg.distilled else None}
