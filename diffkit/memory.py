"""How much memory the machine has free now, for refusing work up front that cannot fit (with the estimate)."""

from __future__ import annotations

import os


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
