"""Service-profile route timeouts and retries for HTTP/2 and gRPC on the client proxy:
httpx (h2c prior knowledge), a hand-driven h2 client and grpcio, against small h2
and gRPC servers, on loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any, cast

import grpc
import httpx
import pytest
from h2.errors import ErrorCodes
from h2.events import (
    DataReceived,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.exceptions import H2Error

from shoal.profiles import parse
from shoal.proxy.config import ProxyConfig
from shoal.proxy.destination import Target
from shoal.proxy.h2stream import Exchange
from shoal.proxy.routes import RouteTable
from tests.h2support import H2cServer, H2ServerProtocol, Proxy, RawClient, echo_modules

pytestmark = pytest.mark.timeout(60)

AUTHORITY = "web.ns:80"
HOST = {"host": AUTHORITY}


def profile(name: str, routes: list[dict[str, Any]],
            budget: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"routes": routes}
    if budget is not None:
        spec["retryBudget"] = budget
    return {"apiVersion": "linkerd.io/v1alpha2", "kind": "ServiceProfile",
            "metadata": {"name": f"{name}.svc.cluster.local", "namespace": "ns"},
            "spec": spec}


ROUTES = [
    {"name": "slow", "condition": {"pathRegex": "/slow"}, "timeout": "100ms"},
    {"name": "hold", "condition": {"pathRegex": "/hold"}, "timeout": "300ms"},
    {"name": "flaky", "condition": {"pathRegex": "/flaky/.*"}, "isRetryable": True},
    {"name": "fail", "condition": {"pathRegex": "/fail"}, "isRetryable": True},
    {"name": "reset", "condition": {"pathRegex": "/reset-once/.*"}, "isRetryable": True},
    {"name": "early", "condition": {"pathRegex": "/early-fail"}, "isRetryable": True},
    {"name": "ok", "condition": {"pathRegex": "/ok"}},
]
PROFILE = profile("web.ns", ROUTES)
# no retries beyond 20 % of the requests: the budget runs out
STINGY = profile("web.ns", ROUTES, {"retryRatio": 0.2, "minRetriesPerSecond": 0,
                                    "ttl": "10s"})


# -- an h2 upstream with a behaviour per path ----------------------------------------

class Upstream(H2cServer):
    """A small h2c server. Requests are answered once they end:

    ``/ok``          200 ``ok``
    ``/big/N``       200 and N bytes
    ``/delay/MS``    200 ``late`` after MS milliseconds
    ``/slow``        nothing, ever (until the client resets the stream)
    ``/hold``        200 and ``partial``, then nothing more
    ``/fail``        500 ``fail``
    ``/flaky/KEY``   500 the first time KEY is seen by any replica sharing ``failed``,
                     then 200 ``ok``
    ``/reset-once/KEY``  RST_STREAM (INTERNAL_ERROR) the first time, then 200 ``ok``
    ``/early-fail``  500 at once, while the request is still streaming

    ``hits`` records (replica name, path, body length, body digest, trailers) per
    request, ``resets`` (path, error code) per stream the client reset.
    """

    def __init__(self, name: str, failed: set[str] | None = None) -> None:
        super().__init__()
        self.name = name
        self.failed = failed if failed is not None else set()
        self.hits: list[tuple[str, str, int, str, dict[str, str]]] = []
        self.resets: list[tuple[str, int]] = []
        self.reset_seen = threading.Event()
        self.connections = 0
        self.protocol = _UpstreamProtocol
        self.addr = self._serve()


class _UpstreamProtocol(H2ServerProtocol):
    def __init__(self, app: Upstream) -> None:
        super().__init__(app)
        self.paths: dict[int, str] = {}
        self.bodies: dict[int, tuple[int, Any]] = {}
        self.trailers: dict[int, dict[str, str]] = {}

    def events(self, events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, RequestReceived):
                self.paths[ev.stream_id] = dict(ev.headers)[":path"]
                self.bodies[ev.stream_id] = (0, hashlib.sha256())
                if self.paths[ev.stream_id] == "/early-fail":
                    self.send(ev.stream_id, 500, b"too early")
            elif isinstance(ev, DataReceived):
                size, digest = self.bodies[ev.stream_id]
                digest.update(ev.data)
                self.bodies[ev.stream_id] = (size + len(ev.data), digest)
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, TrailersReceived):
                self.trailers[ev.stream_id] = dict(ev.headers)
            elif isinstance(ev, StreamEnded):
                self.answer(ev.stream_id)
            elif isinstance(ev, StreamReset):
                self.app.resets.append((self.paths.get(ev.stream_id, ""), int(ev.error_code)))
                self.app.reset_seen.set()
        self.flush()

    def answer(self, sid: int) -> None:
        path = self.paths[sid]
        size, digest = self.bodies[sid]
        self.app.hits.append((self.app.name, path, size, digest.hexdigest(),
                              self.trailers.get(sid, {})))
        if path == "/ok":
            self.send(sid, 200, b"ok")
        elif path.startswith("/big/"):
            self.send(sid, 200, b"b" * int(path.rsplit("/", 1)[1]))
        elif path.startswith("/delay/"):
            asyncio.get_running_loop().call_later(
                int(path.rsplit("/", 1)[1]) / 1000, self.send, sid, 200, b"late")
        elif path == "/hold":
            self.conn.send_headers(sid, [(":status", "200")])
            self.conn.send_data(sid, b"partial")
        elif path == "/fail":
            self.send(sid, 500, b"fail")
        elif path.startswith("/flaky/"):
            if path in self.app.failed:
                self.send(sid, 200, b"ok")
            else:
                self.app.failed.add(path)
                self.send(sid, 500, b"fail")
        elif path.startswith("/reset-once/"):
            if path in self.app.failed:
                self.send(sid, 200, b"ok")
            else:
                self.app.failed.add(path)
                self.conn.reset_stream(sid, ErrorCodes.INTERNAL_ERROR)
        # /slow: never answered

    def send(self, sid: int, status: int, body: bytes) -> None:
        """Headers, body in frames the proxy's windows take (bodies here stay small)."""
        try:
            self.conn.send_headers(sid, [(":status", str(status))])
            for i in range(0, len(body), 16384):
                self.conn.send_data(sid, body[i:i + 16384])
            self.conn.end_stream(sid)
        except H2Error:
            return  # reset meanwhile
        self.flush()


# -- a client proxy with a profile for the upstream --------------------------------------

@contextlib.contextmanager
def routed(*upstreams: tuple[str, int], doc: dict[str, Any] = PROFILE,
           authority: str = AUTHORITY) -> Iterator[Proxy]:
    """An outbound proxy whose ``authority`` has ``upstreams`` as endpoints and the
    profile ``doc`` (as discovery would give it)."""
    with Proxy(ProxyConfig(), direction="outbound") as p:
        rt = p.runtime
        host = authority.rsplit(":", 1)[0]
        labels = {"dst_service": host.split(".")[0], "dst_namespace": host.split(".")[1]}

        def install() -> None:
            target = Target(authority, [rt.resolver.endpoint(authority, addr, labels)
                                        for addr in upstreams])
            target.routes = RouteTable(parse(doc), rt.metrics, "outbound")
            rt.resolver.update(authority, target)

        p.call(install)
        yield p


def client() -> httpx.Client:
    return httpx.Client(http1=False, http2=True, timeout=20)


def retried(p: Proxy, route: str) -> float:
    """route_retryable_total samples without a ``skipped`` label: retries sent."""
    return sum(v for n, lab, v in p.metrics() if n == "route_retryable_total"
               and lab.get("rt_route") == route and "skipped" not in lab)


def live_exchanges(p: Proxy) -> int:
    """Exchanges of this proxy still alive: a timer never cancelled would keep its own."""
    def count() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects()
                   if type(o) is Exchange and o.down.runtime is p.runtime)

    deadline = time.monotonic() + 5
    while True:
        n = cast(int, p.call(count))
        if n == 0 or time.monotonic() > deadline:
            return n
        time.sleep(0.02)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream("a") as u:
        yield u


# -- timeouts -------------------------------------------------------------------------------

def test_route_timeout_answers_504_and_cancels_the_upstream_stream(upstream: Upstream) -> None:
    with routed(upstream.addr) as p, client() as c:
        t0 = time.monotonic()
        r = c.get(f"{p.url}/slow", headers=HOST)
        elapsed = time.monotonic() - t0
        assert (r.status_code, r.http_version) == (504, "HTTP/2")
        assert "timed out" in r.text
        assert elapsed < 5  # the upstream never answers: this is the proxy's timeout
        assert upstream.reset_seen.wait(5)
        assert upstream.resets == [("/slow", ErrorCodes.CANCEL)]
        route = {"rt_route": "slow", "dst": "web.ns.svc.cluster.local"}
        assert p.value("route_request_total", **route) == 1
        assert p.value("route_response_total", status_code="504", classification="failure",
                       error="timeout", **route) == 1
        assert p.value("route_response_latency_ms_count", **route) == 1
        # the attempt was cancelled: sent, but no actual response
        assert p.value("route_actual_request_total", **route) == 1
        assert p.value("route_actual_response_total", **route) == 0
        assert p.value("response_total", direction="outbound", authority=AUTHORITY,
                       status_code="504", classification="failure", error="timeout") == 1
        assert p.value("proxy_errors_total", error="timeout") == 1
        assert live_exchanges(p) == 0


def test_a_response_that_began_in_time_outlives_the_route_timeout(upstream: Upstream) -> None:
    """The timeout waits for a response, as Linkerd's and the HTTP/1 path's do: once
    the headers came, a slow body (a long stream) is not cut."""
    with routed(upstream.addr) as p:
        raw = RawClient(p.addr, authority=AUTHORITY)
        try:
            sid = raw.request("/hold")
            seen = raw.until(lambda ev: isinstance(ev, DataReceived))
            time.sleep(1.0)  # the route's timeout is 300 ms
            assert p.value("proxy_errors_total", error="timeout") == 0
            assert not upstream.resets
        finally:
            raw.close()
        assert [type(ev) for ev in seen if getattr(ev, "stream_id", None) == sid][0] \
            is ResponseReceived


def test_a_timed_out_stream_leaves_the_others_on_its_connection_alone(
        upstream: Upstream) -> None:
    async def mixed(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(http1=False, http2=True, timeout=20) as c:
            return await asyncio.gather(
                c.get(f"{url}/slow", headers=HOST),
                c.get(f"{url}/delay/400", headers=HOST),   # outlives the timeout
                c.get(f"{url}/big/100000", headers=HOST),
                *(c.get(f"{url}/ok", headers=HOST) for _ in range(20)))

    with routed(upstream.addr) as p:
        slow, late, big, *oks = asyncio.run(mixed(p.url))
        assert slow.status_code == 504
        assert (late.status_code, late.text) == (200, "late")
        assert (big.status_code, len(big.content)) == (200, 100000)
        assert {(r.status_code, r.text) for r in oks} == {(200, "ok")}
        # one connection each way, still open for more
        assert p.value("tcp_open_total", peer="src") == 1
        assert upstream.connections == 1
        with client() as c:
            assert c.get(f"{p.url}/ok", headers=HOST).text == "ok"
        assert upstream.connections == 1
        assert p.value("response_total", error="timeout") == 1
        assert p.value("response_total", status_code="200", classification="success") == 23
        assert upstream.resets == [("/slow", ErrorCodes.CANCEL)]
        # every finished exchange let go of its timer (routes default to 10 s)
        assert live_exchanges(p) == 0


# -- retries ---------------------------------------------------------------------------------

def test_a_failed_attempt_is_retried_on_the_other_endpoint() -> None:
    failed: set[str] = set()
    body = bytes(range(256)) * 80  # 20 KiB, kept for the replay
    with Upstream("a", failed) as a, Upstream("b", failed) as b, \
            routed(a.addr, b.addr) as p, client() as c:
        r = c.post(f"{p.url}/flaky/1", content=body, headers=HOST)
        assert (r.status_code, r.text) == (200, "ok")
        hits = a.hits + b.hits
        assert len(hits) == 2
        assert {h[0] for h in hits} == {"a", "b"}  # not the endpoint that just failed
        digest = hashlib.sha256(body).hexdigest()
        assert [(h[1], h[2], h[3]) for h in hits] == [("/flaky/1", len(body), digest)] * 2
        route = {"rt_route": "flaky"}
        assert p.value("route_request_total", **route) == 1
        assert p.value("route_actual_request_total", **route) == 2
        assert p.value("route_actual_response_total", status_code="500",
                       classification="failure", **route) == 1
        assert p.value("route_actual_response_total", status_code="200",
                       classification="success", **route) == 1
        assert p.value("route_response_total", **route) == 1
        assert p.value("route_response_total", status_code="200", classification="success",
                       **route) == 1
        assert retried(p, "flaky") == 1
        # each endpoint counts the attempt it answered
        assert p.value("response_total", direction="outbound", status_code="500") == 1
        assert p.value("response_total", direction="outbound", status_code="200") == 1
        assert live_exchanges(p) == 0


def test_a_retry_replays_headers_body_and_trailers(upstream: Upstream) -> None:
    with routed(upstream.addr) as p:
        raw = RawClient(p.addr, authority=AUTHORITY)
        try:
            sid = raw.request("/flaky/t", end=False, method="POST")
            raw.conn.send_data(sid, b"first part, ")
            raw.conn.send_data(sid, b"second part")
            raw.conn.send_headers(sid, [("x-checksum", "abc")], end_stream=True)
            raw.flush()
            seen = raw.until(lambda ev: isinstance(ev, (StreamEnded, StreamReset)))
        finally:
            raw.close()
        status = [dict(ev.headers)[":status"] for ev in seen
                  if isinstance(ev, ResponseReceived)]
        assert status == ["200"]  # the client never saw the 500
        digest = hashlib.sha256(b"first part, second part").hexdigest()
        assert [h[1:] for h in upstream.hits] == [
            ("/flaky/t", 23, digest, {"x-checksum": "abc"})] * 2
        assert p.value("route_actual_request_total", rt_route="flaky") == 2


def test_a_body_over_64_kib_is_not_retried(upstream: Upstream) -> None:
    with routed(upstream.addr) as p, client() as c:
        r = c.post(f"{p.url}/fail", content=b"L" * (100 << 10), headers=HOST)
        assert r.status_code == 500
        assert [h[1:3] for h in upstream.hits] == [("/fail", 100 << 10)]
        route = {"rt_route": "fail"}
        assert p.value("route_actual_request_total", **route) == 1
        assert p.value("route_retryable_total", skipped="not_replayable", **route) == 1
        assert retried(p, "fail") == 0
        # the same route retries a small body, up to the attempts allowed
        r = c.post(f"{p.url}/fail", content=b"s" * (10 << 10), headers=HOST)
        assert r.status_code == 500
        assert [h[1:3] for h in upstream.hits[1:]] == [("/fail", 10 << 10)] * 3
        assert p.value("route_actual_request_total", **route) == 4
        assert retried(p, "fail") == 2
        assert p.value("route_retryable_total", skipped="max_attempts", **route) == 1
        assert p.value("route_response_total", status_code="500", classification="failure",
                       **route) == 2


def test_a_request_still_streaming_when_the_failure_comes_is_not_retried(
        upstream: Upstream) -> None:
    with routed(upstream.addr) as p:
        raw = RawClient(p.addr, authority=AUTHORITY)
        try:
            sid = raw.request("/early-fail", end=False, method="POST")
            seen = raw.until(lambda ev: isinstance(ev, (StreamEnded, StreamReset)))
            assert [dict(ev.headers)[":status"] for ev in seen
                    if isinstance(ev, ResponseReceived)] == ["500"]
            raw.conn.send_data(sid, b"too late", end_stream=True)
            raw.flush()
        finally:
            raw.close()
        route = {"rt_route": "early"}
        assert p.eventually("route_retryable_total", 1, skipped="not_replayable", **route) == 1
        assert p.value("route_actual_request_total", **route) == 1
        assert retried(p, "early") == 0


def test_retries_stop_when_the_budget_is_spent(upstream: Upstream) -> None:
    with routed(upstream.addr, doc=STINGY) as p, client() as c:
        for _ in range(10):
            assert c.get(f"{p.url}/fail", headers=HOST).status_code == 500
        route = {"rt_route": "fail"}
        assert p.value("route_request_total", **route) == 10
        # retries may add 20 % of the requests: 2 of 10; every other failure is skipped
        assert p.value("route_actual_request_total", **route) == 12
        assert retried(p, "fail") == 2
        assert p.value("route_retryable_total", skipped="no_budget", **route) == 10
        assert len(upstream.hits) == 12


def test_an_upstream_reset_before_the_response_is_retried(upstream: Upstream) -> None:
    with routed(upstream.addr) as p, client() as c:
        r = c.get(f"{p.url}/reset-once/1", headers=HOST)
        assert (r.status_code, r.text) == (200, "ok")
        assert [h[1] for h in upstream.hits] == ["/reset-once/1"] * 2
        route = {"rt_route": "reset"}
        assert p.value("route_actual_request_total", **route) == 2
        assert p.value("route_actual_response_total", status_code="502",
                       classification="failure", **route) == 1
        assert p.value("route_response_total", status_code="200", classification="success",
                       **route) == 1
        assert p.value("response_total", status_code="502", error="stream_reset") == 1
        assert retried(p, "reset") == 1


def test_refused_connections_are_retried_up_to_the_attempts_allowed() -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        with routed(closed.getsockname()[:2]) as p, client() as c:
            r = c.get(f"{p.url}/fail", headers=HOST)
            assert r.status_code == 502
            assert "connect refused" in r.text
            route = {"rt_route": "fail"}
            assert p.value("route_actual_request_total", **route) == 3
            assert retried(p, "fail") == 2
            assert p.value("route_retryable_total", skipped="max_attempts", **route) == 1
            assert p.value("route_response_total", status_code="502",
                           error="connect_refused", **route) == 1
            assert p.value("route_actual_response_total", status_code="502", **route) == 3
            assert live_exchanges(p) == 0


# -- gRPC ------------------------------------------------------------------------------------

pb2, pb2_grpc = echo_modules()
GRPC_AUTHORITY = "echo.ns:50051"


class Echo(pb2_grpc.EchoServicer):  # type: ignore[misc,name-defined]
    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.calls: list[str] = []
        self.failed: set[str] = set()

    def wait_for_cancel(self, context: grpc.ServicerContext) -> None:
        context.add_callback(self.cancelled.set)
        self.cancelled.wait(30)

    def Unary(self, request, context):  # noqa: N802 - gRPC method names
        self.calls.append(request.text)
        if request.text == "slow":
            self.wait_for_cancel(context)
        if request.text.startswith("flaky") and request.text not in self.failed:
            self.failed.add(request.text)
            context.abort(grpc.StatusCode.UNAVAILABLE, "try later")
        return pb2.Msg(text=request.text.upper(), blob=request.blob)

    def ServerStream(self, request, context):  # noqa: N802
        yield pb2.Msg(text="first")
        self.wait_for_cancel(context)


@pytest.fixture
def echo() -> Iterator[tuple[Echo, tuple[str, int]]]:
    service = Echo()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb2_grpc.add_EchoServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield service, ("127.0.0.1", port)
    service.cancelled.set()
    server.stop(None)


def grpc_profile(**unary: Any) -> dict[str, Any]:
    return profile("echo.ns", [
        {"name": "unary", "condition": {"method": "POST", "pathRegex": "/shoal.test.Echo/Unary"},
         **unary},
        {"name": "stream", "condition": {"pathRegex": "/shoal.test.Echo/ServerStream"},
         "timeout": "300ms"}])


def channel(p: Proxy) -> grpc.Channel:
    return grpc.insecure_channel(p.target, options=[("grpc.default_authority", GRPC_AUTHORITY)])


def test_grpc_route_timeout_is_deadline_exceeded(echo: tuple[Echo, tuple[str, int]]) -> None:
    service, addr = echo
    with routed(addr, doc=grpc_profile(timeout="200ms"), authority=GRPC_AUTHORITY) as p, \
            channel(p) as ch:
        stub = pb2_grpc.EchoStub(ch)
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            stub.Unary(pb2.Msg(text="slow"), timeout=20)
        assert time.monotonic() - t0 < 5  # the proxy's 200 ms, not the client's 20 s
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "timed out" in err.value.details()
        assert service.cancelled.wait(5)  # the app saw its call cancelled
        assert stub.Unary(pb2.Msg(text="fine"), timeout=20).text == "FINE"
        assert p.value("route_response_total", rt_route="unary", status_code="200",
                       grpc_status="4", classification="failure", error="timeout") == 1
        assert p.value("route_response_total", rt_route="unary", grpc_status="0",
                       classification="success") == 1
        assert p.value("response_total", authority=GRPC_AUTHORITY, grpc_status="4",
                       error="timeout") == 1


def test_grpc_stream_that_answered_in_time_is_not_cut(
        echo: tuple[Echo, tuple[str, int]]) -> None:
    service, addr = echo
    with routed(addr, doc=grpc_profile(), authority=GRPC_AUTHORITY) as p, channel(p) as ch:
        got = []
        with pytest.raises(grpc.RpcError) as err:  # the client's own deadline ends it
            for m in pb2_grpc.EchoStub(ch).ServerStream(pb2.Msg(text="s"), timeout=1.5):
                got.append(m.text)
        assert got == ["first"]
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert service.cancelled.wait(5)
        assert p.value("proxy_errors_total", error="timeout") == 0


def test_grpc_unavailable_is_retried(echo: tuple[Echo, tuple[str, int]]) -> None:
    service, addr = echo
    with routed(addr, doc=grpc_profile(isRetryable=True), authority=GRPC_AUTHORITY) as p, \
            channel(p) as ch:
        reply = pb2_grpc.EchoStub(ch).Unary(pb2.Msg(text="flaky-1", blob=b"z" * 5000),
                                            timeout=20)
        assert (reply.text, len(reply.blob)) == ("FLAKY-1", 5000)
        assert service.calls == ["flaky-1", "flaky-1"]
        assert p.value("route_actual_request_total", rt_route="unary") == 2
        assert p.value("route_actual_response_total", rt_route="unary",
                       classification="failure") == 1
        assert p.value("route_response_total", rt_route="unary", grpc_status="0",
                       classification="success") == 1
        assert retried(p, "unary") == 1
