"""The lab under load: N concurrent clients against the JSON endpoints that run no model, while a training job
streams its events to 4 server-sent-event listeners; p50 / p99 latency per endpoint, errors, and the server's
memory over time.

    .venv/bin/python benchmarks/lab_load.py [--clients 32] [--seconds 60] [--listeners 4]

The server is `diffkit lab` in its own process (its memory is read from /proc); the clients are one asyncio loop
of httpx clients here. Goals (issue 31): 0 errors, p99 <= 500 ms, memory flat within 10% after warm-up.
Run it alone: two torch processes on 2 cores slow each other many times over.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from diffkit import machine

ENDPOINTS = ["/api/runs", "/api/datasets", "/api/schedules?T=1000", "/api/forward?data=spiral&n=500&seed=0",
             "/api/playground", "JOB"]
WARMUP_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def client(base: str, job: str, until: float, k: int, out: dict) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        i = k
        while time.monotonic() < until:
            path = ENDPOINTS[i % len(ENDPOINTS)]
            i += 1
            url = f"/api/jobs/{job}" if path == "JOB" else path
            t0 = time.perf_counter()
            try:
                r = await c.get(url)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            out.setdefault(path, []).append((time.perf_counter() - t0, ok))


async def listener(base: str, job: str, until: float, counts: list, k: int) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=None) as c, c.stream("GET", f"/api/jobs/{job}/events") as r:
        async for line in r.aiter_lines():
            if line.startswith("event:"):
                counts[k] += 1
            if time.monotonic() > until:
                return


async def memory(pid: int, until: float, trace: list, t_start: float) -> None:
    while time.monotonic() < until:
        trace.append((time.monotonic() - t_start, rss_mib(pid)))
        await asyncio.sleep(2.0)


async def load(base: str, pid: int, job: str, clients: int, seconds: float, listeners: int):
    t_start = time.monotonic()
    until = t_start + seconds
    out, counts, trace = {}, [0] * listeners, []
    await asyncio.gather(*(client(base, job, until, k, out) for k in range(clients)),
                         *(listener(base, job, until, counts, k) for k in range(listeners)),
                         memory(pid, until, trace, t_start))
    return out, counts, trace


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--listeners", type=int, default=4)
    a = p.parse_args()
    print(machine.describe())
    runs = Path(tempfile.mkdtemp(prefix="lab-load-"))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "diffkit", "lab", "--runs", str(runs), "--port", str(port)],
                              stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/api/runs", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise SystemExit("the lab did not start") from None
                time.sleep(0.2)
        job = httpx.post(base + "/api/train", json={"name": "load", "data": "moons", "steps": 20000}).json()["id"]
        out, counts, trace = asyncio.run(load(base, server.pid, job, a.clients, a.seconds, a.listeners))
        state = httpx.get(f"{base}/api/jobs/{job}").json()
        httpx.post(f"{base}/api/jobs/{job}/cancel", json={})
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"{a.clients} clients for {a.seconds:.0f} s against the JSON endpoints; a training job ({state['state']}, "
          f"{state['events']} events) streaming to {a.listeners} listeners, which got {counts} events")
    print(f"{'endpoint':42s} {'requests':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>6s}")
    every = []
    for path, rows in out.items():
        ms = sorted(1000 * t for t, _ in rows)
        every += ms
        errors = sum(not ok for _, ok in rows)
        name = "/api/jobs/{id}" if path == "JOB" else path
        p99 = ms[int(0.99 * (len(ms) - 1))]
        print(f"{name:42s} {len(rows):8d} {statistics.median(ms):8.1f} {p99:8.1f} {errors:6d}")
    every.sort()
    total_errors = sum(not ok for rows in out.values() for _, ok in rows)
    print(f"{'all':42s} {len(every):8d} {statistics.median(every):8.1f} {every[int(0.99 * (len(every) - 1))]:8.1f} "
          f"{total_errors:6d}   ({len(every) / a.seconds:.0f} requests/s)")
    after = [m for t, m in trace if t >= WARMUP_S]
    print("server memory (MiB) every 2 s: " + " ".join(f"{m:.0f}" for _, m in trace))
    if after:
        drift = (max(after) - min(after)) / min(after)
        print(f"after {WARMUP_S:.0f} s of warm-up: {min(after):.0f}-{max(after):.0f} MiB, spread {100 * drift:.1f}% "
              "(goal: within 10%)")


if __name__ == "__main__":
    main()
