"""The lab's playground: a pattern (a checkerboard, circle, stripes, a digit, or one drawn on the page) destroyed
by the forward process and rebuilt by a real model, trained on the built-in `patterns` set on first use.

The model is a run named PLAYGROUND_RUN in the runs folder, trained by the lab's job runner (one job at a time,
its progress streamed like any training job) and reused afterwards. Rebuilding is img2img (runs/edit.py): the
pattern noised with one draw z to the strength's level, then DDIM steps back; the forward frames use the same z,
so the last forward frame is exactly where the reverse starts.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from ..errors import DiffkitError
from .state import NotFound, lab_state, pack, run_dirs

PLAYGROUND_RUN = "playground-patterns"
SIDE = 16
SAMPLER = "ddim"
# the playground model's recipe (`diffkit train` flags): a small class-conditional U-Net on the 16x16 patterns
RECIPE = {"data": "patterns", "cond": True, "steps": 800, "batch_size": 64, "channels": 16,
          "channel_mult": (1, 2), "attention": ()}

router = APIRouter()


class RebuildRequest(BaseModel):
    pattern: Literal["checkerboard", "circle", "stripes", "digit", "drawn"] = "checkerboard"
    pixels: list[Annotated[float, Field(ge=0.0, le=1.0)]] | None = Field(
        None, max_length=SIDE * SIDE, description=f"pattern 'drawn': {SIDE}x{SIDE} values in [0, 1], row by row")
    strength: float = Field(0.6, ge=0.0, le=1.0, description="how far the forward process goes: 0 none, 1 pure noise")
    steps: int = Field(25, ge=1, le=100, description="DDIM steps for the whole way; the rebuild takes its share")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="the pattern's variation and the noise")


@router.get("/api/playground")
def status(request: Request):
    """Whether the playground's model exists, and the job training it if one runs."""
    state = lab_state(request)
    ready = any(p.name == PLAYGROUND_RUN for p in run_dirs(state.runs_dir))
    job = state.jobs.current
    training = job is not None and job.name == PLAYGROUND_RUN and job.state == "running"
    return {"run": PLAYGROUND_RUN, "ready": ready, "job": job.public() if training else None,
            "recipe": {k: list(v) if isinstance(v, tuple) else v for k, v in RECIPE.items()}}


@router.post("/api/playground/prepare", status_code=202)
def prepare(request: Request):
    """Train the playground's model unless it exists (or is being trained): the job to follow, or ready."""
    answer = status(request)
    if answer["ready"] or answer["job"] is not None:
        return answer
    state = lab_state(request)
    job = state.jobs.start(PLAYGROUND_RUN, dict(RECIPE), _config)
    return {**answer, "job": job.public()}


@router.post("/api/playground/rebuild")
def rebuild(req: RebuildRequest, request: Request):
    """The pattern, its forward frames to the strength's level, the reverse frames back, and the class reader()
    finds in the input and the result."""
    from ..runs.edit import edit_run, to_model_space
    from ..runs.pipeline import prepare_sampling, to_data

    state = lab_state(request)
    try:
        run = state.load(PLAYGROUND_RUN)
    except NotFound:
        raise NotFound("the playground's model is not trained yet; POST /api/playground/prepare starts it") from None
    x0 = pattern(req.pattern, req.pixels, req.seed)
    reverse, times = [], []  # the frame after each step, and the grid time each step started from

    def record(step):
        reverse.append(to_data(run, step.x)[0])
        times.append(step.t)

    result = edit_run(run, x0, strength=req.strength, sampler=SAMPLER, steps=req.steps, seed=req.seed,
                      callback=record)[0]
    schedule = run.denoiser.schedule

    def abar(t: float) -> float:
        return 1.0 if t < 0 else float(schedule.alpha_bar_at([t])[0])

    # the forward frames climb the same grid with the noise edit_run drew (its x_T), up to where the rebuild began
    z, x0_model = prepare_sampling(run, 1, SAMPLER, req.steps, seed=req.seed).x_T, to_model_space(run, x0[None])
    forward = [x0] + [to_data(run, abar(t) ** 0.5 * x0_model + (1 - abar(t)) ** 0.5 * z)[0] for t in times[::-1]]
    read = reader(state).predict(spectrum(np.stack([x0, result])))
    names = run.config.fitted.class_names
    return {"shape": [1, SIDE, SIDE], "input": pack(x0[None], True)[0], "result": pack(result[None], True)[0],
            "forward": pack(np.stack(forward), True), "reverse": pack(np.stack(reverse), True) if reverse else [],
            "forward_alpha_bar": [1.0] + [abar(t) for t in times[::-1]],
            "reverse_alpha_bar": [abar(t) for t in times[1:]] + [1.0],
            "strength": req.strength, "input_reads": names[int(read[0])], "result_reads": names[int(read[1])],
            "change": float(np.abs(result - x0).mean())}


def pattern(kind: str, pixels, seed: int) -> np.ndarray:
    """[1, SIDE, SIDE] in [0, 1]: a fresh pattern of the kind (its size and phase from the seed), a digit scaled
    up from scikit-learn's 8x8 digits, or the drawn pixels."""
    if kind == "drawn":
        if pixels is None or len(pixels) != SIDE * SIDE:
            raise DiffkitError(f"a drawn pattern is {SIDE}x{SIDE} = {SIDE * SIDE} values in [0, 1], row by row; got "
                               f"{0 if pixels is None else len(pixels)}")
        return np.asarray(pixels, np.float32).reshape(1, SIDE, SIDE)
    if pixels is not None:
        raise DiffkitError(f"pixels are for a drawn pattern; the {kind} pattern is made here")
    if kind == "digit":
        from ..data.images import load_images

        digits = load_images("digits").test
        small = digits[seed % len(digits), 0]
        return np.kron(small, np.ones((2, 2), np.float32))[None]
    from ..data.patterns import PATTERN_NAMES, make_patterns

    x, _ = make_patterns(1, seed=seed + 1, kinds=[PATTERN_NAMES.index(kind)])
    return x[0]


def reader(state):
    """What reads a pattern's class in the playground: 5 nearest neighbours among the patterns' training split in
    spectrum(), which a pattern's phase does not change (fitted in well under a second, once per lab)."""
    from sklearn.neighbors import KNeighborsClassifier

    with state.lock:
        if "pattern-reader" not in state.cache:
            data = load_patterns()
            state.cache["pattern-reader"] = KNeighborsClassifier(5).fit(spectrum(data.train), data.train_labels)
        return state.cache["pattern-reader"]


def spectrum(x: np.ndarray) -> np.ndarray:
    """[N, F]: the magnitudes of each image's 2-D Fourier transform (mean removed), normalized to unit length: the
    same for a pattern shifted by any phase (circularly)."""
    x = x.reshape(len(x), SIDE, SIDE)
    mag = np.abs(np.fft.rfft2(x - x.mean(axis=(1, 2), keepdims=True))).reshape(len(x), -1)
    return mag / np.maximum(np.linalg.norm(mag, axis=1, keepdims=True), 1e-8)


def load_patterns():
    from ..data.images import load_images

    return load_images("patterns")


def _config(spec: dict):
    from ..runs import train_config

    return train_config({**spec, "checkpoint_every": spec["steps"]})
