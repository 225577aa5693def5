"""Several hosts: the control plane in one network namespace, workloads in two
others joined by a bridge, calls crossing between them with mTLS.

The namespaces, links and 10.123.0.0/24 addresses are made by this test, used only
inside those namespaces, and removed afterwards (processes in them are killed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support import SHOAL, delete_netns

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="needs root and iproute2 for network namespaces")

APP = r'''
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        b = b"hello from " + os.environ["WHO"].encode() + b"\n"
        self.send_response(200); self.send_header("content-length", str(len(b)))
        self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''

HOSTS = {"cp": "10.123.0.10", "h1": "10.123.0.11", "h2": "10.123.0.12"}


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Hosts:
    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.names = {h: f"sh{h}-{self.tag}" for h in HOSTS}
        self.bridge = f"shbr-{self.tag}"

    def up(self) -> None:
        ip("netns", "add", self.bridge)
        ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
        ip("-n", self.bridge, "link", "set", "br0", "up")
        for h, addr in HOSTS.items():
            ns = self.names[h]
            ip("netns", "add", ns)
            ip("link", "add", f"v{h}", "netns", self.bridge, "type", "veth", "peer", "name",
               "eth0", "netns", ns)
            ip("-n", self.bridge, "link", "set", f"v{h}", "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def run(self, host: str, *cmd: str, env: dict[str, str] | None = None,
            timeout: float = 150) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["ip", "netns", "exec", self.names[host], *cmd],
                           env={**os.environ, **(env or {})}, capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise AssertionError(f"{host}: {' '.join(cmd)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def down(self) -> None:
        for ns in [*self.names.values(), self.bridge]:
            delete_netns(ns)


@pytest.fixture
def hosts(tmp_path):
    h = Hosts()
    try:
        h.up()
    except subprocess.CalledProcessError as e:
        h.down()
        pytest.skip(f"network namespaces unavailable here: {e.stderr!r}")
    try:
        yield h
    finally:
        h.down()


def test_workloads_on_two_hosts_call_each_other_with_mtls(hosts, tmp_path):
    (tmp_path / "app.py").write_text(APP)
    home = {h: str(tmp_path / h) for h in HOSTS}
    url = hosts.run("cp", SHOAL, "up", "--api", f"{HOSTS['cp']}:0", "--scrape-interval", "1s",
                    env={"SHOAL_HOME": home["cp"]}).stdout.split()[0]
    token = Path(home["cp"], "token").read_text().strip()
    for h, name in (("h1", "emoji"), ("h2", "web")):
        env = {"SHOAL_HOME": home[h], "SHOAL_API": url, "SHOAL_TOKEN": token, "WHO": name}
        hosts.run(h, SHOAL, "run", "-n", "multi", "--name", name, "--port", "8080",
                  "--host", HOSTS[h], "--", sys.executable, str(tmp_path / "app.py"), env=env)
    try:
        pods = json.loads(hosts.run("cp", SHOAL, "get", "pods", "-n", "multi", "-o", "json",
                                    env={"SHOAL_HOME": home["cp"]}).stdout)
        by = {p["deployment"]: p for p in pods}
        # proxies register the address other hosts reach them at, not loopback
        assert by["emoji"]["inbound"].startswith(HOSTS["h1"] + ":")
        assert by["web"]["inbound"].startswith(HOSTS["h2"] + ":")
        got = hosts.run("h2", "curl", "-sS", "--max-time", "20", "-x",
                        f"http://{by['web']['outbound']}", "http://emoji.multi:8080/").stdout
        assert got == "hello from emoji\n"
        metrics = hosts.run("h2", "curl", "-sS", f"http://{by['web']['admin']}/metrics").stdout
        line = next(ln for ln in metrics.splitlines()
                    if ln.startswith("request_total{") and 'authority="emoji.multi:8080"' in ln)
        assert 'tls="true"' in line and f'target_addr="{by["emoji"]["inbound"]}"' in line
        assert line.endswith(" 1.0")
        emoji_metrics = hosts.run("h1", "curl", "-sS",
                                  f"http://{by['emoji']['admin']}/metrics").stdout
        assert 'client_id="default.multi.serviceaccount.identity.shoal.local"' in emoji_metrics
        # proxies on other hosts register an admin address the control plane can
        # scrape: their traffic shows in stat and edges, asked on the control plane's host
        assert by["web"]["admin"].startswith(HOSTS["h2"] + ":")
        cp = {"SHOAL_HOME": home["cp"]}
        deadline, stat, edges = time.monotonic() + 30, {}, []
        while time.monotonic() < deadline:
            hosts.run("h2", "curl", "-sS", "--max-time", "5", "-x",
                      f"http://{by['web']['outbound']}", "http://emoji.multi:8080/")
            rows = json.loads(hosts.run("cp", SHOAL, "stat", "deploy", "-n", "multi", "-t",
                                        "10s", "-o", "json", env=cp).stdout or "[]")
            stat = {r["name"]: r for r in rows}
            edges = json.loads(hosts.run("cp", SHOAL, "edges", "deploy", "-n", "multi",
                                         "-o", "json", env=cp).stdout or "[]")
            if stat.get("emoji", {}).get("rps") and edges:
                break
            time.sleep(1)
        assert stat["emoji"]["success"] == 1.0 and stat["emoji"]["meshed"] == "1/1", stat
        assert [(e["src"], e["dst"], e["secured"]) for e in edges] == [("web", "emoji", True)]
        assert edges[0]["server_id"] == "default.multi.serviceaccount.identity.shoal.local"
    finally:
        for h in ("h1", "h2"):
            subprocess.run(["ip", "netns", "exec", hosts.names[h], SHOAL, "down"],
                           env={**os.environ, "SHOAL_HOME": home[h], "SHOAL_API": url,
                                "SHOAL_TOKEN": token}, capture_output=True, timeout=60)
        subprocess.run(["ip", "netns", "exec", hosts.names["cp"], SHOAL, "down"],
                       env={**os.environ, "SHOAL_HOME": home["cp"]}, capture_output=True,
                       timeout=60)
