"""A real mesh for the benchmark: `shoal up` and `shoal run` in a temp $SHOAL_HOME.

``Mesh(sup)`` owns the home; ``up()`` starts the control plane, ``run(...)`` starts a
deployment the way a user does and returns how long `shoal run` took, ``api(...)``
talks to the control plane with the operator token, and ``close()`` runs `shoal down`
and then kills whatever it left behind (also after an error or Ctrl-C).

The meshed hop with mTLS (``shoal-mesh-tls``): pod B's app is an nginx configured
like the bench backend, pod A's app an idle http.server; the load generator sends
origin-form requests to A's outbound listener with ``Host: backend.bench:80``, so a
request crosses A's outbound → mTLS → B's inbound → nginx. Both proxies are moved to
CPU 0 once ready; everything else of the mesh stays on CPU 1 with the load.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.procs import BenchError, Supervisor, boost, pinned, tree, wait_listening
from bench.setups import (
    _BACKEND,
    _NGINX_MAIN,
    BODY,
    LOAD_CPU,
    NAMESPACE,
    PROXY_CPU,
    Running,
    Setup,
    shoal_command,
)

NAME = "shoal-mesh-tls"
#: The authority pod A's outbound listener routes by: B's service.
AUTHORITY = f"backend.{NAMESPACE}:80"
RUN_TIMEOUT = 60.0


class Mesh:
    """A control plane and its pods in a temp $SHOAL_HOME under the supervisor's dir."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.home = sup.path("shoal-home")
        self.url: str | None = None
        self.control_pid: int | None = None
        #: Set before the first command: from then on close() has something to stop.
        self.started = False
        #: Every process of the mesh seen so far, with its start time (so that a pid
        #: reused by someone else is never killed).
        self.seen: dict[int, int] = {}

    # -- commands ----------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The caller's environment with this home, and nothing that points elsewhere."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SHOAL_") and k.lower() not in ("http_proxy", "https_proxy")}
        env["SHOAL_HOME"] = str(self.home)
        return env

    def shoal(self, args: list[str], timeout: float, cpu: int | None = None) -> str:
        """Run one shoal command against this home; its stdout, or BenchError."""
        argv = [*pinned(cpu), *shoal_command(), *args]
        try:
            out = subprocess.run(argv, env=self.env(), cwd=self.home, capture_output=True,
                                 text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise BenchError(f"`shoal {' '.join(args[:4])}` took over {timeout:.0f}s") from None
        if out.returncode != 0:
            raise BenchError(f"`shoal {' '.join(args[:6])}` exited with {out.returncode}: "
                             f"{(out.stderr or out.stdout).strip()[-600:]}")
        return out.stdout

    def up(self) -> None:
        """Start the control plane (once), on the load CPU, at nice -20 when root."""
        if self.url is not None:
            return
        self.home.mkdir(exist_ok=True)
        self.started = True
        self.url = self.shoal(["up", "--api", "127.0.0.1:0"], 60, cpu=LOAD_CPU).strip()
        info = json.loads((self.home / "control.json").read_text())
        self.control_pid = int(info["pid"])
        self.remember(self.control_pid)
        boost(self.control_pid)

    def run(self, namespace: str, name: str, port: int, command: list[str],
            replicas: int = 1, cpu: int | None = None) -> float:
        """`shoal run` a deployment; the wall time until it returned (its pods ready)."""
        t0 = time.monotonic()
        self.shoal(["run", "-n", namespace, "--name", name, "--port", str(port),
                    "--replicas", str(replicas), "--timeout", f"{RUN_TIMEOUT:g}", "--",
                    *command], RUN_TIMEOUT + 30, cpu=cpu)
        took = time.monotonic() - t0
        for pid in self.supervisor_pids():
            self.remember(pid)
        return took

    def supervisor_pids(self) -> list[int]:
        out = []
        for f in (self.home / "supervisors").glob("*/*.pid"):
            try:
                out.append(int(f.read_text().strip()))
            except (OSError, ValueError):
                pass
        return out

    # -- the API -----------------------------------------------------------------------
    def api(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        """One call with the operator token; the decoded answer, or BenchError."""
        assert self.url is not None, "up() first"
        host, port = self.url.split("//", 1)[1].rsplit(":", 1)
        token = (self.home / "token").read_text().strip()
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={
                "authorization": f"Bearer {token}", "content-type": "application/json"})
            r = conn.getresponse()
            raw = r.read()
        finally:
            conn.close()
        if r.status >= 400:
            raise BenchError(f"{method} {path}: {r.status} {raw[:300]!r}")
        return json.loads(raw)

    def pods(self, namespace: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/api/v1/pods?namespace={namespace}")

    # -- processes ---------------------------------------------------------------------
    def pod_processes(self, pod: str) -> tuple[int, list[int]]:
        """(the pod's proxy, its app): the supervisor's other children, so this is
        exact for a replica set of one pod. The app's own children (nginx's worker)
        are not listed; ``tree(app)`` has them."""
        for sup_pid in self.supervisor_pids():
            children = [p for p in tree(sup_pid)[1:] if _ppid(p) == sup_pid]
            proxies = [p for p in children
                       if "--inbound" in (argv := _cmdline(p)) and pod in argv]
            if proxies:
                app = [p for p in children if p != proxies[0]]
                for pid in [*proxies, *app]:
                    self.remember(pid)
                return proxies[0], app
        raise BenchError(f"cannot find the proxy of pod {pod}")

    def remember(self, pid: int) -> None:
        for p in tree(pid):
            started = _start_time(p)
            if started is not None:
                self.seen.setdefault(p, started)

    def close(self) -> None:
        """`shoal down`, then SIGKILL to anything of the mesh still running."""
        if not self.started:
            return
        try:  # a `shoal up` that failed half-way may still have left its pid
            self.control_pid = self.control_pid or int(
                json.loads((self.home / "control.json").read_text())["pid"])
        except (OSError, ValueError, KeyError):
            pass
        for pid in [*self.supervisor_pids(), *([self.control_pid] if self.control_pid else [])]:
            self.remember(pid)
        try:
            self.shoal(["down"], 60)
        except BenchError as e:
            print(f"bench: shoal down: {e}", file=sys.stderr)
        finally:  # even when interrupted again while `shoal down` runs
            for pid, started in self.seen.items():
                if _start_time(pid) == started:  # still the same process
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            self.started, self.url = False, None


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(stat[stat.rindex(b")") + 2:].split()[1])


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def pin(pid: int, cpu: int) -> None:
    """Move every thread of ``pid`` to ``cpu`` and give its session nice -20 (root)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), {cpu})
        except OSError:
            pass
    boost(pid)


# -- the meshed hop with mTLS --------------------------------------------------------

def _backend_command(mesh: Mesh) -> list[str]:
    """Pod B's app: nginx like the bench backend, on the port the supervisor gives it."""
    d = mesh.home / "nginx-b"
    d.mkdir(exist_ok=True)
    body = _BACKEND.format(port="@PORT@", body=BODY.replace("\n", "\\n"))
    (d / "nginx.conf.in").write_text(_NGINX_MAIN.format(dir=d, body=body))
    script = (f"sed \"s/@PORT@/$PORT/\" {d}/nginx.conf.in > {d}/nginx.conf && "
              f"exec nginx -p {d} -e {d}/error.log -c {d}/nginx.conf")
    return ["sh", "-c", script]


def start_mesh_tls(mesh: Mesh) -> Running:
    """Pods A (client) and B (nginx) started with `shoal run`; returns A's outbound."""
    mesh.up()
    mesh.run(NAMESPACE, "backend", 80, _backend_command(mesh), cpu=LOAD_CPU)
    mesh.run(NAMESPACE, "client", 8080,
             [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "$(PORT)"],
             cpu=LOAD_CPU)
    pods = {p["deployment"]: p for p in mesh.pods(NAMESPACE) if p["ready"]}
    if not {"backend", "client"} <= set(pods):
        raise BenchError(f"pods not ready: {sorted(pods)}")
    a, b = pods["client"], pods["backend"]
    proxy_a, app_a = mesh.pod_processes(a["name"])
    proxy_b, app_b = mesh.pod_processes(b["name"])
    for pid in (proxy_a, proxy_b):
        pin(pid, PROXY_CPU)
    # the apps and the control plane count as the load side; the supervisors do not
    # (their trees hold the proxies) and use next to no CPU
    side = [*app_a, *app_b, *([mesh.control_pid] if mesh.control_pid else [])]
    for pid in (*side, *mesh.supervisor_pids()):
        boost(pid)
    port = int(a["outbound"].rsplit(":", 1)[1])
    wait_listening(port)
    _check_mtls(port, a["admin"])
    return Running(NAME, port, [proxy_a, proxy_b], python_pids=[proxy_a, proxy_b],
                   host=AUTHORITY, side_pids=side)


def _check_mtls(port: int, admin: str) -> None:
    """One request through A, then A's metrics must count it as mTLS to B."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/", headers={"host": AUTHORITY})
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    if r.status != 200 or body != BODY.encode():
        raise BenchError(f"a GET through pod A's outbound answered {r.status} {body[:80]!r}")
    host, admin_port = admin.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(admin_port), timeout=10)
    try:
        conn.request("GET", "/metrics")
        metrics = conn.getresponse().read().decode(errors="replace")
    finally:
        conn.close()
    pattern = (r'^response_total\{[^}]*authority="' + re.escape(AUTHORITY)
               + r'"[^}]*tls="true"[^}]*\} [1-9]')
    if not re.search(pattern, metrics, re.M):
        raise BenchError(f"pod A's metrics do not show mTLS to {AUTHORITY}")


def tls_setup(mesh: Mesh) -> Setup:
    return Setup(NAME, "shoal pods: outbound → mTLS → inbound (`shoal up` + `shoal run`)",
                 lambda sup, backend: start_mesh_tls(mesh), 2)
