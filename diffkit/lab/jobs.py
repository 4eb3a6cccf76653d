"""One training job at a time, in a background thread, with an event log the page follows (server-sent events).

A job trains into RUNS/.NAME.partial-ID and is renamed to RUNS/NAME only when it finishes, so a cancelled or
failed job never leaves a half-written run in the list. A crash inside a job is recorded as its error and the
server goes on.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DiffkitError

SAMPLE_EVERY = 100  # steps between the live samples a job shows (from its EMA weights so far)


@dataclass
class Job:
    id: str
    name: str
    spec: dict
    state: str = "running"          # running | done | cancelled | failed
    error: str | None = None
    events: list = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def emit(self, event: str, **data) -> None:
        with self.changed:
            self.events.append({"event": event, **data})
            self.changed.notify_all()

    def public(self) -> dict:
        return {"id": self.id, "name": self.name, "state": self.state, "error": self.error, "spec": self.spec,
                "events": len(self.events)}


class JobRunner:
    """Starts jobs (one at a time) and keeps the last ones for their event streams."""

    def __init__(self, runs_dir: Path, device=None):
        self.runs_dir = runs_dir
        self.device = device
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.current: Job | None = None

    def start(self, name: str, spec: dict, build) -> Job:
        """build(spec) -> RunConfig. Raises JobConflict while another job runs."""
        with self.lock:
            if self.current is not None and self.current.state == "running":
                raise JobConflict(f"training job {self.current.id} ({self.current.name}) is still running; wait for "
                                  "it or cancel it first")
            if (self.runs_dir / name).exists():
                raise DiffkitError(f"a run named {name!r} already exists; choose another name")
            job = Job(uuid.uuid4().hex[:12], name, spec)
            self.jobs[job.id] = job
            self.current = job
        threading.Thread(target=self._run, args=(job, build), daemon=True, name=f"train-{job.id}").start()
        return job

    def _run(self, job: Job, build) -> None:
        from ..runs import make_trainer
        from ..training.distributed import Runtime

        partial = self.runs_dir / f".{job.name}.partial-{job.id}"
        t0 = time.perf_counter()
        try:
            config = build(job.spec)
            runtime = Runtime(device=self.device) if self.device is not None else None
            trainer = make_trainer(config, partial, progress=False, runtime=runtime,
                                   callback=lambda rec: self._step(job, trainer, rec))
            settled = trainer.settle()  # precision and threads for this machine (training/autotune.py)
            job.emit("start", steps=config.train.steps, kind=config.fitted.kind, precision=settled.precision,
                     threads=settled.threads, how=settled.lines())
            trainer.train()
            if job.cancel.is_set():
                job.state = "cancelled"
                job.emit("cancelled", step=trainer.step)
                return
            partial.rename(self.runs_dir / job.name)
            job.state = "done"
            job.emit("done", run=job.name, seconds=round(time.perf_counter() - t0, 2), step=trainer.step)
        except DiffkitError as e:
            job.state, job.error = "failed", str(e)
            job.emit("failed", error=str(e))
        except Exception as e:  # a bug in a job must not take the server down; the page shows what happened
            job.state, job.error = "failed", f"{type(e).__name__}: {e}"
            job.emit("failed", error=job.error)
        finally:
            if job.state != "done":
                shutil.rmtree(partial, ignore_errors=True)

    def _step(self, job: Job, trainer, rec) -> bool:
        if rec.step % 10 == 0 or rec.step == trainer.cfg.steps:
            job.emit("step", step=rec.step, loss=round(float(rec.loss), 6), lr=rec.lr)
        if rec.step % SAMPLE_EVERY == 0:
            job.emit("samples", step=rec.step, **_live_samples(trainer))
        return job.cancel.is_set()

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        job.cancel.set()
        return job

    def get(self, job_id: str) -> Job:
        if job_id not in self.jobs:
            raise JobMissing(f"no training job {job_id!r}; start one with POST /api/train")
        return self.jobs[job_id]


class JobConflict(DiffkitError):
    """A second training job while one runs (HTTP 409)."""


class JobMissing(DiffkitError):
    """An unknown job id (HTTP 404)."""


def _live_samples(trainer) -> dict:
    """A few samples from the EMA weights so far (unconditional: the null class for a conditional run), in the
    data's coordinates: 400 points (DDIM, 20 steps) or 16 images as 0..255 pixels (dpmpp-2m, 10 steps)."""
    import numpy as np

    from ..runs import sample_run, snapshot_run

    images = trainer.config.fitted.is_images
    run = snapshot_run(trainer)
    x = sample_run(run, 16 if images else 400, "dpmpp-2m" if images else "ddim", 10 if images else 20, seed=0)
    if images:
        pixels = (x * 255).round().astype(np.uint8).reshape(len(x), -1)
        return {"images": pixels.tolist(), "shape": list(trainer.config.fitted.shape)}
    return {"points": np.round(x, 4).tolist()}
