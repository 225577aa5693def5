"""Test support for the HTTP/2 proxy: a proxy in a thread, a small h2 server, gRPC stubs.

Everything binds 127.0.0.1:0 and announces readiness through events, never sleeps.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import os
import socket
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self, cast

import uvloop
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import H2Error
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame
from prometheus_client.parser import text_string_to_metric_families

from shoal.proxy.config import ProxyConfig
from shoal.proxy.detect import Detect
from shoal.proxy.h2pool import h2_pool
from shoal.proxy.http2 import H2Downstream
from shoal.proxy.runtime import Runtime
from shoal.proxy.sides import InboundSide, OutboundSide, Side

FIXTURES = Path(__file__).parent / "grpc_fixtures"


# -- a loop in a thread -------------------------------------------------------

class LoopThread:
    """A uvloop event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 10.0) -> Any:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def go() -> None:
            try:
                fut.set_result(fn(*args))
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                fut.set_exception(e)

        self.loop.call_soon_threadsafe(go)
        return fut.result(timeout)

    def stop(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Proxy(LoopThread):
    """H2Downstream listening on 127.0.0.1:0, inbound or outbound, in its own loop.

    >>> with Proxy(ProxyConfig(app=("127.0.0.1", 50051))) as p:
    ...     p.addr, p.runtime
    """

    def __init__(self, config: ProxyConfig, direction: str = "inbound",
                 detect: bool = False, credentials: Any = None) -> None:
        super().__init__()
        self.config = config
        self.direction = direction
        self.detect = detect            # accept through protocol detection (and mTLS)
        self.credentials = credentials  # shoal.proxy.identity.Credentials
        self.runtime: Runtime
        self.addr: tuple[str, int]
        self.run(self._start())

    async def _start(self) -> None:
        rt = self.runtime = Runtime(self.config)
        if self.credentials is not None:
            rt.identity = types.SimpleNamespace(current=self.credentials)  # type: ignore[assignment]

        def side() -> Side:
            return (InboundSide(rt) if self.direction == "inbound"
                    else OutboundSide(rt, "127.0.0.1:0"))

        def factory() -> asyncio.Protocol:
            if self.detect:
                return Detect(rt, side)
            s = side()
            s.src_tcp.connection_opened()  # as detection does
            return H2Downstream(rt, s, next(rt.conn_ids))

        self.server = await asyncio.get_running_loop().create_server(
            factory, "127.0.0.1", 0)
        self.addr = self.server.sockets[0].getsockname()[:2]

    @property
    def target(self) -> str:
        return f"{self.addr[0]}:{self.addr[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.target}"

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        text = self.call(self.runtime.metrics.exposition).decode()
        return [(s.name, s.labels, s.value)
                for fam in text_string_to_metric_families(text) for s in fam.samples]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples named ``name`` whose labels include ``labels``."""
        return sum(v for n, lab, v in self.metrics()
                   if n == name and all(lab.get(k) == w for k, w in labels.items()))

    def eventually(self, name: str, expected: float, **labels: str) -> float:
        """Wait (bounded) until a counter reaches ``expected``; counters settle after I/O."""
        deadline = time.monotonic() + 5
        while True:
            got = self.value(name, **labels)
            if got == expected or time.monotonic() > deadline:
                return got
            time.sleep(0.01)

    @contextlib.contextmanager
    def sampling(self, every: float = 0.002) -> Iterator[MemorySampler]:
        """Sample, in the proxy's loop, the bytes it holds and the process RSS."""
        sampler = MemorySampler(self.runtime, every)
        self.call(sampler.start)
        try:
            yield sampler
        finally:
            self.call(sampler.stop)

    def close(self) -> None:
        async def shut() -> None:
            self.server.close()
            for c in list(self.runtime.connections):
                c.abort()
            h2_pool(self.runtime).close_all()

        self.run(shut())
        self.stop()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemorySampler:
    """Highest bytes held by the proxy's h2 connections, and RSS growth, while running."""

    def __init__(self, runtime: Runtime, every: float) -> None:
        self.runtime = runtime
        self.every = every
        self.held_max = 0
        self.rss_start = self.rss_max = _rss()
        self.timer: asyncio.TimerHandle | None = None

    @property
    def rss_growth(self) -> int:
        return self.rss_max - self.rss_start

    def held(self) -> int:
        total = 0
        peers: list[Any] = list(self.runtime.connections)
        for conns in h2_pool(self.runtime).conns.values():
            peers.extend(conns)
        for peer in peers:
            total += (len(peer.conn._data_to_send) + len(peer.conn.incoming_buffer._data)
                      + (peer.transport.get_write_buffer_size() if peer.transport else 0))
            for ex in peer.streams.values():
                if peer in self.runtime.connections:
                    total += ex.to_up.size + ex.to_down.size
        return total

    def start(self) -> None:
        self.held_max = max(self.held_max, self.held())
        self.rss_max = max(self.rss_max, _rss())
        self.timer = asyncio.get_running_loop().call_later(self.every, self.start)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- a small h2 server ----------------------------------------------------------

class _Stream:
    def __init__(self, path: str, headers: dict[str, str]) -> None:
        self.path = path
        self.headers = headers
        self.out: list[bytes] = []     # bytes to send, in order
        self.owed = 0                  # received bytes to acknowledge once echoed
        self.remaining = 0             # /source: bytes still to generate
        self.received = 0
        self.ended = False             # request ended
        self.finish: list[tuple[str, str]] | None = None  # trailers, once out is drained
        self.done = False
        self.trailers: dict[str, str] = {}


class H2cServer(LoopThread):
    """An asyncio server on loopback in its own loop thread, one ``protocol`` per
    connection (given the server); a context manager that closes it."""

    protocol: Callable[[Any], asyncio.Protocol]

    def _serve(self) -> tuple[str, int]:
        async def start() -> tuple[str, int]:
            self.server = await asyncio.get_running_loop().create_server(
                lambda: self.protocol(self), "127.0.0.1", 0)
            return cast(tuple[str, int], self.server.sockets[0].getsockname()[:2])
        return self.run(start())

    def close(self) -> None:
        async def shut() -> None:
            self.server.close()

        self.run(shut())
        self.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class H2Server(H2cServer):
    """A minimal h2c server with a handful of behaviours chosen by path.

    ``/``             200, body ``ok``, headers echo the authority and connection number
    ``/echo``         200, streams the request body back, trailers ``x-echo-bytes``
    ``/sink``         reads the body, answers its length (and its trailers in ``x-trailers``)
    ``/source/N``     200 and N generated bytes
    ``/trailers``     200, body, trailers ``x-trailer: yes``
    ``/reset/N``      200, some data, then RST_STREAM with code N
    ``/hold``         200 and nothing more until the client resets (recorded)
    ``/goaway``       200 ``bye``, then GOAWAY and close
    ``/die``          200, some data, then the connection drops (no GOAWAY)
    ``/drain``        200, GOAWAY naming this stream as the last, then the body
    ``/refuse-first`` on the first connection: GOAWAY(last_stream_id=0), i.e. this
                      stream was never processed; on later ones 200 ``second try``
    """

    def __init__(self) -> None:
        super().__init__()
        self.connections = 0
        self.resets: list[tuple[str, int]] = []
        self.reset_seen = threading.Event()
        self.holding = threading.Event()
        self.protocol = _H2ServerProtocol
        self.addr = self._serve()


class H2ServerProtocol(asyncio.Protocol):
    """The server side of one h2c connection: counts itself on ``app.connections``,
    sends the preface, and hands each batch of events to ``events``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        app.connections += 1
        self.number = app.connections
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except H2Error:
            self.flush()
            self.transport.close()
            return
        self.events(events)

    def events(self, events: list[Any]) -> None:
        raise NotImplementedError


class _H2ServerProtocol(H2ServerProtocol):
    def __init__(self, app: H2Server) -> None:
        super().__init__(app)
        self.streams: dict[int, _Stream] = {}

    def events(self, events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, RequestReceived):
                self.request(ev)
            elif isinstance(ev, DataReceived):
                st = self.streams.get(ev.stream_id)
                if st is None:
                    continue
                st.received += len(ev.data)
                if st.path == "/echo":
                    st.out.append(ev.data)
                    st.owed += ev.flow_controlled_length
                else:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, TrailersReceived):
                st = self.streams.get(ev.stream_id)
                if st is not None:
                    st.trailers = dict(ev.headers)
            elif isinstance(ev, StreamEnded):
                st = self.streams.get(ev.stream_id)
                if st is None:
                    continue
                st.ended = True
                if st.path == "/echo":
                    st.finish = [("x-echo-bytes", str(st.received))]
                elif st.path == "/sink":
                    got = ",".join(f"{k}={v}" for k, v in sorted(st.trailers.items()))
                    self.conn.send_headers(ev.stream_id, [(":status", "200"),
                                                          ("x-trailers", got)])
                    st.out.append(str(st.received).encode())
                    st.finish = []
            elif isinstance(ev, StreamReset):
                st = self.streams.pop(ev.stream_id, None)
                self.app.resets.append((st.path if st else "", int(ev.error_code)))
                self.app.reset_seen.set()
            elif isinstance(ev, ConnectionTerminated):
                self.transport.close()
            elif isinstance(ev, WindowUpdated):
                pass
        self.pump()
        self.flush()

    def request(self, ev: RequestReceived) -> None:
        headers = dict(ev.headers)
        path = headers[":path"]
        sid = ev.stream_id
        st = self.streams[sid] = _Stream(path, headers)
        conn = self.conn
        if path == "/":
            conn.send_headers(sid, [(":status", "200"),
                                    ("x-authority", headers.get(":authority", "")),
                                    ("x-conn", str(self.number))])
            st.out.append(b"ok")
            st.finish = []
        elif path == "/echo":
            conn.send_headers(sid, [(":status", "200")])
        elif path.startswith("/source/"):
            conn.send_headers(sid, [(":status", "200")])
            st.remaining = int(path.rsplit("/", 1)[1])
            st.finish = []
        elif path == "/trailers":
            conn.send_headers(sid, [(":status", "200"), ("content-type", "text/plain")])
            st.out.append(b"body")
            st.finish = [("x-trailer", "yes")]
        elif path.startswith("/reset/"):
            conn.send_headers(sid, [(":status", "200")])
            conn.send_data(sid, b"partial")
            conn.reset_stream(sid, int(path.rsplit("/", 1)[1]))
            st.done = True
        elif path == "/hold":
            conn.send_headers(sid, [(":status", "200")])
            self.app.holding.set()
        elif path == "/die":
            conn.send_headers(sid, [(":status", "200")])
            conn.send_data(sid, b"partial")
            self.flush()
            self.transport.abort()
        elif path == "/drain":
            conn.send_headers(sid, [(":status", "200")])
            self.flush()
            self.transport.write(_goaway_frame(sid))  # by hand: h2 would stop the stream
            st.out.append(b"still here")
            st.finish = []
        elif path == "/refuse-first":
            if self.number == 1:
                self.flush()
                self.transport.write(_goaway_frame(0))
                st.done = True
            else:
                conn.send_headers(sid, [(":status", "200")])
                st.out.append(b"second try")
                st.finish = []
        elif path == "/goaway":
            conn.send_headers(sid, [(":status", "200")])
            conn.send_data(sid, b"bye", end_stream=True)
            st.done = True
            conn.close_connection()
            self.flush()
            self.transport.close()

    def pump(self) -> None:
        """Send what flow control allows, acknowledging echoed bytes as they go out."""
        conn = self.conn
        for sid, st in list(self.streams.items()):
            if st.done:
                self.streams.pop(sid, None)
                continue
            try:
                while st.out or st.remaining:
                    window = min(conn.local_flow_control_window(sid),
                                 conn.max_outbound_frame_size)
                    if window <= 0:
                        break
                    if st.out:
                        chunk = st.out[0]
                        if len(chunk) > window:
                            st.out[0] = chunk[window:]
                            chunk = chunk[:window]
                        else:
                            st.out.pop(0)
                        conn.send_data(sid, chunk)
                        if st.owed:
                            n = min(st.owed, len(chunk))
                            st.owed -= n
                            conn.acknowledge_received_data(n, sid)
                    else:
                        n = min(window, st.remaining)
                        st.remaining -= n
                        conn.send_data(sid, b"x" * n)
                if not st.out and not st.remaining and st.finish is not None:
                    if st.finish:
                        conn.send_headers(sid, st.finish, end_stream=True)
                    else:
                        conn.end_stream(sid)
                    st.done = True
                    self.streams.pop(sid, None)
            except H2Error:
                self.streams.pop(sid, None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.streams.clear()


def _goaway_frame(last_stream_id: int) -> bytes:
    frame = GoAwayFrame(0)
    frame.last_stream_id = last_stream_id
    frame.error_code = 0
    return frame.serialize()


# -- a raw h2 client over a blocking socket ------------------------------------------

class RawClient:
    """An h2 client driven by hand, for resets and protocol violations."""

    def __init__(self, addr: tuple[str, int], authority: str = "svc.test:80",
                 window: int | None = None) -> None:
        self.sock = socket.create_connection(addr, timeout=5)
        self.authority = authority
        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        if window is not None:
            self.conn.local_settings = Settings(
                client=True, initial_values={SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path: str, end: bool = True, method: str = "GET") -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", method), (":scheme", "http"),
                                     (":authority", self.authority), (":path", path)],
                               end_stream=end)
        self.flush()
        return sid

    def events(self) -> Iterator[Any]:
        """Events as they arrive, until the connection closes."""
        while True:
            data = self.sock.recv(65536)
            if not data:
                return
            events = self.conn.receive_data(data)
            self.flush()
            yield from events

    def until(self, pred: Callable[[Any], bool]) -> list[Any]:
        seen = []
        for ev in self.events():
            seen.append(ev)
            if isinstance(ev, DataReceived):
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                self.flush()
            if pred(ev):
                return seen
        return seen

    def close(self) -> None:
        self.sock.close()


# -- mTLS identities from the control plane's own authority -------------------------------

def credentials_for(home: Path, service_account: str, namespace: str) -> Any:
    """Credentials for ``<sa>.<ns>`` signed by a test control plane's CA in ``home``."""
    from shoal.control.config import ControlConfig, identity_name
    from shoal.control.identity import Identity as Authority
    from shoal.proxy.identity import Credentials, contexts, make_csr

    ca = Authority(ControlConfig(home=home))
    token = ca.issue_token(namespace, service_account, f"{service_account}-0")
    key, csr = make_csr(identity_name(service_account, namespace))
    answer = ca.certify(csr, token)
    server, client = contexts(key, answer["certificate"], answer["chain"],
                              answer["trust_anchors"])
    return Credentials(answer["identity"], server, client, answer["expiry"],
                       answer["renew_after"])


# -- gRPC stubs generated at test time ------------------------------------------------

_GENERATED: dict[str, Any] = {}


def echo_modules() -> tuple[Any, Any]:
    """(echo_pb2, echo_pb2_grpc), generated from grpc_fixtures/echo.proto once per run."""
    if not _GENERATED:
        from grpc_tools import protoc

        out = tempfile.mkdtemp(prefix="shoal-grpc-")
        rc = protoc.main(["protoc", f"-I{FIXTURES}", f"--python_out={out}",
                          f"--grpc_python_out={out}", str(FIXTURES / "echo.proto")])
        assert rc == 0, "protoc failed"
        sys.path.insert(0, out)
        _GENERATED["pb2"] = importlib.import_module("echo_pb2")
        _GENERATED["grpc"] = importlib.import_module("echo_pb2_grpc")
    return _GENERATED["pb2"], _GENERATED["grpc"]
