"""The lab's training routes: start a job, read it, cancel it, follow its events (jobs.py runs them)."""

from __future__ import annotations

import json
import re

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from .jobs import JobMissing
from .requests import ReflowRequest, TrainRequest
from .state import find_run, lab_state
from .uploads import upload_path

router = APIRouter()


@router.post("/api/train", status_code=202)
def train(req: TrainRequest, request: Request):
    """Start a training job (one at a time: a second is refused with 409)."""
    state = lab_state(request)
    spec, build = req.model_dump(), state.build_config
    if spec["data"].startswith("drawn-"):  # uploaded points: trained on as a user data file
        path = str(upload_path(state.runs_dir, spec["data"]))  # found now: an unknown upload is a 404, no job

        def build(job_spec: dict):  # the job's own spec keeps drawn-KEY: a client never reads a server path
            return state.build_config({**job_spec, "data": path})
    return state.jobs.start(req.name, spec, build).public()


@router.post("/api/reflow", status_code=202)
def reflow(req: ReflowRequest, request: Request):
    """Start a reflow job (Liu et al. 2023): solve the teacher's ODE for the pairs, then train a flow on them from
    the teacher's weights (one job at a time, as training)."""
    from ..runs import reflow_config
    from ..runs.pairs import cached_pairs

    state = lab_state(request)
    # built (and a bad teacher refused) before the job starts; the job solves the pairs, then trains
    config = reflow_config(find_run(state.runs_dir, req.teacher), pairs=req.pairs, train_steps=req.steps)
    config.train.checkpoint_every = max(req.steps, 10)

    def build(spec: dict):
        cached_pairs(config.parent, device=state.device, progress=False)
        return config

    return state.jobs.start(req.name, req.model_dump(), build).public()


@router.get("/api/jobs/{job_id}")
def job(job_id: str, request: Request):
    return lab_state(request).jobs.get(_plain(job_id)).public()


@router.post("/api/jobs/{job_id}/cancel")
def cancel(job_id: str, request: Request):
    return lab_state(request).jobs.cancel(_plain(job_id)).public()


@router.get("/api/jobs/{job_id}/events")
def events(job_id: str, request: Request):
    """Server-sent events: step (loss, lr), samples (2-D), then done / cancelled / failed."""
    job = lab_state(request).jobs.get(_plain(job_id))

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


def _plain(text: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{1,32}", text):
        raise JobMissing(f"no training job {text!r}; job ids are hexadecimal")
    return text
