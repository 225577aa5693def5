"""The mesh end to end: discovery, balancing and mTLS between real proxies started by
`shoal run`, strict mTLS, and traffic that carries on without the control plane."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.integration.test_control_helpers import get_json, processes_mentioning
from tests.integration.test_control_helpers import shoal as _shoal
from tests.support import metric, parse_metrics, wait_for

APP = r'''
import http.server, json, os
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps({"pod": os.environ.get("HOSTNAME", ""), "port": os.environ["PORT"]}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''


def shoal(home, *args, **kw):  # type: ignore[no-untyped-def]
    """Pods can take a while to start on a loaded machine: be patient, not flaky."""
    kw.setdefault("timeout", 150)
    return _shoal(home, *args, **kw)


@pytest.fixture
def mesh(tmp_path):
    home = tmp_path / "home"
    (tmp_path / "app.py").write_text(APP)
    shoal(home, "up", "--api", "127.0.0.1:0")
    try:
        yield home, tmp_path
    finally:
        shoal(home, "down", check=False)
        for pid in processes_mentioning(str(home)):
            os.kill(pid, signal.SIGKILL)


def scrape(admin: str):
    return parse_metrics(httpx.get(f"http://{admin}/metrics", timeout=5).text)


def via(outbound: str, url: str, n: int = 1, workers: int = 1) -> list[int]:
    def one(_):
        with httpx.Client(proxy=f"http://{outbound}", timeout=10) as c:
            return c.get(url).status_code
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(n)))


def plaintext_refused(inbound: str) -> bool:
    """A plaintext request to a pod's inbound listener gets no answer (closed)."""
    host, port = inbound.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            return s.recv(100) == b""
        except ConnectionResetError:
            return True


def caller_and_callee(home, tmp, ns: str, callee: str, caller: str,
                      *callee_flags: str) -> dict[str, dict]:
    """Two deployments of the test app, callee on 9000 and caller on 9001; pods by
    deployment."""
    for name, port, flags in ((callee, "9000", callee_flags), (caller, "9001", ())):
        shoal(home, "run", "-n", ns, "--name", name, "--port", port, *flags, "--",
              sys.executable, str(tmp / "app.py"))
    return {p["deployment"]: p for p in get_json(home, "pods", "-n", ns)}


def test_calls_between_pods_are_discovered_balanced_and_mtls(mesh):
    home, tmp = mesh
    shoal(home, "run", "-n", "emojivoto", "--name", "emoji", "--port", "8080",
          "--replicas", "2", "--", sys.executable, str(tmp / "app.py"))
    shoal(home, "run", "-n", "emojivoto", "--name", "web", "--port", "8081", "--",
          sys.executable, str(tmp / "app.py"))
    pods = {p["name"]: p for p in get_json(home, "pods", "-n", "emojivoto")}
    web = next(p for p in pods.values() if p["deployment"] == "web")
    emojis = [p for p in pods.values() if p["deployment"] == "emoji"]
    statuses = via(web["outbound"], "http://emoji.emojivoto:8080/", n=40, workers=8)
    assert statuses == [200] * 40
    m = scrape(web["admin"])
    ident = "default.emojivoto.serviceaccount.identity.shoal.local"
    assert metric(m, "request_total", direction="outbound", authority="emoji.emojivoto:8080",
                  tls="true", server_id=ident, dst_deployment="emoji",
                  dst_namespace="emojivoto") == 40
    per_pod = {p["name"]: metric(m, "request_total", direction="outbound", dst_pod=p["name"])
               for p in emojis}
    assert sum(per_pod.values()) == 40 and all(n > 0 for n in per_pod.values()), per_pod
    for p in emojis:  # the callee sees the caller's identity
        got = metric(scrape(p["admin"]), "request_total", direction="inbound", tls="true",
                     client_id=ident)
        assert got == per_pod[p["name"]]
    # a plaintext client of a meshed pod is served and labelled as such
    r = httpx.get(f"http://{emojis[0]['inbound']}/", timeout=5, trust_env=False)
    assert r.status_code == 200
    assert metric(scrape(emojis[0]["admin"]), "request_total", direction="inbound",
                  tls="no_identity", no_tls_reason="no_tls_from_remote") == 1
    # an unknown service is a 502 from the proxy, not a DNS lookup
    assert via(web["outbound"], "http://nope.emojivoto:8080/") == [502]


def test_strict_mtls_refuses_plaintext_but_serves_the_mesh(mesh):
    home, tmp = mesh
    pods = caller_and_callee(home, tmp, "bank", "vault", "teller", "--mtls", "strict")
    assert via(pods["teller"]["outbound"], "http://vault.bank:9000/") == [200]
    assert plaintext_refused(pods["vault"]["inbound"])
    m = scrape(pods["vault"]["admin"])
    assert metric(m, "proxy_errors_total", error="plaintext_refused") == 1
    assert metric(m, "request_total", direction="inbound", tls="true") == 1


def test_strict_mtls_mesh_wide_with_a_deployment_that_opts_out(tmp_path):
    home = tmp_path / "home"
    (tmp_path / "app.py").write_text(APP)
    shoal(home, "up", "--api", "127.0.0.1:0", "--mtls", "strict")
    try:
        pods = caller_and_callee(home, tmp_path, "bank", "vault", "teller")
        shoal(home, "run", "-n", "bank", "--name", "lobby", "--port", "9002", "--mtls",
              "permissive", "--", sys.executable, str(tmp_path / "app.py"))
        modes = {d["name"]: d["mtls"] for d in get_json(home, "deploy", "-n", "bank")}
        assert modes == {"vault": "strict", "teller": "strict", "lobby": "permissive"}
        lobby = next(p for p in get_json(home, "pods", "-n", "bank")
                     if p["deployment"] == "lobby")
        assert via(pods["teller"]["outbound"], "http://vault.bank:9000/") == [200]
        assert plaintext_refused(pods["vault"]["inbound"])
        assert httpx.get(f"http://{lobby['inbound']}/", timeout=5,
                         trust_env=False).status_code == 200
        m = scrape(pods["vault"]["admin"])
        assert metric(m, "proxy_errors_total", error="plaintext_refused") == 1
    finally:
        shoal(home, "down", check=False)
        for pid in processes_mentioning(str(home)):
            os.kill(pid, signal.SIGKILL)


def test_check_proxy_waits_for_the_first_scrape(tmp_path):
    home = tmp_path / "home"
    (tmp_path / "app.py").write_text(APP)
    shoal(home, "up", "--api", "127.0.0.1:0", "--scrape-interval", "1s")
    try:
        shoal(home, "run", "-n", "shop", "--name", "cart", "--port", "9000", "--",
              sys.executable, str(tmp_path / "app.py"))
        ok = shoal(home, "check", "--proxy", "-n", "shop", "--wait", "30s")
        for line in ("√ data plane namespace exists", "√ data plane proxies are ready (1",
                     "√ data plane proxies hold certificates",
                     "√ data plane proxy metrics are scraped"):
            assert line in ok.stdout, ok.stdout
        gone = shoal(home, "check", "--proxy", "-n", "nope", check=False)
        assert gone.returncode == 1 and "the namespace nope does not exist" in gone.stdout
    finally:
        shoal(home, "down", check=False)
        for pid in processes_mentioning(str(home)):
            os.kill(pid, signal.SIGKILL)


def test_traffic_carries_on_when_the_control_plane_is_killed(mesh):
    home, tmp = mesh
    pods = caller_and_callee(home, tmp, "shop", "cart", "front")
    assert via(pods["front"]["outbound"], "http://cart.shop:9000/") == [200]
    control = json.loads((home / "control.json").read_text())
    os.kill(control["pid"], signal.SIGKILL)
    wait_for(lambda: _dead(control["pid"]), what="control plane gone")
    # known endpoints and certificates keep working, new connections included
    assert via(pods["front"]["outbound"], "http://cart.shop:9000/", n=20, workers=4) == [200] * 20
    m = scrape(pods["front"]["admin"])
    assert metric(m, "response_total", direction="outbound", classification="success",
                  tls="true") == 21


def test_clients_that_close_their_connections_share_one_pooled_mtls_connection(mesh):
    """Connection is hop-by-hop: apps whose HTTP client closes after every request
    (Python's urllib, HTTP/1.0 clients) still cost no mTLS handshake per request."""
    home, tmp = mesh
    pods = caller_and_callee(home, tmp, "blog", "posts", "front")
    proxy = f"http://{pods['front']['outbound']}"
    for extra in (["-H", "Connection: close"], ["--http1.0"]) * 5:
        out = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w",
                              "%{http_code}", "-x", proxy, *extra, "http://posts.blog:9000/"],
                             capture_output=True, text=True, timeout=20)
        assert out.stdout == "200", out.stderr
    client = scrape(pods["front"]["admin"])
    assert metric(client, "request_total", direction="outbound", tls="true") == 10
    assert metric(client, "tcp_open_total", direction="outbound", peer="dst",
                  dst_deployment="posts") == 1
    assert metric(client, "tcp_open_total", direction="outbound", peer="src") == 10
    server = scrape(pods["posts"]["admin"])
    assert metric(server, "tcp_open_connections", direction="inbound", peer="src",
                  tls="true") == 1


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except FileNotFoundError:
        return True
