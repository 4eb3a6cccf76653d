"""diffkit lab: a FastAPI app over the library (runs.py, schedules, samplers, metrics) and one static page.

Every input is bounded by its pydantic model; a bad one is a 4xx with one sentence ({"error": ...}). Run names
are plain names matched against the runs directory's own listing, so no client string becomes a path.

This file builds the app, its limits and its error answers (guard.py: who may talk to it); the routes live in
routers by topic (explain.py: data sets, schedules, the forward process; sampling_routes.py: runs, sampling,
guidance, samplers, score, prompt; job_routes.py: training jobs; playground.py: the playground; uploads.py: drawn
data) and share one LabState (state.py).
"""

from __future__ import annotations

import importlib
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import DiffkitError
from . import explain, job_routes, playground, sampling_routes, uploads
from .guard import Guard, install_guard, make_guard
from .jobs import JobConflict, JobMissing, JobRunner
from .state import LabState, NotFound

STATIC = Path(__file__).parent / "static"
MAX_BODY = 16 * 1024  # bytes: every request body but an upload of drawn points (uploads.py) is a small JSON object
# what the panels import on first use (the library's run and sampling code; scikit-learn, which draws the 2-D data
# sets' moons), imported in the background as the server starts so that no section's first draw pays for it
# (0.6 s and 0.7 s on the 2-core EPYC)
WARM_IMPORTS = ("diffkit.runs", "diffkit.sampling", "diffkit.metrics.points", "sklearn.datasets")


def _warm_imports() -> None:
    for name in WARM_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional one missing: the panel that needs it says so when asked
            pass


@asynccontextmanager
async def _lifespan(app: FastAPI):
    threading.Thread(target=_warm_imports, name="diffkit-lab-warm", daemon=True).start()
    yield


def create_app(runs_dir, device=None, guard: Guard | None = None) -> FastAPI:
    """The lab over the run directories in runs_dir; device: where its models train and sample (default the
    CPU); guard: who may talk to it (default: loopback names, no token; guard.py)."""
    import torch

    runs_dir = Path(runs_dir).resolve()
    device = torch.device("cpu") if device is None else torch.device(device)
    runs_dir.mkdir(parents=True, exist_ok=True)
    app = FastAPI(title="diffkit lab", version=_version(),
                  description="Interactive diffusion on models trained on this machine. Inputs are bounded; a bad "
                              "one is answered with a 4xx and one sentence in `error`.",
                  lifespan=_lifespan)
    install_errors(app)
    install_guard(app, guard or make_guard())  # added last, so it runs first

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in (explain.router, sampling_routes.router, job_routes.router, playground.router, uploads.router):
        app.include_router(router)
    # _build_config is looked up here, when the app is built (a test puts a crashing one in its place)
    app.state.lab = LabState(runs_dir, device, JobRunner(runs_dir, device), _build_config)
    app.state.jobs = app.state.lab.jobs
    return app


def install_errors(app: FastAPI) -> None:
    """The body limit, and every error answered as {"error": one sentence} with its status code."""

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        limit = uploads.UPLOAD_BODY if request.url.path == "/api/data" else MAX_BODY  # drawn points: their own
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > limit):
            return _error(413, f"request bodies here are limited to {limit} bytes")
        if request.method in ("POST", "PUT", "PATCH") and size is None:
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    return _error(413, f"request bodies here are limited to {limit} bytes")
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


# --- helpers -------------------------------------------------------------------------------------------

def _version() -> str:
    from ..version import __version__

    return __version__


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


def _build_config(spec: dict):
    """A training job's RunConfig from its TrainRequest (as a dict): the recipe `diffkit train` uses."""
    from ..runs import train_config

    flags = {**spec, "checkpoint_every": max(spec["steps"], 10)}  # the run appears whole at the end
    if flags.get("objective", "ddpm") == "ddpm":  # the lab's ddpm default: a linear schedule of 1000 steps
        flags.update(schedule=flags.get("schedule") or "linear", timesteps=flags.get("timesteps") or 1000)
    return train_config(flags)
