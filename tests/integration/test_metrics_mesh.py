"""Golden metrics end to end: `shoal up --scrape-interval 1s`, a meshed app under
`shoal run` with real proxies, traffic, then `stat`, `edges`, `routes`, `check`; the
seeds' /stress example with a 100 ms timeout profile; the store across down/up."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.integration.test_control_helpers import get_json, processes_mentioning, shoal, wait_for

pytestmark = pytest.mark.xdist_group("mesh")

TODO = r'''
import http.server, os, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, code):
        body = b"ok\n"
        self.send_response(code)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path.startswith("/stress"):
            time.sleep(3)
        self.reply(500 if self.path.startswith("/fail") else 200)
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.reply(201)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''

PROFILE = """\
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  name: todoui.todo.svc.cluster.local
spec:
  routes:
    - condition: {method: GET, pathRegex: /}
      name: GET /
    - condition: {method: GET, pathRegex: /stress}
      name: GET /stress
      timeout: 100ms
    - condition: {method: POST, pathRegex: /}
      name: POST /
    - condition: {method: POST, pathRegex: "/[^/]+"}
      name: POST /{id}
"""

STAT_HEADER = ["NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95",
               "LATENCY_P99", "TCP_CONN"]


@pytest.fixture
def mesh(tmp_path):
    home = tmp_path / "home"
    (tmp_path / "todo.py").write_text(TODO)
    shoal(home, "up", "--api", "127.0.0.1:0", "--scrape-interval", "1s")
    try:
        for name, port in (("todoui", "8080"), ("web", "8081")):
            shoal(home, "run", "-n", "todo", "--name", name, "--port", port, "--",
                  sys.executable, str(tmp_path / "todo.py"))
        pods = {p["deployment"]: p for p in get_json(home, "pods", "-n", "todo")}
        # Counters a proxy had before its first scrape are its baseline (as with
        # Prometheus): wait until both proxies were scraped before making traffic.
        wait_for(lambda: _scraped(home) >= 2, timeout=30, what="first scrape of both pods")
        yield home, tmp_path, pods
    finally:
        shoal(home, "down", check=False)
        for pid in processes_mentioning(str(home)):
            os.kill(pid, signal.SIGKILL)


def _scraped(home) -> int:
    """How many proxies the control plane has scraped successfully so far."""
    try:
        control = json.loads((home / "control.json").read_text())
        token = (home / "token").read_text().strip()
        r = httpx.get(f"{control['url']}/api/v1/metrics/targets", timeout=5, trust_env=False,
                      headers={"authorization": f"Bearer {token}"})
        return sum(1 for t in r.json()["targets"] if t.get("last_ok"))
    except (OSError, ValueError, KeyError, httpx.HTTPError):
        return 0


def call(pods, path, method="GET", n=1, timeout=10.0):
    """Requests from web's app (through its outbound proxy) to todoui."""
    def one(_):
        with httpx.Client(proxy=f"http://{pods['web']['outbound']}", timeout=timeout) as c:
            return c.request(method, f"http://todoui.todo:8080{path}", content=b"x=1"
                             if method == "POST" else None).status_code
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(n)))


def stat_json(home, *args):
    return json.loads(shoal(home, "stat", *args, "-o", "json").stdout)


def test_stat_edges_routes_and_the_stress_timeout(mesh):
    home, tmp, pods = mesh
    assert call(pods, "/", n=30) == [200] * 30
    assert call(pods, "/fail", n=10) == [500] * 10

    def todoui_seen():
        rows = {r["name"]: r for r in stat_json(home, "deploy", "-n", "todo", "-t", "1m")}
        # all 40 calls scraped: earlier, a scrape may have caught only some of them
        return rows if rows.get("todoui", {}).get("success") == pytest.approx(0.75) \
            else None
    rows = wait_for(todoui_seen, timeout=20, what="todoui's 40 calls in stat")
    assert rows["todoui"]["success"] == pytest.approx(0.75)
    assert rows["todoui"]["meshed"] == "1/1" and rows["web"]["meshed"] == "1/1"
    assert rows["todoui"]["latency_ms_p50"] is not None

    table = shoal(home, "stat", "deploy", "-n", "todo").stdout.splitlines()
    assert table[0].split() == STAT_HEADER
    todoui = next(line.split() for line in table if line.startswith("todoui"))
    assert todoui[1] == "1/1" and todoui[2] == "75.00%" and todoui[3].endswith("rps")
    assert todoui[4].endswith("ms")
    wide = shoal(home, "stat", "deploy", "-n", "todo", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-2:] == ["READ_BYTES/SEC", "WRITE_BYTES/SEC"]
    pods_table = shoal(home, "stat", "po", "-n", "todo").stdout.splitlines()
    assert pods_table[0].split()[:3] == ["NAME", "STATUS", "MESHED"]
    assert any("Running" in line for line in pods_table[1:])

    # the callers' views
    to = stat_json(home, "deploy/web", "--to", "deploy/todoui", "-n", "todo")
    assert [r["name"] for r in to] == ["web"] and to[0]["success"] == pytest.approx(0.75)
    frm = stat_json(home, "deploy", "--from", "deploy/web", "-n", "todo")
    assert [r["name"] for r in frm] == ["todoui"]
    bad = shoal(home, "stat", "deploy", "--to", "deploy/a", "--from", "deploy/b", check=False)
    assert bad.returncode == 1 and "--to and --from flags are mutually exclusive" in bad.stderr
    short = shoal(home, "stat", "deploy", "-t", "500ms", check=False)
    assert short.returncode == 1 and "shorter than the scrape interval" in short.stderr
    none = shoal(home, "stat", "deploy", "-n", "nowhere")
    assert none.stdout == "" and "No traffic found." in none.stderr

    edges = shoal(home, "edges", "deploy", "-n", "todo").stdout.splitlines()
    assert edges[0].split() == ["SRC", "DST", "SRC_NS", "DST_NS", "SECURED"]
    assert edges[1].split() == ["web", "todoui", "todo", "todo", "√"]
    wide_edges = shoal(home, "edges", "deploy", "-n", "todo", "-o", "wide").stdout
    assert "default.todo.serviceaccount.identity.shoal.local" in wide_edges

    check = shoal(home, "check")
    assert "control plane components are healthy" in check.stdout

    # the seeds' /stress: seconds without a profile ...
    started = time.monotonic()
    assert call(pods, "/stress") == [200]
    assert time.monotonic() - started > 2.5
    # ... an invalid profile is refused with the field, and changes nothing ...
    (tmp / "bad.yaml").write_text(PROFILE.replace("timeout: 100ms", "timeout: soon"))
    bad = shoal(home, "profile", "apply", "-f", str(tmp / "bad.yaml"), check=False)
    assert bad.returncode == 1 and "spec.routes[1].timeout" in bad.stderr
    assert "No service profiles found" in shoal(home, "profile", "list", "-A").stderr
    # ... then 504 in about 100 ms once the profile is applied
    (tmp / "profile.yaml").write_text(PROFILE)
    applied = shoal(home, "profile", "apply", "-f", str(tmp / "profile.yaml"))
    assert "todoui.todo.svc.cluster.local configured" in applied.stdout

    def fast_504():
        began = time.monotonic()
        status = call(pods, "/stress")
        return status == [504] and time.monotonic() - began < 1.5
    wait_for(fast_504, timeout=10, interval=0.2, what="the profile's timeout in force")
    assert call(pods, "/", n=10) == [200] * 10
    assert call(pods, "/items", "POST", n=5) == [201] * 5

    def routes_seen():
        rows = json.loads(shoal(home, "routes", "deploy/web", "--to", "deploy/todoui", "-n",
                                "todo", "-o", "json").stdout)
        by = {r["route"]: r for r in rows}
        return by if by.get("POST /{id}", {}).get("rps") and by.get("GET /stress", {}).get(
            "rps") else None
    by = wait_for(routes_seen, timeout=20, what="route metrics")
    assert list(by) == ["GET /", "GET /stress", "POST /", "POST /{id}", "[DEFAULT]"]
    assert by["GET /"]["success"] == 1.0 and by["GET /stress"]["success"] == 0.0
    assert by["GET /stress"]["latency_ms_p99"] < 1000
    text = shoal(home, "routes", "deploy/web", "--to", "deploy/todoui", "-n", "todo").stdout
    lines = text.splitlines()
    assert lines[0].split() == ["ROUTE", "SERVICE", "SUCCESS", "RPS", "LATENCY_P50",
                                "LATENCY_P95", "LATENCY_P99"]
    assert lines[-1].split()[:2] == ["[DEFAULT]", "todoui"]
    assert lines[3].split()[:5] == ["POST", "/", "todoui", "-", "-"]
    wide = shoal(home, "routes", "deploy/web", "--to", "deploy/todoui", "-n", "todo", "-o",
                 "wide").stdout
    assert "EFFECTIVE_SUCCESS" in wide and "ACTUAL_RPS" in wide
    get = shoal(home, "profile", "get", "todoui", "-n", "todo").stdout
    assert "timeout: 100ms" in get

    # the store and the profiles survive `shoal down` / `shoal up`
    shoal(home, "down")
    shoal(home, "up", "--api", "127.0.0.1:0", "--scrape-interval", "1s")
    kept = {r["name"]: r for r in stat_json(home, "deploy", "-n", "todo", "-t", "10m")}
    assert kept["todoui"]["rps"] and kept["todoui"]["success"] < 1.0
    assert "todoui" in shoal(home, "profile", "list", "-n", "todo").stdout
