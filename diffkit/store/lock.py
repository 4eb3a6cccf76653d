"""One writer per run directory: an advisory lock (flock) on RUN_DIR/.lock.

The kernel releases a flock when its process dies, so a crashed or killed `train` never leaves a lock that
blocks the next one; the pid written into the file only serves the message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Self

from ..errors import CheckpointError

LOCK = ".lock"


class RunLock:
    """Held while a process writes a run directory. Use as a context manager, or acquire() / release()."""

    def __init__(self, run_dir):
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise CheckpointError(f"{self.path.parent} is being written by another diffkit process (pid {holder}); "
                                  "wait for it to finish or stop it, then try again") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
