"""Points drawn on the lab's page, uploaded as data: a bounded endpoint of its own (UPLOAD_BODY, not the 16 KiB
of the other requests), stored content-addressed as RUNS/.uploads/SHA256.csv (never overwritten: the same points
give the same file) and trained on like any user data file, whose path and sha256 the run's config records."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from ..store.manifest import atomic_write, sha256
from .state import NotFound, lab_state

UPLOAD_BODY = 256 * 1024  # bytes: 5,000 points as JSON fit with room to spare
MAX_POINTS = 5000
UPLOADS = ".uploads"
DRAWN = r"^drawn-[0-9a-f]{16}$"  # how a TrainRequest names uploaded data

router = APIRouter()

Coordinate = Annotated[float, Field(ge=-1000.0, le=1000.0)]


class PointsUpload(BaseModel):
    points: list[Annotated[list[Coordinate], Field(min_length=2, max_length=2)]] = Field(
        min_length=50, max_length=MAX_POINTS, description=f"50 to {MAX_POINTS} points [x, y]")


@router.post("/api/data", status_code=201)
def upload(req: PointsUpload, request: Request):
    """Store drawn points; the answer's `data` names them in POST /api/train."""
    pts = np.asarray(req.points, np.float64)
    text = "x,y\n" + "".join(f"{x:.6g},{y:.6g}\n" for x, y in pts)
    body = text.encode()
    digest = sha256(body)
    path = upload_path(lab_state(request).runs_dir, digest[:16], must_exist=False)
    if not path.exists():
        atomic_write(path, body)
    return {"data": f"drawn-{digest[:16]}", "sha256": digest, "n": len(pts)}


def upload_path(runs_dir: Path, key: str, must_exist: bool = True) -> Path:
    """The file of an upload named drawn-KEY (or KEY)."""
    key = key.removeprefix("drawn-")
    if not re.fullmatch(r"[0-9a-f]{16}", key):
        raise NotFound(f"no uploaded data {key!r}; POST the points to /api/data first")
    path = runs_dir / UPLOADS / f"{key}.csv"
    if must_exist and not path.is_file():
        raise NotFound(f"no uploaded data drawn-{key} in this runs folder; POST the points to /api/data first")
    return path
