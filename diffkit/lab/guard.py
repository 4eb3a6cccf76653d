"""Who may talk to the lab: a Host-header allow-list (against DNS rebinding), a same-origin check on the API
(against cross-site requests from pages the user visits) and, when the lab listens beyond loopback, a random
token (as Jupyter's: printed once as a URL, then kept in a cookie).

Every refusal is a 4xx with one sentence: 403 for a foreign Host or a cross-site request, 401 without the token
(the page itself then says how to get in).
"""

from __future__ import annotations

import html
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

LOOPBACK = ("127.0.0.1", "localhost", "::1")
COOKIE = "diffkit_lab_token"
HEADER = "x-diffkit-token"


@dataclass(frozen=True)
class Guard:
    """hosts: the names a Host header may carry (lower-case, no port); token: required on every request when set."""

    hosts: frozenset
    token: str | None = None


def make_guard(host: str = "127.0.0.1", allow_hosts=(), token: str | None = None) -> Guard:
    """The guard for a lab bound to host: loopback names, the bound address (and, bound to every address, this
    machine's name and addresses) and allow_hosts. A token is made when host is not loopback and none is given."""
    names = {*LOOPBACK, host.strip("[]").lower(), *(h.strip("[]").lower() for h in allow_hosts)}
    if host in ("0.0.0.0", "::", ""):
        names |= _machine_names()
    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(24)
    return Guard(frozenset(names), token)


def is_loopback(host: str) -> bool:
    return host.strip("[]").lower() in LOOPBACK or host.startswith("127.")


def install_guard(app: FastAPI, guard: Guard) -> None:
    """The checks, in order: Host, token (a page opened with ?token= sets the cookie and drops it from the URL),
    then the API's same-origin check."""

    @app.middleware("http")
    async def check(request: Request, call_next):
        name = host_name(request.headers.get("host", ""))
        if name not in guard.hosts:
            return _refuse(403, f"the Host header {name or '(none)'!r} is not one of this lab's names; start the lab "
                                "with --allow-host NAME to serve it under another name")
        if guard.token is not None:
            query = request.query_params.get("token")
            if query is not None and request.method == "GET" and request.url.path == "/" and _same(query, guard.token):
                answer = RedirectResponse("/", status_code=303)
                # Lax, so a link to the token URL works; cross-site API requests are refused by same_origin anyway
                answer.set_cookie(COOKIE, guard.token, httponly=True, samesite="lax")
                return answer
            given = request.headers.get(HEADER) or request.cookies.get(COOKIE) or query
            if not _same(given, guard.token):
                if request.url.path.startswith("/api/"):
                    return _refuse(401, "this lab needs its token: open the address with ?token= that `diffkit lab` "
                                        f"printed when it started, or send the {HEADER} header")
                return HTMLResponse(SIGN_IN, status_code=401)
        if request.url.path.startswith("/api/") and not same_origin(request):
            return _refuse(403, "cross-site requests are refused: the lab answers its own page (and clients that send "
                                "no Origin) only")
        return await call_next(request)


def host_name(header: str) -> str:
    """The name in a Host header, lower-case, without its port ('[::1]:8765' -> '::1')."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else ""
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def same_origin(request: Request) -> bool:
    """False for a browser's cross-site request: Sec-Fetch-Site says so, or an Origin header names another host
    and port than the Host header. Clients that send neither (curl, scripts) pass."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").strip().lower()


def _same(given: str | None, token: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), token.encode())


def _refuse(code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=code)


def _machine_names() -> set:
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    try:
        names |= {info[4][0].lower() for info in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        pass
    return names


SIGN_IN = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>diffkit lab: sign in</title></head>
<body style="font: 16px/1.5 system-ui, sans-serif; max-width: 40em; margin: 3em auto; padding: 0 1em">
<h1>This lab needs its token</h1>
<p>The lab listens beyond this machine, so it asks for the token it printed when it started. Open the address
that <code>diffkit lab</code> printed (it ends in <code>?token=...</code>); the browser then keeps the token in a
cookie. Lost it? Stop the lab and start it again to print a new one.</p>
<p>{html.escape("Scripts: send the token in the " + HEADER + " header.")}</p>
</body></html>
"""
