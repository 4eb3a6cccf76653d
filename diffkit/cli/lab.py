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
    from ..lab.guard import is_loopback, make_guard

    guard = make_guard(a.host, allow_hosts=a.allow_host)
    shown = f"[{a.host}]" if ":" in a.host else a.host
    if is_loopback(a.host):
        print(f"diffkit lab on http://{shown}:{a.port}/ (runs in {runs.resolve()}); Ctrl-C stops it")
    else:
        from ..errors import notice

        notice(f"the lab listens on {a.host}: it asks for its token, so only those you give the address below can "
               "train and sample here")
        print(f"diffkit lab on http://{shown}:{a.port}/?token={guard.token} (runs in {runs.resolve()}); "
              "Ctrl-C stops it")
    app = create_app(runs, device=resolve_device(a.device), guard=guard)
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning")
