"""HTTP/2 through the proxy: httpx (h2c prior knowledge) and a hand-driven h2 client
against a small h2 server, on loopback sockets."""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator

import h2.events
import httpx
import pytest
from h2.connection import ConnectionState
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hpack import Encoder

from shoal.proxy.config import ProxyConfig
from shoal.proxy.h2flow import STREAM_WINDOW
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


@pytest.mark.timeout(180)
def test_large_bodies_stream_in_bounded_memory(inbound: Proxy) -> None:
    size = 48 << 20
    chunk = b"u" * (64 << 10)

    def upload() -> Iterator[bytes]:
        for _ in range(size // len(chunk)):
            yield chunk

    with inbound.sampling() as memory, client() as c:
        r = c.post(f"{inbound.url}/sink", content=upload())
        assert (r.status_code, r.text) == (200, str(size))
        got = 0
        with c.stream("GET", f"{inbound.url}/source/{size}") as r:
            for part in r.iter_bytes():
                got += len(part)
        assert got == size
    # what the proxy holds (stream buffers, h2 and transport buffers) stays near the
    # windows it grants; the process (client and server included) grows far less
    # than one body
    assert 0 < memory.held_max <= 4 << 20
    assert memory.rss_growth < size // 2
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


def test_request_trailers_forwarded(inbound: Proxy) -> None:
    raw = RawClient(inbound.addr)
    sid = raw.request("/sink", end=False, method="POST")
    raw.conn.send_data(sid, b"12345")
    raw.conn.send_headers(sid, [("x-checksum", "abc")], end_stream=True)
    raw.flush()
    events = raw.until(lambda e: isinstance(e, h2.events.StreamEnded))
    raw.close()
    rsp = next(e for e in events if isinstance(e, h2.events.ResponseReceived))
    assert dict(rsp.headers)["x-trailers"] == "x-checksum=abc"


def test_slow_reader_stalls_the_sender_not_the_proxy(inbound: Proxy, server: H2Server) -> None:
    """A client that grants no window: the proxy holds at most the window it granted
    upstream, the server is held back by flow control, and all arrives once it reads."""
    size = 8 << 20
    raw = RawClient(inbound.addr, window=0)
    sid = raw.request(f"/source/{size}")
    raw.until(lambda e: isinstance(e, h2.events.ResponseReceived))

    def held() -> int:
        (ex,) = inbound.runtime.connections.copy().pop().streams.values()
        return ex.to_down.size

    deadline = time.monotonic() + 5
    while inbound.call(held) < STREAM_WINDOW and time.monotonic() < deadline:
        time.sleep(0.01)
    assert inbound.call(held) == STREAM_WINDOW  # one granted window, not the body
    raw.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    raw.conn.increment_flow_control_window(1 << 24)
    raw.flush()
    events = raw.until(lambda e: isinstance(e, h2.events.StreamEnded))
    raw.close()
    got = sum(len(e.data) for e in events if isinstance(e, h2.events.DataReceived)
              and e.stream_id == sid)
    assert got == size


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


def test_upstream_goaway_lets_streams_below_last_stream_id_finish(
        inbound: Proxy, server: H2Server) -> None:
    with client() as c:
        r = c.get(f"{inbound.url}/drain")
        assert (r.status_code, r.text) == (200, "still here")
        assert c.get(f"{inbound.url}/").headers["x-conn"] == "2"
    assert inbound.value("response_total", classification="success") == 2


def test_stream_refused_by_upstream_goaway_is_sent_again(
        inbound: Proxy, server: H2Server) -> None:
    with client() as c:
        r = c.get(f"{inbound.url}/refuse-first")
    assert (r.status_code, r.text) == (200, "second try")
    assert server.connections == 2
    assert inbound.value("request_total") == 1
    assert inbound.value("response_total", status_code="200", classification="success") == 1


def test_upstream_connection_lost_mid_stream(inbound: Proxy) -> None:
    raw = RawClient(inbound.addr)
    sid = raw.request("/die")
    events = raw.until(lambda e: isinstance(e, h2.events.StreamReset))
    raw.close()
    assert any(isinstance(e, h2.events.ResponseReceived) for e in events)
    assert (events[-1].stream_id, events[-1].error_code) == (sid, ErrorCodes.INTERNAL_ERROR)
    assert inbound.value("response_total", status_code="200", classification="failure",
                         error="upstream_reset") == 1
    assert inbound.eventually("tcp_close_total", 1, peer="dst") == 1


def test_upstream_that_never_speaks_h2_times_out_as_connect_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel accepts; nobody ever sends SETTINGS
        config = ProxyConfig(app=silent.getsockname()[:2], inbound=("127.0.0.1", 0),
                             connect_timeout=0.3)
        with Proxy(config) as p, client() as c:
            r = c.get(f"{p.url}/")
            assert (r.status_code, r.text) == (502, f"connect timeout to {p.config.app[0]}:"
                                                     f"{p.config.app[1]}")
            assert p.value("response_total", status_code="502", classification="failure",
                           error="connect_timeout") == 1


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


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_prior_knowledge_sees_response_and_trailers(inbound: Proxy) -> None:
    # one transfer per run: curl 7.88 fails a second transfer on a prior-knowledge
    # connection even against a plain h2 server
    out = subprocess.run(
        ["curl", "--silent", "--show-error", "--http2-prior-knowledge",
         "--dump-header", "-", f"{inbound.url}/trailers"],
        capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.startswith("HTTP/2 200")
    assert out.endswith("\n\nbodyx-trailer: yes\n")  # head, body, then the trailers
    assert inbound.value("response_total", status_code="200", classification="success") == 1
