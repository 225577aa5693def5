"""HTTP/2 and gRPC forwarding: accepted h2 connections, one ``Exchange`` per stream.

``H2Downstream`` takes over an accepted connection once detection saw the HTTP/2
preface. Each request stream becomes an ``Exchange`` that is routed by its
``:authority``, sent on a pooled upstream connection (``h2pool``), and streamed both
ways frame by frame under end-to-end flow control (``h2flow``). Metrics and tap are
recorded here, in one place per stream: request headers, response headers, end.
"""

from __future__ import annotations

import asyncio
import time

from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import FrameTooLargeError, H2Error, ProtocolError
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame

from .classify import GRPC_UNKNOWN, classify
from .config import format_addr
from .destination import Endpoint
from .h2flow import H2Peer, Headers, Outbox, errno_name
from .h2pool import H2Pool, H2Upstream, h2_pool
from .metrics import TrafficStats
from .runtime import Runtime
from .sides import Side
from .tap import TapExchange

#: Concurrent streams we let one client open.
MAX_STREAMS = 512
#: Attempts for a stream the upstream refused unprocessed.
MAX_ATTEMPTS = 3

SERVER_CONFIG = H2Configuration(client_side=False, header_encoding=None,
                                validate_outbound_headers=False,
                                normalize_outbound_headers=False)

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                        b"transfer-encoding", b"upgrade"})
GRPC_STATUS = b"grpc-status"


def forwarded(headers: Headers) -> Headers:
    """``headers`` without hop-by-hop fields (``te`` survives only as ``trailers``)."""
    out = []
    for name, value in headers:
        if name in HOP_BY_HOP:
            continue
        if name == b"te" and value.strip().lower() != b"trailers":
            continue
        out.append((name, value))
    return out


def text_headers(headers: Headers) -> list[tuple[str, str]]:
    """Regular (non-pseudo) headers as str pairs, for tap."""
    return [(n.decode("latin-1"), v.decode("utf-8", "replace"))
            for n, v in headers if not n.startswith(b":")]


def grpc_status_of(headers: Headers) -> int | None:
    for name, value in headers:
        if name == GRPC_STATUS:
            try:
                return int(value)
            except ValueError:
                return GRPC_UNKNOWN
    return None


def _us(seconds: float) -> int:
    return int(seconds * 1_000_000)


class Exchange:
    """One request stream: routed, forwarded both ways, recorded once."""

    __slots__ = ("down", "sid", "ep", "stats", "headers", "up", "usid", "to_up", "to_down",
                 "t0", "t_rsp", "status", "grpc", "is_grpc", "rsp_bytes", "tap",
                 "recorded", "req_end", "rsp_end", "up_done", "down_done", "cancelled",
                 "attempts", "pending_rst", "tap_trailers")

    def __init__(self, down: H2Downstream, sid: int, ep: Endpoint | None,
                 stats: TrafficStats, headers: Headers) -> None:
        self.down = down
        self.sid = sid
        self.ep = ep
        self.stats = stats
        self.headers = headers
        self.up: H2Upstream | None = None
        self.usid = 0
        self.to_up = Outbox(self, None, 0, down, sid)
        self.to_down = Outbox(self, down, sid)
        self.t0 = time.monotonic()
        self.t_rsp = 0.0
        self.status = 0
        self.grpc: int | None = None
        self.is_grpc = False
        self.rsp_bytes = 0
        self.tap: TapExchange | None = None
        self.recorded = False
        self.req_end = False       # the client ended its request
        self.rsp_end = False       # the upstream ended its response
        self.up_done = False       # upstream stream over (ended both ways or reset)
        self.down_done = False     # downstream stream over
        self.cancelled = False
        self.attempts = 1
        self.pending_rst: int | None = None  # reset the client once the response is out
        self.tap_trailers: list[tuple[str, str]] | None = None

    # -- upstream events --------------------------------------------------

    def attached(self, up: H2Upstream, usid: int) -> None:
        self.up = up
        self.usid = usid
        self.to_up.dst = up
        self.to_up.sid = usid
        self.to_down.src = up
        self.to_down.src_sid = usid

    def on_response(self, headers: Headers, informational: bool, ended: bool) -> None:
        fwd = forwarded(headers)
        down = self.down
        if informational:
            try:
                down.conn.send_headers(self.sid, fwd)
            except H2Error:
                return
            down.mark()
            return
        status = 0
        grpc = False
        for name, value in headers:
            if name == b":status":
                status = int(value)
            elif name == b"content-type":
                grpc = value.startswith(b"application/grpc")
            elif name == GRPC_STATUS:
                self.grpc = grpc_status_of(((name, value),))
        self.status = status
        self.is_grpc = grpc
        now = time.monotonic()
        self.t_rsp = now
        self.stats.observe_latency(status, (now - self.t0) * 1000.0)
        if self.tap is not None:
            self.tap.response(status, text_headers(headers), _us(now - self.t0))
        if self.down_done:
            return
        try:
            # a trailers-only response (gRPC errors) must stay one HEADERS frame
            down.conn.send_headers(self.sid, fwd, end_stream=ended)
        except H2Error:
            self.to_down.discard()
            return
        if ended:
            self.to_down.ended = True
        down.mark()

    def on_data(self, data: bytes, padding: int) -> None:
        self.rsp_bytes += len(data)
        if padding:
            self.to_down.ack(padding)
        self.to_down.push(data)

    def on_trailers(self, headers: Headers) -> None:
        self.grpc = grpc_status_of(headers)
        self.to_down.trailers = forwarded(headers)
        if self.tap is not None:
            self.tap_trailers = text_headers(headers)

    def on_end(self) -> None:
        self.rsp_end = True
        self.record("")
        box = self.to_down
        box.end = True
        if box.ended:
            self.outbox_ended(box)
        else:
            box.flush()
        self.check_up()

    def on_reset(self, code: int) -> None:
        """The upstream reset the stream: pass the reset on, with the same code."""
        self.up_done = True
        self.to_up.discard()
        if self.up is not None:
            self.up.release(self.usid)
        if not self.rsp_end:
            self.record("stream_reset")
            self.reset_down(code)
        elif not self.to_down.ended:
            self.pending_rst = code   # after the response is out
        elif not self.req_end:
            self.reset_down(code)

    def on_lost(self, error: str) -> None:
        """The upstream connection failed or closed under this stream."""
        self.up_done = True
        self.to_up.discard()
        if self.rsp_end:
            if not self.req_end and self.to_down.ended:
                self.reset_down(ErrorCodes.CANCEL)
            return
        if self.status == 0:
            self.respond_error(502, error, f"{error.replace('_', ' ')} to {self.target()}")
        else:
            self.record(error)
            self.reset_down(ErrorCodes.INTERNAL_ERROR)

    def retry(self) -> bool:
        """True (and ready to be sent again) if the upstream never saw this request."""
        if (self.cancelled or self.to_up.sent or self.status or self.down_done
                or self.attempts >= MAX_ATTEMPTS):
            return False
        self.attempts += 1
        self.up = None
        self.to_up.dst = None
        self.to_up.ended = False
        self.to_down.src = None
        return True

    # -- downstream events ------------------------------------------------

    def on_request_data(self, data: bytes, padding: int) -> None:
        if padding:
            self.to_up.ack(padding)
        self.to_up.push(data)

    def on_request_trailers(self, headers: Headers) -> None:
        self.to_up.trailers = forwarded(headers)

    def on_request_end(self) -> None:
        self.req_end = True
        box = self.to_up
        box.end = True
        box.flush()
        self.check_down()

    def on_client_reset(self, code: int) -> None:
        """The client reset the stream: reset the upstream one with the same code."""
        self.down_done = True
        self.cancelled = True
        self.down.streams.pop(self.sid, None)
        self.to_down.discard()
        if self.status and not self.recorded:
            self.record("stream_reset")
        self.to_up.discard()
        up = self.up
        if up is not None and not self.up_done:
            self.up_done = True
            up.reset(self.usid, code)
            up.release(self.usid)
        self.down.maybe_close()

    def outbox_ended(self, box: Outbox) -> None:
        if box is self.to_down:
            if self.pending_rst is not None and not self.req_end:
                self.reset_down(self.pending_rst)
            self.check_down()
        else:
            self.check_up()

    # -- helpers ------------------------------------------------------------

    def check_down(self) -> None:
        if self.req_end and self.to_down.ended and not self.down_done:
            self.down_done = True
            self.down.streams.pop(self.sid, None)
            self.down.maybe_close()

    def check_up(self) -> None:
        if self.rsp_end and self.to_up.ended and not self.up_done:
            self.up_done = True
            if self.up is not None:
                self.up.release(self.usid)

    def reset_down(self, code: int) -> None:
        self.to_down.discard()
        if not self.down_done:
            self.down_done = True
            self.down.reset(self.sid, code)
            self.down.streams.pop(self.sid, None)
            self.down.maybe_close()

    def target(self) -> str:
        return self.ep.target_addr if self.ep is not None else ""

    def respond_error(self, status: int, error: str, text: str) -> None:
        """Answer the client ourselves (no response came from upstream)."""
        self.status = status
        now = time.monotonic()
        self.t_rsp = now
        if self.ep is not None:
            self.stats.observe_latency(status, (now - self.t0) * 1000.0)
        body = text.encode()
        headers = [(b":status", str(status).encode()),
                   (b"content-type", b"text/plain; charset=utf-8"),
                   (b"content-length", str(len(body)).encode())]
        if self.tap is not None:
            self.tap.response(status, text_headers(headers), _us(now - self.t0))
        self.rsp_bytes = len(body)
        self.rsp_end = True
        self.to_up.discard()
        self.record(error)
        if self.down_done:
            return
        try:
            self.down.conn.send_headers(self.sid, headers)
        except H2Error:
            return
        self.down.mark()
        box = self.to_down
        box.src = None
        box.push(body)
        box.end = True
        box.flush()

    def record(self, error: str) -> None:
        if self.recorded:
            return
        self.recorded = True
        grpc = self.grpc
        if grpc is None and self.is_grpc and not error:
            grpc = GRPC_UNKNOWN
        status = self.status or 502
        cls = classify(status, grpc, error)
        self.stats.response_ended(status, cls, grpc, error)
        tap = self.tap
        if tap is not None:
            now = time.monotonic()
            tap.end(duration_us=_us(now - self.t_rsp) if self.t_rsp else 0,
                    response_bytes=self.rsp_bytes, grpc_status=grpc, error=error,
                    classification=cls, trailers=self.tap_trailers)


class H2Downstream(H2Peer):
    """An accepted HTTP/2 connection (h2c prior knowledge) whose streams we forward."""

    def __init__(self, runtime: Runtime, side: Side, conn_id: int) -> None:
        pool: H2Pool = h2_pool(runtime)
        super().__init__(pool.hub, side.src_tcp)
        self.runtime = runtime
        self.side = side
        self.conn_id = conn_id
        self.pool = pool
        self.conn = H2Connection(SERVER_CONFIG)
        self.streams: dict[int, Exchange] = {}
        self.going_away = False
        self.peer = ""

    # -- Tracked ----------------------------------------------------------

    def busy(self) -> bool:
        return bool(self.streams)

    def close_idle(self) -> None:
        """Send GOAWAY (streams in flight finish), close once none is left."""
        if self.going_away or self.closed or self.transport is None:
            return
        self.going_away = True
        # Written by hand: h2 stops processing frames after its own GOAWAY, which
        # would cut the streams still in flight.
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.conn.highest_inbound_stream_id
        frame.error_code = ErrorCodes.NO_ERROR
        self.write_out()
        data = frame.serialize()
        self.tcp.write_bytes += len(data)
        self.transport.write(data)
        self.maybe_close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def maybe_close(self) -> None:
        if self.going_away and not self.streams and not self.closed and self.transport:
            self.write_out()
            self.transport.close()

    # -- asyncio ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.runtime.connections.add(self)
        self.start_h2({SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
                       SettingCodes.ENABLE_PUSH: 0})

    def data_received(self, data: bytes) -> None:
        self.tcp.read_bytes += len(data)
        try:
            events = self.conn.receive_data(data)
            if self.oversized_frame():
                raise FrameTooLargeError("frame longer than SETTINGS_MAX_FRAME_SIZE")
        except ProtocolError as e:
            self.protocol_error(e)
            return
        streams = self.streams
        for ev in events:
            kind = ev.__class__
            if kind is DataReceived:
                ex = streams.get(ev.stream_id)
                if ex is not None:
                    ex.on_request_data(ev.data, ev.flow_controlled_length - len(ev.data))
                else:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif kind is RequestReceived:
                self.on_request(ev)
            elif kind is StreamEnded:
                ex = streams.get(ev.stream_id)
                if ex is not None:
                    ex.on_request_end()
            elif kind is TrailersReceived:
                ex = streams.get(ev.stream_id)
                if ex is not None:
                    ex.on_request_trailers(ev.headers)
            elif kind is StreamReset:
                ex = streams.get(ev.stream_id)
                if ex is not None:
                    ex.on_client_reset(int(ev.error_code))
            elif kind is WindowUpdated or kind is RemoteSettingsChanged:
                self.retry_blocked()
            elif kind is ConnectionTerminated:
                # The client will open no more streams; let the open ones finish
                # (h2 would refuse their frames after a GOAWAY).
                self.conn.state_machine.state = ConnectionState.SERVER_OPEN
                self.going_away = True
                self.maybe_close()
        self.mark()
        self.hub.flush()

    def on_request(self, ev: RequestReceived) -> None:
        sid = ev.stream_id
        if self.going_away:
            self.reset(sid, ErrorCodes.REFUSED_STREAM)
            return
        authority = host = method = path = scheme = b""
        fwd = []
        for name, value in ev.headers:
            if name[0] == 58:  # b":"
                if name == b":authority":
                    authority = value
                elif name == b":path":
                    path = value
                elif name == b":method":
                    method = value
                elif name == b":scheme":
                    scheme = value
            elif name in HOP_BY_HOP:
                continue
            elif name == b"host":
                host = value
            elif name == b"te" and value.strip().lower() != b"trailers":
                continue
            fwd.append((name, value))
        auth = (authority or host).decode("latin-1")
        side = self.side
        ep = side.endpoint(auth)
        stats = ep.stats if ep is not None else self.runtime.no_route_stats(auth)
        stats.requests += 1
        ex = Exchange(self, sid, ep, stats, fwd)
        self.streams[sid] = ex
        if self.runtime.tap.active:
            ex.tap = self.runtime.tap.request(
                conn_id=self.conn_id, stream=sid, direction=side.direction,
                src=self.peer_addr(), dst=ex.target(), tls=side.tls_value,
                method=method.decode("latin-1"), scheme=scheme.decode("latin-1"),
                authority=auth, path=path.decode("latin-1"), headers=text_headers(fwd))
        if ev.stream_ended is not None:
            ex.to_up.end = True  # so the upstream HEADERS carry END_STREAM
        if ep is None:
            ex.respond_error(502, "no_route", f"no route to {auth}")
            return
        self.pool.dispatch(ex)

    def peer_addr(self) -> str:
        if not self.peer and self.transport is not None:
            peer = self.transport.get_extra_info("peername")
            self.peer = format_addr(peer[:2]) if peer else ""
        return self.peer

    def oversized_frame(self) -> bool:
        """The frame h2 waits for is longer than we allow.

        h2 checks a frame's length only once all of it arrived, so a hostile length
        would have us buffer up to 16 MiB first; look at the pending header instead.
        """
        buf = self.conn.incoming_buffer._data
        return len(buf) >= 9 and int.from_bytes(buf[:3], "big") > self.conn.max_inbound_frame_size

    def protocol_error(self, e: ProtocolError) -> None:
        """Send h2's GOAWAY (with the error code) and close."""
        code = getattr(e, "error_code", None) or ErrorCodes.PROTOCOL_ERROR
        if isinstance(e, FrameTooLargeError):
            self.conn.close_connection(ErrorCodes.FRAME_SIZE_ERROR)
        name = code.name.lower() if isinstance(code, ErrorCodes) else "protocol_error"
        self.runtime.connection_error(self.side.direction, f"http2_{name}",
                                      peer=self.peer_addr(), detail=str(e)[:80])
        self.going_away = True
        self.write_out()
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.runtime.connections.discard(self)
        self.tcp.connection_closed(errno_name(exc))
        streams, self.streams = self.streams, {}
        for ex in streams.values():
            ex.on_client_reset(ErrorCodes.CANCEL)
        self.hub.flush()
