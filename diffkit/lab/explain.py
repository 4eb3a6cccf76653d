"""The lab's explaining panels: the data sets, the noise schedules, and the forward process (x0 and eps; the
browser mixes them at every slider move)."""

from __future__ import annotations

import json

import numpy as np
from fastapi import APIRouter, Request, Response

from ..errors import DiffkitError
from .requests import IMAGE_SETS, POINT_SETS, SCHEDULES
from .state import lab_state, rounded

router = APIRouter()


def _query(default, lo, hi):
    from fastapi import Query

    return Query(default, ge=lo, le=hi)


@router.get("/api/datasets")
def datasets():
    return {"points": list(POINT_SETS), "images": list(IMAGE_SETS), "schedules": list(SCHEDULES)}


@router.get("/api/schedules")
def schedules(request: Request, T: int = _query(1000, 10, 4000)):
    """alpha_bar_t and SNR (dB) for every schedule at T steps."""
    body = lab_state(request).remember(("schedules", T), lambda: _schedules_json(T))
    return Response(body, media_type="application/json")


@router.get("/api/forward")
def forward(request: Request, data: str = "spiral", n: int = _query(2000, 10, 5000),
            seed: int = _query(0, 0, 2**31 - 1)):
    """x0 and one fixed eps per point (2-D, standardised) or pixel (one image in [-1, 1]): the browser
    computes x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps at every slider move."""
    if data not in POINT_SETS + IMAGE_SETS:
        raise DiffkitError(f"unknown data set {data!r}; choose one of: {', '.join(POINT_SETS + IMAGE_SETS)}")
    state = lab_state(request)
    images = state.images(data) if data in IMAGE_SETS else None
    body = state.remember(("forward", data, n, seed), lambda: _forward_json(data, n, seed, images))
    return Response(body, media_type="application/json")


# the answers above are the same for the same query: kept encoded (the last few), so a busy page costs little

def _schedules_json(T: int) -> bytes:
    from ..schedule import NoiseSchedule

    out = {}
    for name in SCHEDULES:
        s = NoiseSchedule.from_name(name, T)
        out[name] = {"alpha_bar": rounded(s.alphas_cumprod.numpy(), 8), "snr_db": rounded(s.snr_db.numpy(), 4)}
    return json.dumps({"T": T, "schedules": out}).encode()


def _forward_json(data: str, n: int, seed: int, images) -> bytes:
    rng = np.random.default_rng(seed)
    if images is None:
        from ..data.normalize import Normalizer
        from ..data.points import load_points

        x = load_points(data, n, seed)
        x0 = Normalizer.fit(x).apply(x)
        out = {"kind": "points", "x0": rounded(x0, 4), "eps": rounded(rng.standard_normal(x0.shape), 4)}
    else:
        img = images.train[int(rng.integers(len(images.train)))] * 2 - 1  # [C, H, W] in [-1, 1]
        out = {"kind": "images", "shape": list(img.shape), "x0": rounded(img.ravel(), 4),
               "eps": rounded(rng.standard_normal(img.size), 4)}
    return json.dumps(out).encode()
