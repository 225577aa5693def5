"""Control-plane measurements: time from `shoal run` to ready, the control plane's
memory with 50 pods registered, and how long an endpoint change takes to reach 50
subscribed watchers.

The 50 pods are registered through the API the supervisors use (``PUT
/api/v1/namespaces/{ns}/pods/{name}``, operator token), each with a bootstrap token,
so no proxy or app runs for them. The watchers are plain HTTP clients on the
destination watch (NDJSON), standing in for proxies; one thread reads all of them
and stamps each snapshot as it arrives.
"""

from __future__ import annotations

import json
import selectors
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field

import httptools

from bench.mesh import Mesh
from bench.procs import BenchError, rss_kib, tree
from bench.setups import NAMESPACE

NAME = "control-plane"
PODS = 50
WATCHERS = 50
#: The deployment whose 50 registered pods the watchers follow.
CP_NAMESPACE = "bench-cp"
WATCHED = "watched"
AUTHORITY = f"{WATCHED}.{CP_NAMESPACE}:8080"
WAIT_S = 10.0


@dataclass
class ControlResult:
    #: Wall time of each `shoal run` of a one-pod deployment until it returned ready.
    ready_s: list[float] = field(default_factory=list)
    #: Control-plane RSS before the 50 pods, with them, and with the watchers too.
    rss_before_kib: int | None = None
    rss_pods_kib: int | None = None
    rss_watched_kib: int | None = None
    #: Pods in the registry when measured (the 50 plus those really running).
    pods: int = 0
    watchers: int = 0
    #: Per endpoint change: seconds until the first and until the last watcher saw it.
    first_s: list[float] = field(default_factory=list)
    all_s: list[float] = field(default_factory=list)
    error: str | None = None

    def ready_median(self) -> float | None:
        return statistics.median(self.ready_s) if self.ready_s else None

    def propagation_median(self) -> float | None:
        return statistics.median(self.all_s) if self.all_s else None

    def rss_max_kib(self) -> int | None:
        seen = [r for r in (self.rss_pods_kib, self.rss_watched_kib) if r]
        return max(seen) if seen else None


def log(msg: str) -> None:
    print(f"bench: {NAME}: {msg}", file=sys.stderr, flush=True)


def measure(mesh: Mesh, ready_runs: int = 3, changes: int = 5) -> ControlResult:
    """All three measurements on one control plane; errors end up in ``.error``."""
    out = ControlResult()
    try:
        mesh.up()
        assert mesh.control_pid is not None
        out.rss_before_kib = _rss(mesh.control_pid)
        log(f"time from `shoal run` to ready, {ready_runs} runs")
        for i in range(ready_runs):
            # unpinned: the command, its supervisor and proxy start as a user's would
            took = mesh.run(NAMESPACE, f"ready-{i + 1}", 8080,
                            [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                             "$(PORT)"])
            out.ready_s.append(took)
            log(f"run {i + 1}: ready in {took:.2f}s")
        log(f"registering {PODS} pods")
        pods = _register(mesh)
        time.sleep(0.5)
        out.pods = len(mesh.api("GET", "/api/v1/pods"))
        out.rss_pods_kib = _rss(mesh.control_pid)
        log(f"{WATCHERS} watchers on {AUTHORITY}, {changes} endpoint changes")
        with Watchers(mesh, AUTHORITY, WATCHERS) as watchers:
            watchers.wait_all(PODS, since=0.0)
            out.watchers = WATCHERS
            time.sleep(0.5)
            out.rss_watched_kib = _rss(mesh.control_pid)
            for k in range(changes):
                ready = k % 2 == 1  # pod 0 leaves the endpoint set, then comes back
                _refresh(mesh, pods)  # every pod reported recently: none goes stale
                t0 = time.monotonic()
                _report(mesh, pods[0], ready)
                first, last = watchers.wait_all(PODS if ready else PODS - 1, since=t0)
                out.first_s.append(first - t0)
                out.all_s.append(last - t0)
                log(f"change {k + 1}: first watcher {1000 * (first - t0):.1f}ms, "
                    f"all {1000 * (last - t0):.1f}ms")
    except (BenchError, OSError, ValueError, KeyError) as e:
        out.error = str(e) or type(e).__name__
        log(f"FAILED: {out.error.splitlines()[0]}")
    return out


def _rss(pid: int) -> int:
    return sum(rss_kib(p) for p in tree(pid))


def _register(mesh: Mesh) -> list[dict]:
    """A deployment of 50 replicas whose pods are reported ready, as supervisors do."""
    applied = mesh.api("POST", "/api/v1/deployments", {
        "namespace": CP_NAMESPACE, "name": WATCHED, "command": ["true"], "port": 8080,
        "replicas": PODS})
    rs = applied["replicaset"]["name"]
    pods = []
    for i in range(PODS):
        name = f"{rs}-b{i:04d}"
        report = {"replicaset": rs, "status": "Running", "ready": True, "restarts": 0,
                  "containers_ready": 2, "app_port": 30000 + i,
                  **{k: f"127.0.0.1:{base + i}" for k, base in
                     (("inbound", 20000), ("outbound", 21000), ("admin", 22000),
                      ("tap", 23000))}}
        mesh.api("PUT", f"/api/v1/namespaces/{CP_NAMESPACE}/pods/{name}", report)
        mesh.api("POST", "/api/v1/identity/tokens", {"namespace": CP_NAMESPACE, "pod": name})
        pods.append({"name": name, "report": report})
    return pods


def _report(mesh: Mesh, pod: dict, ready: bool) -> None:
    pod["report"] = {**pod["report"], "ready": ready, "containers_ready": 2 if ready else 1}
    mesh.api("PUT", f"/api/v1/namespaces/{CP_NAMESPACE}/pods/{pod['name']}", pod["report"])


def _refresh(mesh: Mesh, pods: list[dict]) -> None:
    for pod in pods:
        mesh.api("PUT", f"/api/v1/namespaces/{CP_NAMESPACE}/pods/{pod['name']}",
                 pod["report"])


class Watchers:
    """``n`` destination watches of one authority, read by one thread.

    >>> with Watchers(mesh, "watched.bench-cp:8080", 50) as w: w.wait_all(50, since=0.0)
    """

    def __init__(self, mesh: Mesh, authority: str, n: int) -> None:
        assert mesh.url is not None
        host, port = mesh.url.split("//", 1)[1].rsplit(":", 1)
        token = (mesh.home / "token").read_text().strip()
        self.request = (f"GET /api/v1/destination/watch?authority={authority} HTTP/1.1\r\n"
                        f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                        "Accept: application/x-ndjson\r\n\r\n").encode()
        self.addr = (host, int(port))
        self.n = n
        self.watches: list[_Watch] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, name="watchers", daemon=True)

    def __enter__(self) -> Watchers:
        sel = selectors.DefaultSelector()
        for _ in range(self.n):
            w = _Watch(socket.create_connection(self.addr, timeout=5))
            w.sock.sendall(self.request)
            w.sock.setblocking(False)
            sel.register(w.sock, selectors.EVENT_READ, w)
            self.watches.append(w)
        self.sel = sel
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        for w in self.watches:
            w.sock.close()
        self.sel.close()

    def _read(self) -> None:
        while not self.stop.is_set():
            for key, _ in self.sel.select(0.05):
                w: _Watch = key.data
                try:
                    data = w.sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                now = time.monotonic()
                if not data:
                    w.closed = True
                    self.sel.unregister(w.sock)
                    continue
                w.now = now
                try:
                    w.parser.feed_data(data)
                except httptools.HttpParserError:
                    w.closed = True
                    self.sel.unregister(w.sock)

    def wait_all(self, endpoints: int, since: float) -> tuple[float, float]:
        """Wait until every watcher's latest snapshot (received after ``since``) has
        ``endpoints`` endpoints; (first arrival, last arrival), monotonic seconds."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            got = [w.at for w in self.watches if w.count == endpoints and w.at >= since]
            if len(got) == len(self.watches):
                return min(got), max(got)
            bad = [w for w in self.watches if w.closed or (w.status and w.status != 200)]
            if bad:
                raise BenchError(f"a destination watch ended (status {bad[0].status})")
            time.sleep(0.002)
        waiting = sum(1 for w in self.watches if not (w.count == endpoints and w.at >= since))
        raise BenchError(f"{waiting} of {len(self.watches)} watchers did not see "
                         f"{endpoints} endpoints within {WAIT_S:.0f}s")


class _Watch:
    """One watch stream: httptools undoes the chunking, lines are NDJSON snapshots."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parser = httptools.HttpResponseParser(self)
        self.buf = b""
        self.status = 0
        self.closed = False
        self.now = 0.0
        #: The latest snapshot's endpoint count and when it arrived.
        self.count = -1
        self.at = 0.0

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.buf += body
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            snap = json.loads(line) if line.strip() else {}
            if "endpoints" in snap:  # ``{}`` is a heartbeat
                self.count, self.at = len(snap["endpoints"]), self.now
