"""Who may talk to the lab (lab/guard.py): the token beyond loopback, the Host allow-list, the same-origin check."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from diffkit.cli import main
from diffkit.lab.app import create_app
from diffkit.lab.guard import COOKIE, HEADER, host_name, make_guard


def api_routes(app):
    """(method, path) of every API operation in the OpenAPI schema, with a placeholder for path parameters."""
    return [(method.upper(), path.replace("{job_id}", "abc123"))
            for path, ops in app.openapi()["paths"].items() if path.startswith("/api/") for method in ops]


@pytest.fixture(scope="module")
def public_lab(tmp_path_factory):
    """A lab as `diffkit lab --host 0.0.0.0` builds it: a token is required."""
    guard = make_guard("0.0.0.0")
    assert guard.token and len(guard.token) >= 24 and "localhost" in guard.hosts
    return create_app(tmp_path_factory.mktemp("guarded"), guard=guard), guard.token


def test_beyond_loopback_every_api_request_needs_the_token(public_lab):
    app, token = public_lab
    routes = api_routes(app)
    assert len(routes) >= 15
    with TestClient(app, base_url="http://localhost") as c:
        for method, path in routes:
            r = c.request(method, path, json={} if method == "POST" else None)
            assert r.status_code == 401, (method, path, r.status_code)
            assert "token" in r.json()["error"]
        r = c.get("/api/runs", headers={HEADER: token[:-1] + ("x" if token[-1] != "x" else "y")})
        assert r.status_code == 401  # a wrong token is no token
        page = c.get("/")
        assert page.status_code == 401 and "?token=" in page.text and "diffkit lab" in page.text  # how to get in
        assert c.get("/api/runs", headers={HEADER: token}).status_code == 200  # scripts: the header


def test_the_token_url_sets_a_cookie_and_the_page_then_works(public_lab):
    app, token = public_lab
    with TestClient(app, base_url="http://localhost") as c:
        r = c.get(f"/?token={token}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"  # the token leaves the address bar
        cookie = r.headers["set-cookie"]
        assert COOKIE in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert c.get("/").status_code == 200 and "diffkit lab" in c.get("/").text
        assert c.get("/api/runs").json() == {"runs": []}
        assert c.post("/api/sample", json={"run": "none"}).status_code == 404  # past the guard, to the handler


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.evil.example", "[fe80::1]:80"])
def test_a_foreign_host_header_is_refused_on_loopback_too(tmp_path, host):
    """DNS rebinding: a page on evil.example re-pointed at 127.0.0.1 sends its own name as Host."""
    app = create_app(tmp_path)
    with TestClient(app, base_url="http://localhost") as c:
        for path in ("/", "/api/runs", "/static/lab.js"):
            r = c.get(path, headers={"host": host})
            assert r.status_code == 403 and "--allow-host" in r.json()["error"], (path, host)
        assert c.post("/api/train", json={"name": "x"}, headers={"host": host}).status_code == 403
        assert c.get("/api/runs", headers={"host": "127.0.0.1:8765"}).status_code == 200
        assert c.get("/api/runs", headers={"host": "[::1]:8765"}).status_code == 200
    allowed = create_app(tmp_path, guard=make_guard("127.0.0.1", allow_hosts=["lab.internal"]))
    with TestClient(allowed, base_url="http://lab.internal") as c:
        assert c.get("/api/runs").status_code == 200


def test_a_cross_origin_request_without_the_token_is_refused(tmp_path):
    app = create_app(tmp_path)
    with TestClient(app, base_url="http://localhost:8765") as c:
        body = {"name": "x", "data": "moons", "steps": 10}
        for headers in ({"origin": "http://evil.example"}, {"origin": "http://localhost:9999"},
                        {"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"}):
            r = c.post("/api/train", json=body, headers=headers)
            assert r.status_code == 403 and "cross-site" in r.json()["error"], headers
            assert c.get("/api/runs", headers=headers).status_code == 403
        assert not any(tmp_path.iterdir())  # nothing started, nothing written
        same = {"origin": "http://localhost:8765", "sec-fetch-site": "same-origin"}
        assert c.get("/api/runs", headers=same).status_code == 200
        r = c.post("/api/sample", json={"run": "none"}, headers=same)
        assert r.status_code == 404  # the page's own request reaches the handler


def test_host_names_are_read_without_their_port():
    assert host_name("LocalHost:8765") == "localhost"
    assert host_name("[::1]:8765") == "::1" and host_name("[::1]") == "::1"
    assert host_name("10.0.0.2") == "10.0.0.2" and host_name("") == ""


def test_the_cli_prints_the_token_url_once_beyond_loopback(monkeypatch, capsys, tmp_path):
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, log_level: served.update(app=app, host=host))
    assert main(["lab", "--host", "0.0.0.0", "--port", "8800", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr()
    line = [ln for ln in out.out.splitlines() if "?token=" in ln]
    assert len(line) == 1 and "http://0.0.0.0:8800/?token=" in line[0]
    token = line[0].split("?token=")[1].split()[0]
    with TestClient(served["app"], base_url="http://localhost") as c:
        assert c.get("/api/runs").status_code == 401
        assert c.get("/api/runs", headers={HEADER: token}).status_code == 200
    assert main(["lab", "--port", "8801", "--runs", str(tmp_path)]) == 0  # loopback: no token
    assert "?token=" not in capsys.readouterr().out
    with TestClient(served["app"], base_url="http://localhost") as c:
        assert c.get("/api/runs").status_code == 200
