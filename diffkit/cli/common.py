"""What several commands share: output-file checks, fresh seeds, sampler flags and sample files with their
sidecars."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import ConfigError


def check_new_file(path: str, suffix: str, overwrite: bool, flag: str) -> Path:
    p = Path(path)
    if p.suffix.lower() != suffix:
        raise ConfigError(f"{flag} {path} must end in {suffix}")
    if p.exists() and not overwrite:
        raise ConfigError(f"{path} already exists; pass --overwrite to replace it")
    if not p.parent.exists():
        raise ConfigError(f"the folder of {flag} {path} does not exist")
    if p.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give a file name ending in {suffix}")
    check_writable(p.parent)
    return p


def check_writable(folder: Path) -> None:
    """Refuse up front a folder that cannot take a new file (read-only, full), before any long work."""
    import tempfile

    from ..errors import StorageError

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".diffkit-probe-"):
            pass
    except OSError as e:
        raise StorageError(f"cannot write into {folder} ({e.strerror}); choose another folder") from None


def clip_flag(a) -> bool | None:
    """--clip / --no-clip, or None for the run's default."""
    return True if a.clip else False if a.no_clip else None


SAMPLER_FLAGS = ("eta", "s_tmax", "variance", "snr", "corrector_steps", "sigma_min", "sigma_max")


def sampler_options(a) -> dict:
    """The sampler-specific flags the user gave, as keyword options."""
    return {k: getattr(a, k) for k in SAMPLER_FLAGS if getattr(a, k, None) is not None}  # (interpolate has none)


def recorded_options(config, sampler: str, a) -> dict:
    """The options a call of `sampler` runs with (the run's own for its own sampler, then the flags given), as a
    sidecar records them: inf (no limit) as null, strict JSON with the same meaning."""
    from ..runs.pipeline import own_options

    return {k: None if v == float("inf") else v for k, v in own_options(config, sampler, sampler_options(a)).items()}


def write_samples(out: Path, sidecar: Path, x: np.ndarray, record: dict) -> None:
    """Samples as float32 .npy and the settings that drew them as a JSON sidecar, each written atomically."""
    import io

    from ..store.manifest import atomic_write

    buf = io.BytesIO()
    np.save(buf, x.astype(np.float32))
    atomic_write(out, buf.getvalue())
    atomic_write(sidecar, json.dumps(record, indent=2).encode())


def fresh_seed() -> int:
    """A seed from the OS's entropy, for sample calls that did not fix one."""
    import secrets

    return secrets.randbits(63)
