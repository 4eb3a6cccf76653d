"""A run's training log, train_log.csv: one row per logged step (loss, lr, seconds so far, skipped steps, and the
precision and threads that ran), cut back to the checkpoint on resume."""

from __future__ import annotations

import csv
from pathlib import Path

LOG = "train_log.csv"
LOG_FIELDS = ["step", "loss", "lr", "seconds", "skipped", "precision", "threads"]  # the last two: what ran


def truncate_log(path: Path, step: int) -> None:
    """Keep the header and rows up to `step` (a killed run may have logged past its checkpoint)."""
    rows = []
    if step > 0 and path.exists():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= step]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, LOG_FIELDS)
        w.writeheader()
        w.writerows(rows)


def last_seconds(path: Path) -> float:
    """The training seconds the log's last row records (0 for no log yet): a resumed run's clock goes on."""
    if not path.exists():
        return 0.0
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["seconds"]) if rows else 0.0


def read_log(path) -> dict[str, list[float]]:
    """The log as columns (precision as text, the rest as floats)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [r.get(k) or "" if k == "precision" else float(r.get(k) or 0) for r in rows] for k in LOG_FIELDS}
