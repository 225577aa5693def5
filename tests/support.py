"""Shared test support: real processes and servers on loopback, started and awaited.

Everything binds 127.0.0.1:0; readiness is awaited on a printed line or a probe with
a deadline, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

BIN = Path(sys.executable).parent
SHOAL = str(BIN / "shoal")


def delete_netns(name: str) -> None:
    """Kill every process in network namespace ``name``, then delete it (its veth
    ends go with it); quiet when it is already gone."""
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                          text=True).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition",
             interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it is truthy (returned) or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class ProxyProcess:
    """A real `shoal proxy` process; ``addr`` holds its listeners after start."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        inbound = ["--inbound", "127.0.0.1:0"] if "--app" in args else []
        self.args = [*inbound, "--outbound", "127.0.0.1:0",
                     "--admin", "127.0.0.1:0", "--tap", "127.0.0.1:0",
                     "--namespace", "test", "--deployment", "app", "--pod", "app-0", *args]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.addr: dict[str, object] = {}
        self.stderr_path: Path | None = None

    def start(self, timeout: float = 15.0) -> ProxyProcess:
        import tempfile

        fd, path = tempfile.mkstemp(prefix="shoal-proxy-", suffix=".log")
        self.stderr_path = Path(path)
        self.proc = subprocess.Popen([SHOAL, "proxy", *self.args], stdout=subprocess.PIPE,
                                     stderr=fd, text=True, env=self.env)
        os.close(fd)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise AssertionError(f"proxy did not start: {self.log()}")
        self.addr = json.loads(line)
        assert self.addr["ready"] is True
        return self

    def url(self, listener: str, path: str = "/") -> str:
        return f"http://{self.addr[listener]}{path}"

    def hostport(self, listener: str) -> tuple[str, int]:
        host, _, port = str(self.addr[listener]).rpartition(":")
        return host, int(port)

    def log(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path else ""

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return parse_metrics(httpx.get(self.url("admin", "/metrics"), timeout=5).text)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self.stderr_path:
            self.stderr_path.unlink(missing_ok=True)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def metric(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lbl), v in samples.items() if n == name and want <= lbl)


class ThreadLoop:
    """An asyncio loop in a background thread, for servers used by blocking tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30.0):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@contextmanager
def uvicorn_server(app, **kw) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Serve an ASGI app with uvicorn on 127.0.0.1:<free port>; yields "host:port"."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    config = uvicorn.Config(app, log_level="error", lifespan="off", **kw)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="uvicorn start")
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def tcp_server(handler: Callable[[socket.socket], None]) -> Iterator[tuple[str, int]]:
    """A threaded raw TCP server; ``handler`` gets each accepted socket."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=_guard, args=(handler, conn), daemon=True).start()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield srv.getsockname()
    finally:
        stop.set()
        srv.close()


def _guard(handler: Callable[[socket.socket], None], conn: socket.socket) -> None:
    try:
        handler(conn)
    except OSError:
        pass
    finally:
        conn.close()


def echo_handler(conn: socket.socket) -> None:
    """Echo until the peer half-closes, then half-close back."""
    while True:
        data = conn.recv(65536)
        if not data:
            conn.shutdown(socket.SHUT_WR)
            return
        conn.sendall(data)


def raw_request(addr: tuple[str, int], data: bytes, timeout: float = 5.0,
                shut: bool = False) -> bytes:
    """Send raw bytes, read until the server closes (or timeout)."""
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


def tap_request(hub: Any, *, direction: str, method: str, scheme: str, authority: str,
                path: str, dst_labels: dict[str, str] | None = None, **fields: Any) -> Any:
    """What the data path does for a request while someone taps: ``admit``, then
    ``publish`` when a tapper takes it; None when nobody does."""
    subs = hub.admit(direction, method, scheme, authority, path, dst_labels)
    if subs is None:
        return None
    return hub.publish(subs, direction=direction, method=method, scheme=scheme,
                       authority=authority, path=path, dst_labels=dst_labels, **fields)
