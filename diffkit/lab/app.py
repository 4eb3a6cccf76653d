"""diffkit lab: a FastAPI app over the library (runs.py, schedules, samplers, metrics) and one static page.

Every input is bounded by its pydantic model; a bad one is a 4xx with one sentence ({"error": ...}). Run names
are plain names matched against the runs directory's own listing, so no client string becomes a path.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import DiffkitError
from .jobs import JobConflict, JobMissing, JobRunner
from .requests import (IMAGE_SETS, NAME, POINT_SETS, SCHEDULES, GuidanceRequest, PromptRequest, SampleRequest,
                       SamplersRequest, ScoreRequest, TrainRequest)

STATIC = Path(__file__).parent / "static"
MAX_BODY = 16 * 1024  # bytes: every request body here is a small JSON object


class NotFound(DiffkitError):
    """A run or resource that does not exist (HTTP 404)."""


def create_app(runs_dir, device=None) -> FastAPI:
    """The lab over the run directories in runs_dir; device: where its models train and sample (default the
    CPU)."""
    import torch

    runs_dir = Path(runs_dir).resolve()
    device = torch.device("cpu") if device is None else torch.device(device)
    runs_dir.mkdir(parents=True, exist_ok=True)
    app = FastAPI(title="diffkit lab", version=_version(),
                  description="Interactive diffusion on models trained on this machine. Inputs are bounded; a bad "
                              "one is answered with a 4xx and one sentence in `error`.")
    jobs = JobRunner(runs_dir, device)
    cache: dict = {}
    cache_lock = threading.Lock()

    # --- errors and limits ------------------------------------------------------------------------
    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > MAX_BODY):
            return _error(413, f"request bodies are limited to {MAX_BODY} bytes")
        if request.method in ("POST", "PUT", "PATCH") and size is None:
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY:
                    return _error(413, f"request bodies are limited to {MAX_BODY} bytes")
            request._body = body
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return _error(422, _one_sentence(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        text = {404: f"nothing at {request.url.path}; the page is / and the API is under /api (see /docs)",
                405: f"{request.method} is not accepted at {request.url.path}"}.get(exc.status_code, str(exc.detail))
        return _error(exc.status_code, text)

    @app.exception_handler(DiffkitError)
    async def user_error(request: Request, exc: DiffkitError):
        code = 409 if isinstance(exc, JobConflict) else 404 if isinstance(exc, (JobMissing, NotFound)) else 400
        return _error(code, str(exc))

    # --- the page -------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # --- data for the browser-side panels -------------------------------------------------------
    @app.get("/api/datasets")
    def datasets():
        return {"points": list(POINT_SETS), "images": list(IMAGE_SETS), "schedules": list(SCHEDULES)}

    @app.get("/api/schedules")
    def schedules(T: int = _query(1000, 10, 4000)):
        """alpha_bar_t and SNR (dB) for every schedule at T steps."""
        from ..schedule import NoiseSchedule

        out = {}
        for name in SCHEDULES:
            s = NoiseSchedule.from_name(name, T)
            out[name] = {"alpha_bar": _round(s.alphas_cumprod.numpy(), 8), "snr_db": _round(s.snr_db.numpy(), 4)}
        return {"T": T, "schedules": out}

    @app.get("/api/forward")
    def forward(data: str = "spiral", n: int = _query(2000, 10, 5000), seed: int = _query(0, 0, 2**31 - 1)):
        """x0 and one fixed eps per point (2-D, standardised) or pixel (one image in [-1, 1]): the browser
        computes x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps at every slider move."""
        rng = np.random.default_rng(seed)
        if data in POINT_SETS:
            from ..data.normalize import Normalizer
            from ..data.points import load_points

            x = load_points(data, n, seed)
            x0 = Normalizer.fit(x).apply(x)
            return {"kind": "points", "x0": _round(x0, 4), "eps": _round(rng.standard_normal(x0.shape), 4)}
        if data in IMAGE_SETS:
            images = _images(cache, cache_lock, data)
            img = images.train[int(rng.integers(len(images.train)))] * 2 - 1  # [C, H, W] in [-1, 1]
            return {"kind": "images", "shape": list(img.shape), "x0": _round(img.ravel(), 4),
                    "eps": _round(rng.standard_normal(img.size), 4)}
        raise DiffkitError(f"unknown data set {data!r}; choose one of: {', '.join(POINT_SETS + IMAGE_SETS)}")

    # --- runs -----------------------------------------------------------------------------------
    @app.get("/api/runs")
    def runs():
        return {"runs": [_describe(p) for p in _run_dirs(runs_dir)]}

    @app.post("/api/sample")
    def sample(req: SampleRequest):
        """Sample from pure noise to data; with `trajectory`, x_t and x0_hat at every step (2-D: up to 500
        points; images: up to 16)."""
        from ..runs import sample_run, to_data

        run = _load(cache, cache_lock, runs_dir, req.run, device)
        images = run.config.fitted.image_shape is not None
        keep = 16 if images else 500
        frames, preds = [], []

        def record(step):
            frames.append(_pack(to_data(run, step.x[:keep]), images))
            preds.append(_pack(to_data(run, step.x0_hat[:keep]), images))

        n = min(req.n, 64) if images else req.n
        x = sample_run(run, n, req.sampler, req.steps, seed=req.seed, cond=req.cls,
                       guidance=req.guidance if req.cls is not None else None,
                       callback=record if req.trajectory else None)
        return {"kind": _kind(run), "shape": run.config.fitted.image_shape or run.config.fitted.shape,
                "samples": _pack(x, images), "frames": frames, "x0_hat": preds}

    @app.post("/api/guidance")
    def guidance(req: GuidanceRequest):
        """The same noise under guidance scale w; diversity (mean distance to the samples' centroid, in data
        units) and adherence (points: the share whose nearest real neighbours share the class; images: the
        judge's accuracy)."""
        from ..runs import sample_run

        run = _load(cache, cache_lock, runs_dir, req.run, device)
        if not run.config.network.num_classes:
            raise DiffkitError(f"run {req.run!r} is unconditional; guidance needs a run trained with cond")
        images = run.config.fitted.image_shape is not None
        n = min(req.n, 64) if images else req.n
        x = sample_run(run, n, "dpmpp-2m", req.steps, seed=req.seed, cond=req.cls, guidance=req.w)
        flat = x.reshape(len(x), -1)
        diversity = float(np.linalg.norm(flat - flat.mean(0), axis=1).mean())
        adherence = _adherence(cache, cache_lock, run, x, req.cls, device)
        return {"kind": _kind(run), "shape": run.config.fitted.image_shape or run.config.fitted.shape,
                "samples": _pack(x, images), "diversity": diversity, "adherence": adherence}

    @app.post("/api/samplers")
    def samplers(req: SamplersRequest):
        """Energy distance to fresh data against network calls, for the samplers on a 2-D run (cached)."""
        from ..runs import eval_samples, sample_run
        from ..sampling import SAMPLER_TABLE

        run = _load(cache, cache_lock, runs_dir, req.run, device)
        if run.config.fitted.kind != "points":
            raise DiffkitError("the sampler comparison scores 2-D runs (energy distance to fresh data); "
                               f"{req.run!r} holds images")
        key = ("samplers", req.run, tuple(req.nfe), req.n)
        if key in cache:
            return cache[key]
        rows = []
        for name in ("ddim", "dpmpp-2m", "dpmpp-3m", "euler", "heun"):
            per_step = SAMPLER_TABLE[name].nfe()
            for nfe in req.nfe:
                steps = max(1, round(nfe / per_step))
                x = sample_run(run, req.n, name, steps, seed=0)
                m = eval_samples(x, run.config.data.spec, n_reference=req.n)
                rows.append({"sampler": name, "nfe": nfe, "steps": steps, "energy": m["energy"],
                             "floor": m["energy_floor"]})
        cache[key] = {"run": req.run, "rows": rows}
        return cache[key]

    @app.post("/api/score")
    def score(req: ScoreRequest):
        """The score field of a 2-D run at step t (arrows x_t -> x_t + sigma_t^2 score, in normalized units), the
        exact one beside it where the data is a Gaussian mixture, and the model's score error per t."""
        from .score_panel import score_panel

        run = _load(cache, cache_lock, runs_dir, req.run, device)
        with cache_lock:
            curves = cache.setdefault(("score-curves",), {})
        return score_panel(run, req.run, req.t, req.n, req.seed, curves)

    @app.post("/api/prompt")
    def prompt(req: PromptRequest):
        """Samples of a text run for one prompt at guidance w, the same seed every time; shapes runs: adherence."""
        from .prompt_panel import prompt_panel

        run = _load(cache, cache_lock, runs_dir, req.run, device)
        out = prompt_panel(run, req.run, req.prompt, req.w, req.n, req.seed, req.steps)
        return {**out, "samples": _pack(out["samples"], True)}

    # --- training -------------------------------------------------------------------------------
    @app.post("/api/train", status_code=202)
    def train(req: TrainRequest):
        """Start a training job (one at a time: a second is refused with 409)."""
        return jobs.start(req.name, req.model_dump(), _build_config).public()

    @app.get("/api/jobs/{job_id}")
    def job(job_id: str):
        return jobs.get(_plain(job_id)).public()

    @app.post("/api/jobs/{job_id}/cancel")
    def cancel(job_id: str):
        return jobs.cancel(_plain(job_id)).public()

    @app.get("/api/jobs/{job_id}/events")
    def events(job_id: str):
        """Server-sent events: step (loss, lr), samples (2-D), then done / cancelled / failed."""
        job = jobs.get(_plain(job_id))

        def stream():
            i = 0
            while True:
                with job.changed:
                    while i >= len(job.events) and job.state == "running":
                        job.changed.wait(timeout=10)
                    new, i = job.events[i:], len(job.events)
                for e in new:
                    yield f"event: {e['event']}\ndata: {json.dumps(e)}\n\n"
                if job.state != "running" and i >= len(job.events):
                    return

        return StreamingResponse(stream(), media_type="text/event-stream")

    app.state.jobs = jobs
    return app


# --- helpers -------------------------------------------------------------------------------------------

def _version() -> str:
    from .. import __version__

    return __version__


def _query(default, lo, hi):
    from fastapi import Query

    return Query(default, ge=lo, le=hi)


def _error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=code)


def _one_sentence(exc: RequestValidationError) -> str:
    e = exc.errors()[0]
    where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path"))
    msg = e.get("msg", "is invalid")
    if e.get("type") == "string_pattern_mismatch":
        msg = "names are letters, digits, '-' and '_' (at most 40, starting with a letter or digit)"
    elif e.get("type") in ("json_invalid", "model_attributes_type", "dict_type"):
        msg = "the body must be a JSON object (see /docs for its fields)"
    return f"{where or 'the request'}: {msg}".replace("\n", " ")


def _plain(text: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{1,32}", text):
        raise JobMissing(f"no training job {text!r}; job ids are hexadecimal")
    return text


def _round(a, digits: int) -> list:
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()


def _pack(x: np.ndarray, images: bool) -> list:
    """Points as [[x, y], ...]; images as 0..255 integers, flat per image."""
    if images:
        return (np.clip(x, 0, 1) * 255).round().astype(np.uint8).reshape(len(x), -1).tolist()
    return _round(x, 4)


def _run_dirs(runs_dir: Path) -> list[Path]:
    return sorted(p for p in runs_dir.iterdir() if p.is_dir() and re.fullmatch(NAME, p.name)
                  and (p / "config.json").exists())


def _kind(run) -> str:
    """What the page draws: "points" or "images" (a latent run's samples are decoded images)."""
    return "images" if run.config.fitted.image_shape is not None else "points"


def _find(runs_dir: Path, name: str) -> Path:
    for p in _run_dirs(runs_dir):
        if p.name == name:
            return p
    raise NotFound(f"no run named {name!r} in the runs directory; see GET /api/runs")


def _describe(path: Path) -> dict:
    from ..training.checkpoint import read_config

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
            "prediction": cfg.prediction}


def _load(cache: dict, lock, runs_dir: Path, name: str, device):
    from ..training.checkpoint import load_run

    path = _find(runs_dir, name)
    stamp = (path / "model.safetensors").stat().st_mtime_ns if (path / "model.safetensors").exists() else 0
    with lock:
        key = ("run", name, stamp)
        if key not in cache:
            cache[key] = load_run(path, device=device)
        return cache[key]


def _images(cache: dict, lock, name: str):
    from ..data.images import load_images

    with lock:
        if ("images", name) not in cache:
            cache[("images", name)] = load_images(name)
        return cache[("images", name)]


def _adherence(cache: dict, lock, run, x: np.ndarray, cls: int, device) -> float:
    if run.config.fitted.image_shape is not None:
        from ..metrics.judge import load_or_train_judge

        data = _images(cache, lock, run.config.data.spec)
        with lock:
            if ("judge", data.spec) not in cache:
                cache[("judge", data.spec)] = load_or_train_judge(data, progress=False).to(device)
            judge = cache[("judge", data.spec)]
        return float((judge.predict(x) == cls).mean())
    from ..data.points import PointSource
    from ..metrics.classes import ClassJudge

    key = ("knn", run.config.data.spec)
    with lock:
        if key not in cache:
            ref, labels = PointSource(run.config.data.spec).fresh_labeled(4000, 1)
            if labels is None:
                raise DiffkitError("the run's data has no labels to check adherence against")
            cache[key] = ClassJudge(ref, labels)
        judge = cache[key]
    return float((judge.predict(x) == cls).mean())


def _build_config(spec: dict):
    from ..config import ScheduleConfig
    from ..runs import default_config

    config = default_config(spec["data"], cond=spec["cond"])
    config.schedule = ScheduleConfig(name=spec["schedule"], num_timesteps=spec["timesteps"])
    config.prediction = spec["prediction"]
    config.train.steps = spec["steps"]
    config.train.checkpoint_every = max(spec["steps"], 10)  # the job's run appears whole at the end
    return config
