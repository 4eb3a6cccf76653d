"""The lab's playground (its model trained on first use, patterns destroyed and rebuilt) and drawn data (uploaded,
stored by hash, trained on), through the HTTP API; the browser tests drive the same from the page."""

from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from diffkit.data.images import load_images
from diffkit.data.patterns import PATTERN_NAMES, make_patterns
from diffkit.lab import playground
from diffkit.lab.app import create_app
from diffkit.lab.uploads import UPLOAD_BODY


def wait_for(client, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] != "running":
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


def test_patterns_are_three_classes_of_varied_size_and_phase():
    x, y = make_patterns(300, seed=1)
    assert x.shape == (300, 1, 16, 16) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert np.bincount(y).tolist() == [100, 100, 100] and len(PATTERN_NAMES) == 3
    assert len({a.tobytes() for a in x[y == 0]}) > 25  # checkerboards differ in cell size and phase (54 kinds)
    data = load_images("patterns")
    assert data.class_names == list(PATTERN_NAMES) and len(data.train) + len(data.test) == 6000
    assert np.array_equal(make_patterns(30)[0], make_patterns(30)[0])  # the same set everywhere


def test_the_pattern_reader_is_phase_blind_and_accurate(tmp_path):
    """The playground reads what comes back with nearest neighbours in a phase-free spectrum: it must read the
    held-out patterns right (else its readout would mislead)."""
    app = create_app(tmp_path)
    data = load_images("patterns")
    read = playground.reader(app.state.lab).predict(playground.spectrum(data.test))
    assert (read == data.test_labels).mean() >= 0.97
    board = make_patterns(1, seed=5, kinds=[0])[0]
    shifted = np.roll(board, 1, axis=-1)
    assert np.allclose(playground.spectrum(board[None]), playground.spectrum(shifted[None]), atol=1e-6)


def test_the_playground_trains_its_model_on_first_use_and_rebuilds_a_checkerboard(tmp_path, monkeypatch):
    monkeypatch.setitem(playground.RECIPE, "steps", 40)
    with TestClient(create_app(tmp_path), base_url="http://localhost") as c:
        assert c.get("/api/playground").json()["ready"] is False
        r = c.post("/api/playground/rebuild", json={"pattern": "checkerboard"})
        assert r.status_code == 404 and "prepare" in r.json()["error"]
        started = c.post("/api/playground/prepare", json={})
        assert started.status_code == 202 and started.json()["job"]["name"] == playground.PLAYGROUND_RUN
        again = c.post("/api/playground/prepare", json={}).json()  # a second visit follows the same job
        assert again["job"] is None or again["job"]["id"] == started.json()["job"]["id"]
        assert wait_for(c, started.json()["job"]["id"])["state"] == "done"
        assert c.get("/api/playground").json()["ready"] is True and (tmp_path / playground.PLAYGROUND_RUN).is_dir()
        assert c.post("/api/playground/prepare", json={}).json()["job"] is None  # reused afterwards
        out = c.post("/api/playground/rebuild", json={"pattern": "checkerboard", "strength": 0.4, "seed": 3}).json()
        f, rv = out["forward"], out["reverse"]
        assert out["input_reads"] == "checkerboard" and len(f) == len(rv) + 1 and rv[-1] == out["result"]
        assert f[0] == out["input"]
        ab_f, ab_r = out["forward_alpha_bar"], out["reverse_alpha_bar"]
        assert ab_f[0] == 1.0 and all(a > b for a, b in itertools.pairwise(ab_f)) and ab_r[-1] == 1.0
        assert ab_r[:-1] == ab_f[-2:0:-1]  # the reverse walks back down the forward's levels
        assert 0.3 < ab_f[-1] < 0.9  # strength 0.4 stops well short of pure noise
        none = c.post("/api/playground/rebuild", json={"pattern": "stripes", "strength": 0}).json()
        assert none["result"] == none["input"] and none["reverse"] == []
        drawn = [float((i // 16) % 4 < 2) for i in range(256)]  # horizontal bars, drawn
        d = c.post("/api/playground/rebuild", json={"pattern": "drawn", "pixels": drawn, "strength": 0.3}).json()
        assert d["input"] == [round(255 * v) for v in drawn] and d["input_reads"] == "stripes"
        for body, fragment in (({"pattern": "drawn"}, "256 values"),
                               ({"pattern": "circle", "pixels": [0] * 256}, "drawn"),
                               ({"pattern": "drawn", "pixels": [2.0] * 256}, "pixels"),
                               ({"pattern": "plaid"}, "pattern"), ({"strength": 1.5}, "strength")):
            r = c.post("/api/playground/rebuild", json=body)
            assert r.status_code in (400, 422) and fragment in r.json()["error"], (body, r.json())


def test_drawn_points_are_uploaded_by_hash_and_trained_on(tmp_path):
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal([-2, 0], 0.3, (300, 2)), rng.normal([2, 1], 0.3, (300, 2))]).round(4)
    with TestClient(create_app(tmp_path), base_url="http://localhost") as c:
        up = c.post("/api/data", json={"points": pts.tolist()})
        assert up.status_code == 201 and up.json()["n"] == 600 and up.json()["data"].startswith("drawn-")
        key = up.json()["data"]
        stored = tmp_path / ".uploads" / f"{key[6:]}.csv"
        body = stored.read_bytes()
        import hashlib
        assert hashlib.sha256(body).hexdigest() == up.json()["sha256"]
        assert np.allclose(np.loadtxt(stored, delimiter=",", skiprows=1), pts)
        assert c.post("/api/data", json={"points": pts.tolist()}).json()["data"] == key  # the same file again
        assert c.get("/api/runs").json()["runs"] == []  # uploads are not runs
        job = c.post("/api/train", json={"name": "mine", "data": key, "steps": 60}).json()
        assert wait_for(c, job["id"])["state"] == "done"
        assert job["spec"]["data"] == key  # a client reads back the upload's name, not a server path
        assert c.get(f"/api/jobs/{job['id']}").json()["spec"]["data"] == key
        config = json.loads((tmp_path / "mine" / "config.json").read_text())
        assert config["data"]["spec"] == str(stored.resolve())
        assert config["fitted"]["data_sha256"] == up.json()["sha256"]
        x = np.asarray(c.post("/api/sample", json={"run": "mine", "n": 400, "steps": 20}).json()["samples"])
        assert x.shape == (400, 2) and np.all(np.abs(x) < 10)
        # refused: too few, too many bytes, not numbers, unknown upload names
        assert c.post("/api/data", json={"points": pts[:10].tolist()}).status_code == 422
        big = b'{"points": [' + b"[1.0, 2.0], " * (UPLOAD_BODY // 10) + b"[1.0, 2.0]]}"
        r = c.post("/api/data", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and str(UPLOAD_BODY) in r.json()["error"]
        assert c.post("/api/data", json={"points": [["a", 1]] * 60}).status_code == 422
        assert c.post("/api/data", json={"points": [[1, 2, 3]] * 60}).status_code == 422
        r = c.post("/api/train", json={"name": "other", "data": "drawn-0123456789abcdef"})
        assert r.status_code == 404 and "/api/data" in r.json()["error"]
        assert c.post("/api/train", json={"name": "other", "data": "drawn-../../etc"}).status_code == 422
        assert c.post("/api/sample", content=b"{" + b" " * 20_000 + b"}",
                      headers={"content-type": "application/json"}).status_code == 413  # the others keep 16 KiB


@pytest.mark.parametrize("kind", ["checkerboard", "circle", "stripes", "digit"])
def test_every_pattern_kind_is_an_image_in_range(kind):
    x = playground.pattern(kind, None, seed=2)
    assert x.shape == (1, 16, 16) and 0 <= x.min() and x.max() <= 1 and x.std() > 0.1
