"""HTTP/2 forwarding pieces without sockets: header rules, flow control, the accepted
connection driven with bytes through a fake transport."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    WindowUpdated,
)
from hyperframe.frame import GoAwayFrame
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.proxy.config import ProxyConfig
from shoal.proxy.h2flow import H2Peer, Hub, Outbox, errno_name, h2_connection
from shoal.proxy.h2stream import forwarded, grpc_status_of, text_headers
from shoal.proxy.http2 import H2Downstream
from shoal.proxy.metrics import TcpStats
from shoal.proxy.runtime import Runtime
from shoal.proxy.sides import OutboundSide

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written += data

    def take(self) -> bytes:
        out = bytes(self.written)
        self.written.clear()
        return out

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else None

    def get_write_buffer_size(self) -> int:
        return len(self.written)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


# -- header rules ---------------------------------------------------------------

def test_forwarded_strips_hop_by_hop_and_keeps_te_trailers() -> None:
    headers = [(b":status", b"200"), (b"connection", b"close"), (b"keep-alive", b"5"),
               (b"proxy-connection", b"x"), (b"transfer-encoding", b"chunked"),
               (b"upgrade", b"h2c"), (b"te", b"gzip"), (b"x-kept", b"1")]
    assert forwarded(headers) == [(b":status", b"200"), (b"x-kept", b"1")]
    assert forwarded([(b"te", b" Trailers ")]) == [(b"te", b" Trailers ")]


@settings(deadline=None, max_examples=50)
@given(st.lists(st.tuples(st.sampled_from([b"connection", b"upgrade", b"te", b"x-a", b"x-b"]),
                          st.binary(max_size=8))))
def test_forwarded_keeps_order_of_end_to_end_headers(headers: list[tuple[bytes, bytes]]) -> None:
    out = forwarded(headers)
    assert [h for h in headers if h[0] in (b"x-a", b"x-b")] == [h for h in out if h[0] != b"te"]
    assert all(v.strip().lower() == b"trailers" for n, v in out if n == b"te")


def test_grpc_status_and_tap_headers() -> None:
    assert grpc_status_of([(b"grpc-status", b"14"), (b"grpc-message", b"down")]) == 14
    assert grpc_status_of([(b"grpc-status", b"bogus")]) == 2
    assert grpc_status_of([(b"content-type", b"application/grpc")]) is None
    assert text_headers([(b":path", b"/"), (b"x-name", b"caf\xc3\xa9")]) == [("x-name", "café")]


def test_errno_name() -> None:
    assert errno_name(None) == ""
    assert errno_name(ConnectionResetError(errno.ECONNRESET, "reset")) == "ECONNRESET"
    assert errno_name(RuntimeError("odd")) == "EIO"


# -- flow control -------------------------------------------------------------------

class Peer(H2Peer):
    def __init__(self, conn: H2Connection) -> None:
        super().__init__(Hub(), TcpStats(()))
        self.conn = conn
        self.transport = FakeTransport()  # type: ignore[assignment]


class Owner:
    def __init__(self) -> None:
        self.ended: list[Outbox] = []

    def outbox_ended(self, box: Outbox) -> None:
        self.ended.append(box)


class Source:
    """Stands for the connection the bytes came from; records acknowledgements."""

    def __init__(self) -> None:
        self.acked = 0
        self.closed = False
        self.conn = self
        self.marked = 0

    def acknowledge_received_data(self, n: int, sid: int) -> None:
        self.acked += n

    def mark(self) -> None:
        self.marked += 1


def connected_pair() -> tuple[Peer, H2Connection]:
    """Our client-side peer with stream 1 open, and the remote server it talks to."""
    local = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    remote = H2Connection(H2Configuration(client_side=False, header_encoding=None))
    local.initiate_connection()
    remote.initiate_connection()
    remote.receive_data(local.data_to_send())
    local.receive_data(remote.data_to_send())
    remote.receive_data(local.data_to_send())
    local.send_headers(1, [(b":method", b"POST"), (b":scheme", b"http"),
                           (b":authority", b"a"), (b":path", b"/")])
    remote.receive_data(local.data_to_send())
    return Peer(local), remote


def deliver(peer: Peer, remote: H2Connection) -> list[object]:
    peer.write_out()
    return remote.receive_data(peer.transport.take())  # type: ignore[union-attr]


def test_outbox_sends_within_window_and_acknowledges_only_what_was_sent() -> None:
    peer, remote = connected_pair()
    owner, src = Owner(), Source()
    box = Outbox(owner, peer, 1, src, 7)  # type: ignore[arg-type]
    box.push(b"x" * 100_000)
    assert (box.sent, box.size, src.acked) == (65_535, 100_000 - 65_535, 65_535)
    assert box in peer.blocked
    got = deliver(peer, remote)
    assert sum(len(e.data) for e in got if isinstance(e, DataReceived)) == 65_535
    # the remote reads it: its WINDOW_UPDATE lets the rest go
    remote.acknowledge_received_data(65_535, 1)
    events = peer.conn.receive_data(remote.data_to_send())
    assert any(isinstance(e, WindowUpdated) for e in events)
    peer.retry_blocked()
    assert (box.sent, box.size, src.acked) == (100_000, 0, 100_000)
    box.end = True
    box.flush()
    assert owner.ended == [box]
    got = deliver(peer, remote)
    assert any(isinstance(e, StreamEnded) for e in got)


def test_outbox_holds_bytes_while_the_destination_transport_is_paused() -> None:
    peer, remote = connected_pair()
    owner, src = Owner(), Source()
    box = Outbox(owner, peer, 1, src, 7)  # type: ignore[arg-type]
    peer.pause_writing()
    box.push(b"abc")
    assert (box.sent, src.acked) == (0, 0)
    peer.resume_writing()
    assert (box.sent, src.acked) == (3, 3)


def test_outbox_discard_acknowledges_what_it_held() -> None:
    peer, remote = connected_pair()
    owner, src = Owner(), Source()
    box = Outbox(owner, None, 0, src, 7)  # type: ignore[arg-type]
    box.push(b"y" * 1000)
    assert src.acked == 0
    box.discard()
    assert src.acked == 1000
    box.push(b"late")
    assert src.acked == 1004


def test_paused_peer_stops_reading_only_when_its_write_buffer_floods() -> None:
    peer, _ = connected_pair()
    transport = peer.transport
    peer.pause_writing()
    peer.check_flood()
    assert transport.reading  # type: ignore[union-attr]
    transport.write(b"p" * (5 << 20))  # type: ignore[union-attr]
    peer.check_flood()
    assert not transport.reading  # type: ignore[union-attr]
    peer.resume_writing()
    assert transport.reading  # type: ignore[union-attr]


# -- the accepted connection, driven with bytes ---------------------------------------

def in_loop(test: Callable[[H2Downstream, FakeTransport, Runtime], None]) -> Callable[[], None]:
    """Run ``test`` inside a running loop with a fresh outbound H2Downstream."""

    def run() -> None:
        async def body() -> None:
            rt = Runtime(ProxyConfig())
            proto = H2Downstream(rt, OutboundSide(rt, "127.0.0.1:4140"), 1)
            t = FakeTransport()
            proto.connection_made(t)  # type: ignore[arg-type]
            test(proto, t, rt)

        asyncio.run(body())

    run.__name__ = test.__name__
    return run


def client_conn() -> H2Connection:
    c = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    return c


@in_loop
def test_no_route_answers_502_and_counts_it(
        proto: H2Downstream, t: FakeTransport, rt: Runtime) -> None:
    c = client_conn()
    c.send_headers(1, [(":method", "GET"), (":scheme", "http"),
                       (":authority", "nowhere.ns:80"), (":path", "/")], end_stream=True)
    proto.data_received(c.data_to_send())
    events = c.receive_data(t.take())
    rsp = next(e for e in events if isinstance(e, ResponseReceived))
    assert dict(rsp.headers)[":status"] == "502"
    body = b"".join(e.data for e in events if isinstance(e, DataReceived))
    assert body == b"no route to nowhere.ns:80"
    assert any(isinstance(e, StreamEnded) for e in events)
    stats = rt.no_route_stats("nowhere.ns:80")
    assert stats.requests == 1
    assert stats.responses == {("502", "failure", "", "no_route"): 1}
    assert not proto.busy()
    assert rt.tap.active is False


@in_loop
def test_replayed_preface_is_counted_and_drain_closes_idle(
        proto: H2Downstream, t: FakeTransport, rt: Runtime) -> None:
    c = client_conn()
    first = c.data_to_send()
    proto.data_received(first)
    assert proto.tcp.read_bytes == len(first)
    assert proto in rt.connections
    c.receive_data(t.take())
    proto.close_idle()
    assert t.closed
    events = c.receive_data(t.take())
    assert [type(e) for e in events] == [ConnectionTerminated]
    proto.connection_lost(None)
    assert proto not in rt.connections
    assert proto.tcp.closes == {"": 1} and proto.tcp.write_bytes > 0


@in_loop
def test_oversized_frame_header_is_refused_before_its_body_arrives(
        proto: H2Downstream, t: FakeTransport, rt: Runtime) -> None:
    proto.data_received(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
                        + b"\x01\x00\x00\x00\x00\x00\x00\x00\x01")  # a 64 KiB DATA frame
    assert t.closed
    c = client_conn()
    events = c.receive_data(t.take())
    terminated = [e for e in events if isinstance(e, ConnectionTerminated)]
    assert terminated and terminated[0].error_code == ErrorCodes.FRAME_SIZE_ERROR
    assert rt.metrics.errors == {("outbound", "http2_frame_size_error"): 1}


def test_frames_after_a_received_goaway_still_reach_open_streams() -> None:
    """GOAWAY and the rest of a stream in one read: h2 alone would fail the connection."""
    client = h2_connection(H2Configuration(client_side=True, header_encoding=None))
    server = H2Connection(H2Configuration(client_side=False, header_encoding=None))
    client.initiate_connection()
    client.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"),
                            (b":authority", b"a"), (b":path", b"/")], end_stream=True)
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    server.send_headers(1, [(b":status", b"200")])
    goaway = GoAwayFrame(0)
    goaway.last_stream_id = 1
    head = server.data_to_send()
    server.send_data(1, b"rest", end_stream=True)
    events = client.receive_data(head + goaway.serialize() + server.data_to_send())
    kinds = [type(e) for e in events]
    assert ConnectionTerminated in kinds and kinds[-1] is StreamEnded
    assert b"".join(e.data for e in events if isinstance(e, DataReceived)) == b"rest"


@in_loop
def test_header_list_over_max_header_bytes_ends_the_connection(
        proto: H2Downstream, t: FakeTransport, rt: Runtime) -> None:
    c = client_conn()
    c.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "a.ns:80"),
                       (":path", "/"), ("x-big", "v" * (rt.config.max_header_bytes + 1))],
                   end_stream=True)
    proto.data_received(c.data_to_send())
    terminated = [e for e in c.receive_data(t.take()) if isinstance(e, ConnectionTerminated)]
    assert terminated[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert t.closed and not proto.busy()


@in_loop
def test_sweep_closes_a_connection_idle_for_idle_timeout(
        proto: H2Downstream, t: FakeTransport, rt: Runtime) -> None:
    proto.data_received(client_conn().data_to_send())
    proto.tick(100.0)
    proto.tick(100.0 + rt.config.idle_timeout)
    assert not t.closed          # idle exactly idle_timeout: not yet
    proto.tick(101.0 + rt.config.idle_timeout)
    assert t.closed


@in_loop
def test_nobody_tapping_costs_no_tap_call(
        proto: H2Downstream, t: FakeTransport, rt: Runtime) -> None:
    def boom(**kw: object) -> None:
        raise AssertionError("tap.request called while nobody taps")

    rt.tap.request = boom  # type: ignore[method-assign,assignment]
    c = client_conn()
    c.send_headers(1, [(":method", "GET"), (":scheme", "http"),
                       (":authority", "nowhere.ns:80"), (":path", "/")], end_stream=True)
    proto.data_received(c.data_to_send())
    assert rt.no_route_stats("nowhere.ns:80").requests == 1
