"""The dashboard's server side over real HTTP (uvicorn on loopback, httpx and curl as
clients): login by token and by one-time link, the session cookie in place of the
Bearer token, DNS-rebinding and cross-origin refusals, the CSP, hostile login input,
and the API additions the pages use (check, profile template, edge traffic).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import httpx
import pytest

from shoal.control.api import create_app
from shoal.control.config import ControlConfig
from shoal.control.plane import ControlPlane
from shoal.web.auth import COOKIE
from tests.support import uvicorn_server

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def web(tmp_path) -> Iterator[tuple[ControlPlane, str]]:
    plane = ControlPlane.open(ControlConfig(home=tmp_path / "home",
                                            dashboard_hosts=("shoal-web.shoal",)))
    with uvicorn_server(create_app(plane)) as addr:
        yield plane, f"http://{addr}"


def browser(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=10, trust_env=False, follow_redirects=False)


def signed_in(plane: ControlPlane, url: str) -> httpx.Client:
    c = browser(url)
    r = c.post("/login", data={"token": plane.token, "next": "/namespaces"})
    assert r.status_code == 303 and r.headers["location"] == "/namespaces"
    assert COOKIE in c.cookies
    return c


def test_pages_and_api_need_a_session(web):
    plane, url = web
    c = browser(url)
    r = c.get("/namespaces/emojivoto?window=10s")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fnamespaces%2Femojivoto%3Fwindow%3D10s"
    assert c.get("/api/v1/health").status_code == 401
    page = c.get("/login")
    assert page.status_code == 200 and 'name="token"' in page.text
    assert "<script" not in page.text  # the CSP forbids inline scripts: there are none

    s = signed_in(plane, url)
    health = s.get("/api/v1/health")
    assert health.status_code == 200 and health.json()["version"]
    assert s.get("/api/v1/pods").json() == []
    # the app's pages, or a clear 503 while the bundle is not built
    assert s.get("/namespaces").status_code in (200, 503)
    assert s.get("/api/v1/no-such-thing").status_code in (404, 422)


def test_wrong_token_and_hostile_login_forms(web):
    plane, url = web
    c = browser(url)
    r = c.post("/login", data={"token": "nope", "next": "/"})
    assert r.status_code == 401 and "Wrong token" in r.text and COOKIE not in c.cookies
    # the form echoes `next` into the page: escaped, never markup
    r = c.post("/login", data={"token": "x", "next": '/"><script>alert(1)</script>'})
    assert "<script>alert(1)" not in r.text and "&lt;script&gt;" in r.text
    assert c.post("/login", content=b"token=" + b"a" * 10_000).status_code == 413
    assert c.post("/login", content=b"\xff\xfe%%%=&&&").status_code == 401
    # no open redirect after login
    for target in ("//evil.example/x", "https://evil.example", "/\\evil", "javascript:x"):
        r = browser(url).post("/login", data={"token": plane.token, "next": target})
        assert r.status_code == 303 and r.headers["location"] == "/", target
    # a forged or expired cookie is no session
    forged = browser(url)
    forged.cookies.set(COOKIE, "99999999999.deadbeef")
    assert forged.get("/api/v1/health").status_code == 401
    forged.cookies.set(COOKIE, "1.0" * 4000)
    assert forged.get("/api/v1/health").status_code in (401, 431, 400)
    # and the server still answers everyone else
    assert signed_in(plane, url).get("/api/v1/health").status_code == 200


def test_one_time_link(web):
    plane, url = web
    api = httpx.Client(base_url=url, trust_env=False,
                       headers={"authorization": f"Bearer {plane.token}"})
    path = api.post("/api/v1/dashboard/tickets", json={}).json()["path"]
    c = browser(url)
    r = c.get(path + "&next=%2Fcontrolplane")
    assert r.status_code == 303 and r.headers["location"] == "/controlplane"
    assert c.get("/api/v1/health").status_code == 200
    again = browser(url).get(path)  # used once: refused
    assert again.status_code == 401 and "already used" in again.text
    assert browser(url).get("/login?ticket=made-up").status_code == 401
    assert browser(url).post("/api/v1/dashboard/tickets", json={}).status_code == 401


def test_rebinding_and_cross_origin_are_refused(web):
    plane, url = web
    s = signed_in(plane, url)
    port = url.rsplit(":", 1)[1]
    # a name that resolves to us by a rebinding trick: refused, pages and API alike
    for path in ("/namespaces", "/login", "/api/v1/health"):
        r = s.get(path, headers={"host": f"evil.example:{port}"})
        assert r.status_code == 403 and "not this dashboard" in r.json()["error"]
    for host in (f"localhost:{port}", f"[::1]:{port}", f"shoal-web.shoal:{port}"):
        assert s.get("/api/v1/health", headers={"host": host}).status_code == 200, host
    # another site's script, even with the cookie
    r = s.get("/api/v1/health", headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.json()["error"]
    assert s.get("/api/v1/health", headers={"origin": url}).status_code == 200
    # a cookie-authenticated write must say where it comes from
    r = s.post("/api/v1/dashboard/tickets", json={})
    assert r.status_code == 403 and "Origin" in r.json()["error"]
    assert s.post("/api/v1/dashboard/tickets", json={},
                  headers={"origin": url}).status_code == 200
    # the CLI (Bearer token, any Host) is not a browser: it keeps working
    r = httpx.get(f"{url}/api/v1/health", headers={
        "authorization": f"Bearer {plane.token}", "host": f"10.1.2.3:{port}"})
    assert r.status_code == 200


def test_security_headers_with_curl(web):
    plane, url = web
    out = subprocess.run(["curl", "-sS", "-D", "-", "-o", "/dev/null", f"{url}/login"],
                         capture_output=True, text=True, timeout=20).stdout.lower()
    assert "content-security-policy: default-src 'self'; script-src 'self';" in out
    assert "style-src 'self';" in out and "unsafe-inline" not in out
    assert "x-frame-options: deny" in out and "x-content-type-options: nosniff" in out


def test_logout_ends_the_browser_session(web):
    plane, url = web
    s = signed_in(plane, url)
    r = s.post("/logout", headers={"origin": url})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert COOKIE not in s.cookies
    assert s.get("/api/v1/health").status_code == 401


def test_check_and_profile_template(web):
    plane, url = web
    s = signed_in(plane, url)
    categories = s.get("/api/v1/check").json()
    assert [c["categoryName"] for c in categories] == [
        "shoal-control-plane", "shoal-identity", "shoal-data-plane"]
    assert all(ch["result"] in ("success", "warning") for c in categories
               for ch in c["checks"])
    r = s.get("/api/v1/profiles/template", params={"namespace": "shoalvoto", "service": "kv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/yaml")
    assert 'filename="kv.shoalvoto.profile.yaml"' in r.headers["content-disposition"]
    assert "kind: ServiceProfile" in r.text and "name: kv.shoalvoto.svc.cluster.local" in r.text
    bad = s.get("/api/v1/profiles/template", params={"namespace": "a/../b", "service": "kv"})
    assert bad.status_code == 400 and "namespace" in bad.json()["error"]
