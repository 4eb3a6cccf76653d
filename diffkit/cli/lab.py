"""`diffkit lab`: serve the interactive page (its extra: FastAPI and uvicorn)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError


def cmd_lab(a) -> None:
    try:
        import uvicorn

        from ..lab.app import create_app
    except ImportError:
        raise ConfigError("the lab needs its extra: pip install 'diffkit[lab]' (FastAPI and uvicorn)") from None
    from ..devices import resolve_device

    runs = Path(a.runs)
    if runs.exists() and not runs.is_dir():
        raise ConfigError(f"--runs {a.runs} is a file; give a folder of run directories")
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        from ..errors import notice

        notice(f"the lab listens on {a.host}: anyone who can reach this address can train and sample here")
    print(f"diffkit lab on http://{a.host}:{a.port}/ (runs in {runs.resolve()}); Ctrl-C stops it")
    uvicorn.run(create_app(runs, device=resolve_device(a.device)), host=a.host, port=a.port, log_level="warning")
