"""A folder a run reads from but does not own (an imported Stable Diffusion snapshot: gigabytes), checked two ways:

  cheap   every file's size and mtime, and the sha256 of each JSON / text file and of each safetensors file's
          header (its tensor names, shapes, dtypes and offsets), on every load: milliseconds for any size;
  full    the sha256 of every file's bytes, on import and when asked (`diffkit import --verify RUN`).

A cheap check that fails names the first file that differs; a full check that passes refreshes the cheap record
(a copied folder has new mtimes but the same bytes). The cheap record is a file of the run's own, RECORD, outside
its manifest: it only caches what the full checksum (in the run's config) vouches for.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from ..errors import CheckpointError
from .manifest import atomic_write

RECORD = "folder_record.json"
TEXT = (".json", ".txt", ".model")  # small files hashed whole by the cheap check
CHUNK = 1 << 24


def folder_files(folder: Path, parts) -> list[Path]:
    """The files of the subfolders `parts` of folder (sorted; a part may also be a single file)."""
    files = []
    for part in parts:
        p = folder / part
        files += sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p] if p.is_file() else []
    return files


def _header_digest(path: Path) -> str:
    """sha256 of a safetensors file's 8-byte length and JSON header (what it holds, not the tensors' bytes)."""
    with open(path, "rb") as f:
        head = f.read(8)
        (n,) = struct.unpack("<Q", head) if len(head) == 8 else (0,)
        return hashlib.sha256(head + f.read(min(n, 100_000_000))).hexdigest()


def cheap_fingerprint(folder, parts) -> dict:
    """{relative path: [size, mtime_ns, digest of its text or safetensors header, or ""]} of the folder's parts."""
    folder = Path(folder)
    out = {}
    for f in folder_files(folder, parts):
        st = f.stat()
        digest = (hashlib.sha256(f.read_bytes()).hexdigest() if f.suffix in TEXT else
                  _header_digest(f) if f.suffix == ".safetensors" else "")
        out[f.relative_to(folder).as_posix()] = [st.st_size, st.st_mtime_ns, digest]
    return out


def _stream(h, path: Path):
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h


def file_sha256(path) -> str:
    """sha256 of one file's bytes, read in blocks (the same digest as store.manifest.sha256 of its bytes)."""
    return _stream(hashlib.sha256(), Path(path)).hexdigest()


def full_sha256(folder, parts) -> str:
    """sha256 over every file of the parts: its relative path, then its bytes."""
    folder = Path(folder)
    h = hashlib.sha256()
    for f in folder_files(folder, parts):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0")
        _stream(h, f)
    return h.hexdigest()


def record_bytes(folder, parts) -> bytes:
    """A run's cheap record of the folder's parts, as they are now (the file RECORD)."""
    return json.dumps({"folder": str(folder), "parts": list(parts), "files": cheap_fingerprint(folder, parts)},
                      indent=1).encode()


def write_record(run_dir, folder, parts) -> None:
    atomic_write(Path(run_dir) / RECORD, record_bytes(folder, parts))


def check_folder(run_dir, folder, parts) -> None:
    """Refuse (CheckpointError, one sentence) a folder whose parts differ from the run's cheap record."""
    folder, owner = Path(folder), f"the imported run {run_dir}"
    if not folder.is_dir():
        raise CheckpointError(f"{owner} reads {folder}, which no longer exists; restore the folder (or import it "
                              "again into a new run)")
    try:
        recorded = json.loads((Path(run_dir) / RECORD).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(f"{owner} has no readable {RECORD}; run `diffkit import --verify {run_dir}` to check "
                              "the folder and write it") from None
    now = cheap_fingerprint(folder, parts)
    for name in sorted(set(now) | set(recorded)):
        if now.get(name) != recorded.get(name):
            what = ("is missing" if name not in now else "is new" if name not in recorded else
                    "has changed (size, time or contents)")
            raise CheckpointError(f"{owner} reads {folder}, whose {name} {what} since it was imported; restore it, "
                                  f"or run `diffkit import --verify {run_dir}` if the folder was only copied or "
                                  "touched")
