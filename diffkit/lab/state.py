"""The lab's shared state (runs directory, device, caches and their lock, the job table) and the small helpers
more than one of its routers uses. create_app (app.py) builds one LabState per app and keeps it in
app.state.lab; a route reaches it with lab_state(request)."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DiffkitError
from .jobs import JobRunner
from .requests import NAME


class NotFound(DiffkitError):
    """A run or resource that does not exist (HTTP 404)."""


@dataclass
class LabState:
    """What the routes share. cache holds loaded runs, image sets, judges and computed panels; lock guards it."""

    runs_dir: Path
    device: object  # a torch.device
    jobs: JobRunner
    build_config: Callable  # spec dict -> RunConfig, for a training job
    cache: dict = field(default_factory=dict)
    recent: OrderedDict = field(default_factory=OrderedDict)  # remember()'s bounded cache
    lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self, name: str):
        """The run named name, loaded once per version of its weights file."""
        from ..runs import load_run

        path = find_run(self.runs_dir, name)
        stamp = (path / "model.safetensors").stat().st_mtime_ns if (path / "model.safetensors").exists() else 0
        with self.lock:
            key = ("run", name, stamp)
            if key not in self.cache:
                self.cache[key] = load_run(path, device=self.device)
            return self.cache[key]

    def images(self, name: str):
        from ..data.images import load_images

        with self.lock:
            if ("images", name) not in self.cache:
                self.cache[("images", name)] = load_images(name)
            return self.cache[("images", name)]

    def remember(self, key, make, keep: int = 32):
        """make()'s answer for key, computed once and kept among the `keep` most recent (an encoded response)."""
        with self.lock:
            if key in self.recent:
                self.recent.move_to_end(key)
                return self.recent[key]
        value = make()
        with self.lock:
            self.recent[key] = value
            while len(self.recent) > keep:
                self.recent.popitem(last=False)
        return value

    def judge(self, run):
        """What reads the class of run's samples (images: the data set's judge; points: nearest real
        neighbours), built once per data set."""
        from ..runs import adherence_judge

        key = ("judge", run.config.data.spec)
        with self.lock:
            if key not in self.cache:
                self.cache[key] = adherence_judge(run.config, self.device)
            return self.cache[key]

    def adherence(self, run, x: np.ndarray, cls: int) -> float:
        """The share of samples x the run's judge reads as class cls."""
        from ..runs import adherence

        return adherence(self.judge(run), x, cls)


def lab_state(request) -> LabState:
    """The LabState of the app that serves request."""
    return request.app.state.lab


def rounded(a, digits: int) -> list:
    """a as nested lists of floats rounded to digits (what the JSON answers carry)."""
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()


def pack(x: np.ndarray, images: bool) -> list:
    """What the JSON answers carry: points as [[x, y], ...]; images (in [0, 1]) as 0..255 integers, flat per
    image."""
    if images:
        return (np.clip(x, 0, 1) * 255).round().astype(np.uint8).reshape(len(x), -1).tolist()
    return rounded(x, 4)


def run_dirs(runs_dir: Path) -> list[Path]:
    """The run directories under runs_dir: plain names that hold a config.json."""
    return sorted(p for p in runs_dir.iterdir() if p.is_dir() and re.fullmatch(NAME, p.name)
                  and (p / "config.json").exists())


def find_run(runs_dir: Path, name: str) -> Path:
    for p in run_dirs(runs_dir):
        if p.name == name:
            return p
    raise NotFound(f"no run named {name!r} in the runs directory; see GET /api/runs")
