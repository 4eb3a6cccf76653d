"""Where a run's user data lives and what it held: an absolute path and a content hash, so a copied or moved run
still resumes and a changed data file is caught instead of silently trained on."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import DataError


def absolute_spec(spec: str, builtin) -> str:
    """An existing user file or folder as an absolute path (names, and paths that do not exist, are left for the
    data loaders to explain)."""
    path = Path(spec).expanduser()
    return spec if spec in builtin or not path.exists() else str(path.resolve())


def content_hash(spec: str) -> str:
    """sha256 of a data file, or of a folder's files (relative names and bytes, in sorted order)."""
    path = Path(spec)
    h = hashlib.sha256()
    try:
        if path.is_dir():
            for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
                h.update(str(f.relative_to(path)).encode() + b"\0")
                h.update(f.read_bytes())
        else:
            h.update(path.read_bytes())
    except OSError as e:
        raise DataError(f"cannot read the data at {spec} ({e.strerror}); the run was trained on it") from None
    return h.hexdigest()


def check_unchanged(spec: str, recorded: str | None) -> None:
    """Refuse to resume on data whose contents differ from what the run was trained on."""
    if not recorded:
        return
    if not Path(spec).exists():
        raise DataError(f"the run's data {spec} no longer exists; put it back there to resume")
    now = content_hash(spec)
    if now != recorded:
        raise DataError(f"the data at {spec} changed since this run was trained on it (sha256 {recorded[:12]}... then, "
                        f"{now[:12]}... now); restore it or start a new run")
