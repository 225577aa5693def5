"""HTTP/2 through the proxy: httpx (h2c prior knowledge) and a hand-driven h2 client
against a small h2 server, on loopback sockets."""

from __future__ import annotations

import asyncio
import socket
import struct
import tracemalloc
from collections.abc import Iterator

import h2.events
import httpx
import pytest
from h2.connection import ConnectionState
from h2.errors import ErrorCodes
from hpack import Encoder

from shoal.proxy.config import ProxyConfig
from shoal.proxy.tap import TapFilter
from tests.h2support import H2Server, Proxy, RawClient

pytestmark = pytest.mark.timeout(60)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


@pytest.fixture
def server() -> Iterator[H2Server]:
    with H2Server() as s:
        yield s


@pytest.fixture
def inbound(server: H2Server) -> Iterator[Proxy]:
    with Proxy(ProxyConfig(app=server.addr, inbound=("127.0.0.1", 0))) as p:
        yield p


@pytest.fixture
def outbound(server: H2Server) -> Iterator[Proxy]:
    with Proxy(ProxyConfig(destinations=(("web.ns:80", server.addr),)),
               direction="outbound") as p:
        yield p


def client(**kw: object) -> httpx.Client:
    return httpx.Client(http1=False, http2=True, timeout=20, **kw)  # type: ignore[arg-type]


def test_many_concurrent_streams_share_one_connection_each_way(
        inbound: Proxy, server: H2Server) -> None:
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(http1=False, http2=True, timeout=20) as c:
            return await asyncio.gather(*(c.get(f"{inbound.url}/") for _ in range(64)))

    responses = asyncio.run(burst())
    assert {(r.status_code, r.http_version, r.text) for r in responses} == {
        (200, "HTTP/2", "ok")}
    assert {r.headers["x-conn"] for r in responses} == {"1"}
    assert server.connections == 1
    assert inbound.value("tcp_open_total", peer="src") == 1
    assert inbound.value("tcp_open_total", peer="dst") == 1
    assert inbound.value("request_total", direction="inbound") == 64
    assert inbound.value("response_total", status_code="200", classification="success") == 64


def test_outbound_routes_by_authority(outbound: Proxy, server: H2Server) -> None:
    with client() as c:
        r = c.get(f"{outbound.url}/", headers={"host": "web.ns:80"})
        missing = c.get(f"{outbound.url}/", headers={"host": "nowhere.ns:80"})
    assert (r.status_code, r.headers["x-authority"]) == (200, "web.ns:80")
    assert (missing.status_code, missing.text) == (502, "no route to nowhere.ns:80")
    assert outbound.value("response_total", authority="web.ns:80", status_code="200",
                          dst_service="web", dst_namespace="ns") == 1
    assert outbound.value("response_total", authority="nowhere.ns:80", status_code="502",
                          classification="failure", error="no_route") == 1


def test_large_bodies_stream_in_bounded_memory(inbound: Proxy) -> None:
    size = 50 << 20
    chunk = b"u" * (64 << 10)

    def upload() -> Iterator[bytes]:
        for _ in range(size // len(chunk)):
            yield chunk

    tracemalloc.start()
    try:
        with client() as c:
            r = c.post(f"{inbound.url}/sink", content=upload())
            assert (r.status_code, r.text) == (200, str(size))
            got = 0
            with c.stream("GET", f"{inbound.url}/source/{size}") as r:
                for part in r.iter_bytes():
                    got += len(part)
            assert got == size
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # client, proxy and server share this process: all of them together stay far
    # below one body's size
    assert peak < 24 << 20
    assert inbound.value("tcp_read_bytes_total", peer="src") > size
    assert inbound.value("tcp_write_bytes_total", peer="src") > size


def test_echo_streams_while_the_request_is_still_open(inbound: Proxy) -> None:
    raw = RawClient(inbound.addr)
    sid = raw.request("/echo", end=False, method="POST")
    got = b""
    for i in range(5):
        raw.conn.send_data(sid, f"part{i};".encode())
        raw.flush()
        # each part comes back before the next is sent: nothing waits for the whole body
        for ev in raw.until(lambda e: isinstance(e, h2.events.DataReceived)):
            if isinstance(ev, h2.events.DataReceived):
                got += ev.data
    raw.conn.end_stream(sid)
    raw.flush()
    events = raw.until(lambda e: isinstance(e, h2.events.StreamEnded))
    trailers = [e for e in events if isinstance(e, h2.events.TrailersReceived)]
    raw.close()
    assert got == b"".join(f"part{i};".encode() for i in range(5))
    assert dict(trailers[0].headers)["x-echo-bytes"] == str(len(got))


def test_response_trailers_forwarded(inbound: Proxy) -> None:
    raw = RawClient(inbound.addr)
    raw.request("/trailers")
    events = raw.until(lambda e: isinstance(e, h2.events.StreamEnded))
    raw.close()
    trailers = [e for e in events if isinstance(e, h2.events.TrailersReceived)]
    assert trailers and dict(trailers[0].headers) == {"x-trailer": "yes"}
    body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert body == b"body"


def test_upstream_reset_propagates_with_its_code(inbound: Proxy) -> None:
    raw = RawClient(inbound.addr)
    sid = raw.request(f"/reset/{int(ErrorCodes.ENHANCE_YOUR_CALM)}")
    events = raw.until(lambda e: isinstance(e, h2.events.StreamReset))
    raw.close()
    reset = events[-1]
    assert isinstance(reset, h2.events.StreamReset)
    assert (reset.stream_id, reset.error_code) == (sid, ErrorCodes.ENHANCE_YOUR_CALM)
    assert inbound.value("response_total", status_code="200", classification="failure",
                         error="stream_reset") == 1


def test_client_reset_propagates_upstream(inbound: Proxy, server: H2Server) -> None:
    raw = RawClient(inbound.addr)
    sid = raw.request("/hold")
    raw.until(lambda e: isinstance(e, h2.events.ResponseReceived))
    assert server.holding.wait(5)
    raw.conn.reset_stream(sid, ErrorCodes.CANCEL)
    raw.flush()
    assert server.reset_seen.wait(5)
    assert server.resets == [("/hold", ErrorCodes.CANCEL)]
    assert inbound.eventually("response_total", 1, error="stream_reset") == 1
    # the connection is still good for the next stream
    raw.request("/")
    events = raw.until(lambda e: isinstance(e, h2.events.StreamEnded))
    raw.close()
    assert any(isinstance(e, h2.events.ResponseReceived) for e in events)


def test_upstream_goaway_moves_new_streams_to_a_new_connection(
        inbound: Proxy, server: H2Server) -> None:
    with client() as c:
        assert c.get(f"{inbound.url}/goaway").text == "bye"
        r = c.get(f"{inbound.url}/")
    assert (r.status_code, r.headers["x-conn"]) == (200, "2")
    assert server.connections == 2
    assert inbound.value("tcp_open_total", peer="src") == 1
    assert inbound.value("tcp_open_total", peer="dst") == 2
    assert inbound.eventually("tcp_close_total", 1, peer="dst") == 1
    assert inbound.value("response_total", classification="success") == 2


def _goaway(sock: socket.socket) -> tuple[int, bytes]:
    """Read frames until GOAWAY; (error code, everything read). Then expect EOF."""
    buf = b""
    while True:
        data = sock.recv(65536)
        if not data:
            raise AssertionError(f"closed without GOAWAY after {buf!r}")
        buf += data
        pos = 0
        while len(buf) - pos >= 9:
            length = int.from_bytes(buf[pos:pos + 3], "big")
            kind = buf[pos + 3]
            if len(buf) - pos < 9 + length:
                break
            if kind == 0x7:
                code = struct.unpack(">I", buf[pos + 13:pos + 17])[0]
                return code, buf
            pos += 9 + length


def _headers_frame(stream_id: int) -> bytes:
    block = Encoder().encode([(":method", "GET"), (":scheme", "http"),
                              (":authority", "a.test"), (":path", "/")])
    return (len(block).to_bytes(3, "big") + b"\x01\x05"
            + stream_id.to_bytes(4, "big") + block)


@pytest.mark.parametrize(("garbage", "code"), [
    (EMPTY_SETTINGS + b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00",
     ErrorCodes.PROTOCOL_ERROR),
    (b"this is not a frame at all, it is garbage" * 4, ErrorCodes.FRAME_SIZE_ERROR),
    (EMPTY_SETTINGS + b"\x00\x00\x05\x00\x00\x00\x00\x00\x00hello", ErrorCodes.PROTOCOL_ERROR),
    (EMPTY_SETTINGS + _headers_frame(2), ErrorCodes.PROTOCOL_ERROR),
], ids=["zero-window-update", "garbage", "data-on-stream-0", "headers-on-even-stream"])
def test_protocol_violation_gets_goaway_others_unaffected(
        inbound: Proxy, garbage: bytes, code: ErrorCodes) -> None:
    with client() as bystander:
        assert bystander.get(f"{inbound.url}/").status_code == 200
        with socket.create_connection(inbound.addr, timeout=5) as s:
            s.sendall(PREFACE + garbage)
            got, _ = _goaway(s)
            assert got == code
            while s.recv(65536):  # then the proxy closes the connection
                pass
        assert bystander.get(f"{inbound.url}/").status_code == 200
    assert inbound.value("proxy_errors_total", direction="inbound",
                         error=f"http2_{code.name.lower()}") == 1
    assert inbound.eventually("tcp_open_connections", 0, peer="src") == 0
    assert inbound.value("tcp_open_total", peer="src") == 2


def test_drain_sends_goaway_and_closes_when_streams_finish(inbound: Proxy) -> None:
    raw = RawClient(inbound.addr)
    sid = raw.request("/hold")
    raw.until(lambda e: isinstance(e, h2.events.ResponseReceived))
    conns = inbound.call(lambda: list(inbound.runtime.connections))
    assert [inbound.call(c.busy) for c in conns] == [True]
    inbound.call(conns[0].close_idle)
    events = raw.until(lambda e: isinstance(e, h2.events.ConnectionTerminated))
    assert events[-1].last_stream_id == sid
    assert events[-1].error_code == ErrorCodes.NO_ERROR
    # h2 closes its side on GOAWAY; the stream below last_stream_id is still ours
    raw.conn.state_machine.state = ConnectionState.CLIENT_OPEN
    raw.conn.reset_stream(sid, ErrorCodes.CANCEL)
    raw.flush()
    assert list(raw.events()) == []   # closed once the last stream is over
    raw.close()
    assert inbound.eventually("tcp_open_connections", 0, peer="src") == 0
    assert inbound.call(lambda: len(inbound.runtime.connections)) == 0


def test_connect_refused_answers_502() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        with Proxy(ProxyConfig(app=s.getsockname()[:2], inbound=("127.0.0.1", 0))) as p:
            with client() as c:
                r = c.get(f"{p.url}/")
            assert r.status_code == 502
            assert r.text.startswith("connect refused")
            assert p.value("response_total", status_code="502", classification="failure",
                           error="connect_refused") == 1


def test_tap_sees_request_response_and_end(inbound: Proxy, server: H2Server) -> None:
    sub = inbound.call(inbound.runtime.tap.subscribe, TapFilter())
    with client() as c:
        c.get(f"{inbound.url}/trailers", headers={"authorization": "secret"})
    events = inbound.call(sub.drain)
    assert [e["type"] for e in events] == ["req", "rsp", "end"]
    req, rsp, end = events
    assert req["direction"] == "inbound" and req["method"] == "GET"
    assert req["path"] == "/trailers" and req["dst"] == f"{server.addr[0]}:{server.addr[1]}"
    assert req["src"].startswith("127.0.0.1:")
    assert ["authorization", "<redacted>"] in req["headers"]
    assert not any(n.startswith(":") for n, _ in req["headers"])
    assert rsp["status"] == 200 and rsp["latency_us"] >= 0
    assert end["response_bytes"] == 4 and end["classification"] == "success"
    assert ["x-trailer", "yes"] in end["headers"]
