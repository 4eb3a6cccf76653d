"""How much memory the machine has free now, for refusing work up front that cannot fit (with the estimate)."""

from __future__ import annotations

import os

from .errors import ConfigError


def available_memory() -> int | None:
    """Bytes available to a new allocation without swapping (Linux MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def require_memory(need: int, message: str) -> None:
    """Refuse, before any work, what would need `need` bytes when less is available now. `message` is the
    sentence, with {need} and {free} where the GiB figures go."""
    free = available_memory()
    if free is not None and need > free:
        raise ConfigError(message.format(need=f"{need / 2**30:.1f}", free=f"{free / 2**30:.1f}"))
