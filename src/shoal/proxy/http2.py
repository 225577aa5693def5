"""HTTP/2 and gRPC forwarding: the accepted h2 connection.

``H2Downstream`` takes over an accepted connection once detection saw the HTTP/2
preface (h2c, prior knowledge). Each request stream becomes an ``Exchange``
(``h2stream``) that is routed by its ``:authority``, sent on a pooled, multiplexed
upstream connection (``h2pool``) and streamed both ways frame by frame under
end-to-end flow control (``h2flow``). Routing is the listener's ``Side``: the first
request to a service may wait for discovery, the balancer's in-flight load and a
service profile's route counters are kept per stream, and on the client side the
route's timeout and retries apply (``Exchange.bind_route``).
"""

from __future__ import annotations

import asyncio

from h2.config import H2Configuration
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import FrameTooLargeError, ProtocolError
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame

from .config import format_addr
from .destination import Endpoint, Target
from .h2flow import H2Peer, errno_name, h2_connection
from .h2pool import H2Pool, h2_pool
from .h2stream import HOP_BY_HOP, Exchange, text_headers
from .runtime import Runtime
from .sides import Side

#: Concurrent streams we let one client open.
MAX_STREAMS = 512
#: Inbound headers are validated (h2 enforces the protocol on clients); what we send
#: was validated on the way in, so it is not checked twice.
SERVER_CONFIG = H2Configuration(client_side=False, header_encoding=None,
                                validate_outbound_headers=False,
                                normalize_outbound_headers=False)


class H2Downstream(H2Peer):
    """An accepted HTTP/2 connection (h2c prior knowledge) whose streams we forward."""

    def __init__(self, runtime: Runtime, side: Side, conn_id: int) -> None:
        pool: H2Pool = h2_pool(runtime)
        super().__init__(pool.hub, side.src_tcp)
        self.runtime = runtime
        self.side = side
        self.conn_id = conn_id
        self.pool = pool
        self.conn = h2_connection(SERVER_CONFIG)
        self.streams: dict[int, Exchange] = {}
        self.going_away = False
        self.peer = ""
        self.active = True       # read something since the last tick
        self.idle_since = 0.0

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

    def tick(self, now: float) -> None:
        """The listeners' periodic sweep: close (GOAWAY first) a connection that had
        no stream and read nothing for ``idle_timeout``."""
        if self.active or self.streams:
            self.active = False
            self.idle_since = now
        elif now - self.idle_since > self.runtime.config.idle_timeout:
            self.close_idle()

    def maybe_close(self) -> None:
        if self.going_away and not self.streams and not self.closed and self.transport:
            self.write_out()
            self.transport.close()

    # -- asyncio ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.runtime.connections.add(self)
        self.start_h2({SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
                       SettingCodes.ENABLE_PUSH: 0}, self.runtime.config.max_header_bytes)

    def data_received(self, data: bytes) -> None:
        self.tcp.read_bytes += len(data)
        self.active = True
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as e:
            self.protocol_error(e)
            return
        if self.oversized_frame():
            self.conn.close_connection(ErrorCodes.FRAME_SIZE_ERROR)
            self.protocol_error(FrameTooLargeError("frame longer than SETTINGS_MAX_FRAME_SIZE"))
            return
        try:
            self.handle(events)
        except Exception as e:  # a bug must cost one connection, not the proxy's loop
            self.runtime.connection_error(self.side.direction, "internal_error",
                                          peer=self.peer_addr(), detail=repr(e)[:120])
            self.abort()
            return
        self.mark()
        self.hub.flush()
        if self.paused:
            self.check_flood()

    def handle(self, events: list[Event]) -> None:
        streams = self.streams
        for ev in events:
            if isinstance(ev, DataReceived):
                ex = streams.get(ev.stream_id)
                if ex is not None:
                    ex.on_request_data(ev.data, ev.flow_controlled_length - len(ev.data))
                else:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, RequestReceived):
                self.on_request(ev)
            elif isinstance(ev, StreamEnded):
                ex = streams.get(ev.stream_id)
                if ex is not None:
                    ex.on_request_end()
            elif isinstance(ev, TrailersReceived):
                ex = streams.get(ev.stream_id)
                if ex is not None:
                    ex.on_request_trailers(ev.headers)
            elif isinstance(ev, StreamReset):
                ex = streams.get(ev.stream_id)
                if ex is not None:
                    ex.on_client_reset(int(ev.error_code))
            elif isinstance(ev, (WindowUpdated, RemoteSettingsChanged)):
                self.retry_blocked()
            elif isinstance(ev, ConnectionTerminated):
                # the client opens no more streams; the open ones finish
                self.going_away = True
                self.maybe_close()

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
        target = side.target(auth)
        ep = target.pick() if target is not None else None
        ex = Exchange(self, sid, fwd)
        self.streams[sid] = ex
        if ev.stream_ended is not None:
            ex.to_up.end = True  # so the upstream HEADERS carry END_STREAM
        hub = self.runtime.tap
        if hub.active:  # the event is built only for a request a tapper takes
            m, sch, p = method.decode("latin-1"), scheme.decode("latin-1"), \
                path.decode("latin-1")
            dst_labels = ep.labels if ep is not None else None
            subs = hub.admit(side.direction, m, sch, auth, p, dst_labels)
            if subs is not None:
                ex.tap = hub.publish(
                    subs, conn_id=self.conn_id, stream=sid, direction=side.direction,
                    src=self.peer_addr(), dst=ep.target_addr if ep is not None else "",
                    tls=side.tls_value, method=m, scheme=sch, authority=auth, path=p,
                    headers=text_headers(fwd), src_labels=side.caller,
                    dst_labels=dst_labels)
        if ep is not None:
            self.route(ex, ep, target, method, path)
        elif target is not None and target.pending is not None and not target.pending.done():
            # the first request to a service waits (briefly) for discovery's answer
            task = asyncio.get_running_loop().create_task(
                self.await_target(ex, target, auth, method, path),
                name=f"h2-discovery {auth}")
            self.pool.tasks.add(task)
            task.add_done_callback(self.pool.tasks.discard)
        else:
            self.no_route(ex, auth, target)

    def route(self, ex: Exchange, ep: Endpoint, target: Target | None, method: bytes,
              path: bytes) -> None:
        """Count the request on its endpoint (and profile route: its timeout and
        retries on the client side) and send it."""
        ex.ep = ep
        ex.stats = ep.stats
        ep.stats.requests += 1
        ep.load.inflight += 1
        ex.loaded = True
        if target is not None and target.routes is not None:
            ex.bind_route(target.routes, target, method, path,
                          client_side=self.side.direction == "outbound")
        self.pool.dispatch(ex)

    def no_route(self, ex: Exchange, auth: str, target: Target | None) -> None:
        ex.stats = self.runtime.no_route_stats(auth)
        ex.stats.requests += 1
        why = "no endpoints for" if target is not None and target.exists else "no route to"
        ex.respond_error(502, "no_route", f"{why} {auth}")

    async def await_target(self, ex: Exchange, target: Target, auth: str, method: bytes,
                           path: bytes) -> None:
        if target.pending is not None:
            try:
                await asyncio.wait_for(asyncio.shield(target.pending),
                                       self.runtime.config.connect_timeout)
            except TimeoutError:
                pass
        if ex.cancelled or self.closed:
            return
        ep = target.pick()
        if ep is None:
            self.no_route(ex, auth, target)
        else:
            self.route(ex, ep, target, method, path)
        self.hub.flush()

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
