"""Checksums of a run directory's files (manifest.json), so a truncated, bit-flipped or swapped file is caught
at load with its name, and directories that appear all at once (a checkpoint is a folder renamed into place).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import CheckpointError, StorageError

MANIFEST = "manifest.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def storage_error(path, err: OSError) -> StorageError:
    return StorageError(f"could not write {path}: {err.strerror or err}; nothing that was there before was changed")


@contextmanager
def _storing(path: Path):
    """A failed file operation (disk full, read-only folder) as one StorageError sentence naming `path`."""
    try:
        yield
    except OSError as e:
        raise storage_error(path, e) from None


def atomic_write(path, data: bytes) -> None:
    """Temp file in the same folder, fsync, chmod to what open() would give (mkstemp makes 0600), rename,
    fsync of the folder. A failure (disk full, read-only folder) leaves the old file as it was."""
    path = Path(path)
    with _storing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            _write_synced(Path(tmp), data)
            os.chmod(tmp, 0o666 & ~umask())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)


def atomic_dir(path, files: dict[str, bytes]) -> None:
    """Create folder `path` holding `files` (name -> bytes) all at once: written under a temp name, synced,
    then renamed into place."""
    path = Path(path)
    with _storing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        try:
            os.chmod(tmp, 0o777 & ~umask())
            for name, data in files.items():  # a name may hold folders ("unet/config.json")
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                _write_synced(tmp / name, data)
                os.chmod(tmp / name, 0o666 & ~umask())
            fsync_dir(tmp)
            os.rename(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(path.parent)


def manifest_bytes(files: dict[str, str], **fields) -> bytes:
    """A manifest: {"files": {name: sha256}, ...fields}."""
    return json.dumps({"files": files, **fields}, indent=2, sort_keys=True).encode()


def read_manifest(folder) -> dict | None:
    """The folder's manifest, or None when it has none (a run from before manifests)."""
    path = Path(folder) / MANIFEST
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise CheckpointError(f"{path} is truncated or not JSON; the run's checksums cannot be read") from None
    if not isinstance(m, dict) or not isinstance(m.get("files"), dict):
        raise CheckpointError(f"{path} is not a diffkit manifest (no 'files' table)")
    return m


def verify(path, data: bytes, *expected: str | None) -> None:
    """Refuse `data` read from `path` unless its checksum is one of `expected` (None entries are ignored)."""
    wanted = [e for e in expected if e]
    if wanted and sha256(data) not in wanted:
        raise CheckpointError(f"{path} does not match its checksum in {MANIFEST} (truncated, corrupted or swapped "
                              "with another file); restore it or retrain the run")
