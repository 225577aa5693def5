"""The things measured: a loopback backend and the proxies put in front of it.

Each setup starts its processes through a Supervisor and returns a ``Running``: the
port the load generator talks to and the root pids whose CPU and memory are charged
to the setup. The backend and the load generator live on CPU 1, proxies on CPU 0.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import BenchError, Supervisor, free_port, wait_listening

PROXY_CPU = 0
LOAD_CPU = 1

#: The backend's response body: 100 bytes, fixed.
BODY = ("shoal benchmark backend: a fixed response body of exactly one hundred bytes, "
        "served by nginx.......\n")
assert len(BODY) == 100

NAMESPACE = "bench"
SERVICE = f"backend.{NAMESPACE}:80"


@dataclass
class Running:
    name: str
    port: int
    pids: list[int] = field(default_factory=list)
    #: Processes to profile with py-spy (shoal only).
    python_pids: list[int] = field(default_factory=list)
    #: Host header to send (None: the default), for a port that routes by it.
    host: str | None = None
    #: The setup's processes on the load side (its own backend, a control plane):
    #: their CPU is the load's, not others'.
    side_pids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Setup:
    name: str
    title: str
    start: Callable[[Supervisor, int], Running]
    #: How many proxy hops a request crosses.
    hops: int


# -- nginx -------------------------------------------------------------------------

_NGINX_MAIN = """\
daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server_tokens off;
    default_type text/plain;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{body}
}}
"""

_BACKEND = """\
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "{body}"; }}
    }}"""

_NGINX_PROXY = """\
    upstream backend {{
        server 127.0.0.1:{backend};
        keepalive 128;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering on;
        }}
    }}"""


def _nginx(sup: Supervisor, name: str, body: str, port: int, cpu: int) -> list[int]:
    d = sup.path(name)
    d.mkdir()
    conf = d / "nginx.conf"
    conf.write_text(_NGINX_MAIN.format(dir=d, body=body))
    proc = sup.start(["nginx", "-p", str(d), "-e", str(d / "error.log"), "-c", str(conf)],
                     cpu=cpu, log=f"{name}.log")
    try:
        wait_listening(port, proc=proc)
    except BenchError as e:
        raise BenchError(f"{name}: {e}\n{sup.log_tail(f'{name}.log')}\n"
                         f"{_tail(d / 'error.log')}") from None
    return [proc.pid]


def start_backend(sup: Supervisor) -> Running:
    port = free_port()
    pids = _nginx(sup, "backend", _BACKEND.format(port=port, body=BODY.replace("\n", "\\n")),
                  port, LOAD_CPU)
    return Running("backend", port, pids)


def _direct(sup: Supervisor, backend: int) -> Running:
    return Running("direct", backend)


def _nginx_proxy(sup: Supervisor, backend: int) -> Running:
    port = free_port()
    pids = _nginx(sup, "nginx", _NGINX_PROXY.format(port=port, backend=backend), port, PROXY_CPU)
    return Running("nginx", port, pids)


# -- haproxy -----------------------------------------------------------------------

_HAPROXY = """\
global
    nbthread 1
    maxconn 8192
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    http-reuse always
    server backend 127.0.0.1:{backend}
"""


def _haproxy(sup: Supervisor, backend: int) -> Running:
    port = free_port()
    cfg = sup.path("haproxy.cfg")
    cfg.write_text(_HAPROXY.format(port=port, backend=backend))
    proc = sup.start(["haproxy", "-db", "-f", str(cfg)], cpu=PROXY_CPU, log="haproxy.log")
    try:
        wait_listening(port, proc=proc)
    except BenchError as e:
        raise BenchError(f"haproxy: {e}\n{sup.log_tail('haproxy.log')}") from None
    return Running("haproxy", port, [proc.pid])


# -- shoal -------------------------------------------------------------------------

READY_TIMEOUT = 30.0


def shoal_command() -> list[str]:
    """The console script beside this interpreter, else the entry point through python."""
    script = Path(sys.executable).with_name("shoal")
    if script.exists():
        return [str(script)]
    found = shutil.which("shoal")
    if found:
        return [found]
    return [sys.executable, "-c", "from shoal.cli.main import main; main()"]


def _shoal_proxy(sup: Supervisor, name: str, app: int, extra: list[str]) -> tuple[int, dict]:
    """Start one ``shoal proxy``; return its pid and the ready line it printed."""
    argv = [*shoal_command(), "proxy",
            "--inbound", "127.0.0.1:0", "--app", f"127.0.0.1:{app}",
            "--outbound", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--tap", "127.0.0.1:0",
            "--namespace", NAMESPACE, "--deployment", name, "--pod", f"{name}-0", *extra]
    log = f"shoal-{name}.log"
    # Flags only: a SHOAL_PROXY_* variable in the caller's environment must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_PROXY_")}
    proc = sup.start(argv, cpu=PROXY_CPU, log=log, stdout=subprocess.PIPE, env=env)
    ready = _read_ready(proc, READY_TIMEOUT)
    if ready is None:
        try:  # it closed stdout: give it a moment to finish exiting
            code = proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            code = None
        why = f"exited with {code}" if code is not None else f"not ready after {READY_TIMEOUT:.0f}s"
        raise BenchError(f"shoal proxy {why}: {' '.join(argv[-16:])}\n{sup.log_tail(log)}")
    # Keep draining stdout so the proxy never blocks on a full pipe.
    threading.Thread(target=_drain, args=(proc,), name=f"drain-{name}", daemon=True).start()
    return proc.pid, ready


def _read_ready(proc: subprocess.Popen, timeout: float) -> dict | None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if not r:
            if proc.poll() is not None:
                return None
            continue
        chunk = _read1(fd)
        if not chunk:
            return None
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("ready") is True:
                return msg
    return None


def _read1(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


def _drain(proc: subprocess.Popen) -> None:
    while _read1(proc.stdout.fileno()):  # type: ignore[union-attr]
        pass


def _port_of(addr: str) -> int:
    return int(str(addr).rsplit(":", 1)[1])


def _shoal_inbound(sup: Supervisor, backend: int) -> Running:
    pid, ready = _shoal_proxy(sup, "backend", backend, [])
    port = _port_of(ready["inbound"])
    wait_listening(port)
    return Running("shoal-inbound", port, [pid], python_pids=[pid])


def _shoal_mesh(sup: Supervisor, backend: int) -> Running:
    server_pid, server = _shoal_proxy(sup, "backend", backend, [])
    local = free_port()
    client_pid, _ = _shoal_proxy(sup, "client", backend, [
        "--destination", f"{SERVICE}=127.0.0.1:{_port_of(server['inbound'])}",
        "--upstream", f"{SERVICE}={local}",
    ])
    wait_listening(local)
    return Running("shoal-mesh", local, [client_pid, server_pid],
                   python_pids=[client_pid, server_pid])


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


SETUPS: dict[str, Setup] = {s.name: s for s in (
    Setup("direct", "no proxy (client → backend)", _direct, 0),
    Setup("nginx", "nginx 1 worker, upstream keep-alive", _nginx_proxy, 1),
    Setup("haproxy", "HAProxy nbthread 1, http-reuse always", _haproxy, 1),
    Setup("shoal-inbound", "shoal inbound (client → inbound → backend)", _shoal_inbound, 1),
    Setup("shoal-mesh", "shoal outbound → shoal inbound (meshed hop)", _shoal_mesh, 2),
)}
