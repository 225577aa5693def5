"""Multiplexed upstream HTTP/2 (h2c, prior knowledge) connections, pooled per endpoint.

One connection carries many streams. A new one is opened when every open connection
to the endpoint is at the peer's ``MAX_CONCURRENT_STREAMS``, and a connection leaves
the pool on GOAWAY (its remaining streams finish) or when it closes. Streams the
peer refused unprocessed (GOAWAY above their id, REFUSED_STREAM) are sent again on
another connection when no request bytes went out yet. To an endpoint with an
identity (a meshed peer) the connection is mTLS, h2 inside.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import TYPE_CHECKING, Protocol

from h2.config import H2Configuration
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    InformationalResponseReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import H2Error, ProtocolError
from h2.settings import SettingCodes

from .config import Addr, format_addr
from .h2flow import H2Peer, Headers, Hub, Outbox, errno_name, h2_connection

if TYPE_CHECKING:
    from .destination import Endpoint
    from .metrics import TcpStats
    from .runtime import Runtime

#: Streams opened on a connection before the peer's SETTINGS tell its limit
#: (RFC 9113 recommends peers allow at least 100).
ASSUMED_STREAMS = 100

CLIENT_CONFIG = H2Configuration(client_side=True, header_encoding=None,
                                validate_outbound_headers=False,
                                normalize_outbound_headers=False)


class Stream(Protocol):
    """What an upstream connection needs from the exchange it carries."""

    ep: Endpoint | None
    headers: Headers
    to_up: Outbox
    to_down: Outbox
    cancelled: bool

    def attached(self, up: H2Upstream, usid: int) -> None: ...
    def on_response(self, headers: Headers, informational: bool, ended: bool) -> None: ...
    def on_data(self, data: bytes, padding: int) -> None: ...
    def on_trailers(self, headers: Headers) -> None: ...
    def on_end(self) -> None: ...
    def on_reset(self, code: int) -> None: ...
    def on_lost(self, error: str) -> None: ...
    def retry(self) -> bool: ...


class H2Upstream(H2Peer):
    """A client-side h2 connection to one endpoint, carrying many exchanges."""

    def __init__(self, pool: H2Pool, key: tuple[Addr, TcpStats],
                 identity: str | None = None) -> None:
        super().__init__(pool.hub, key[1])
        self.pool = pool
        self.key = key
        self.identity = identity  # the peer proxy's, when the hop is mTLS
        self.conn = h2_connection(CLIENT_CONFIG)
        self.streams: dict[int, Stream] = {}
        self.waiting: list[Stream] = []
        self.connected = False
        self.usable = True       # takes new streams (false after GOAWAY or close)
        self.settled = False     # the peer's SETTINGS arrived
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error = ""          # why the connection ended, for the streams it carried

    # -- pool side --------------------------------------------------------

    def capacity(self) -> int:
        if not self.usable:
            return 0
        if not self.settled:
            return 1 << 30  # queued until the peer's SETTINGS tell its limit
        limit = self.conn.remote_settings.max_concurrent_streams
        return limit - len(self.streams) - len(self.waiting)

    def start(self, ex: Stream) -> None:
        """Open a stream for ``ex`` and send its request headers."""
        if not self.settled:
            self.waiting.append(ex)
            return
        conn = self.conn
        box = ex.to_up
        end = box.end and not box.chunks and not box.trailers
        try:
            usid = conn.get_next_available_stream_id()
            conn.send_headers(usid, ex.headers, end_stream=end)
        except H2Error:
            self.usable = False
            self.pool.forget(self)
            self.pool.dispatch(ex)
            return
        self.mark()
        self.streams[usid] = ex
        ex.attached(self, usid)
        if end:
            box.ended = True
        elif box.chunks or box.end:
            box.flush()

    def release(self, usid: int) -> None:
        """The stream is over both ways; close the connection if nobody needs it."""
        if self.streams.pop(usid, None) is None or self.streams or self.waiting:
            return
        if not self.usable:
            self.close()
        elif self.pool.idle_elsewhere(self):
            self.usable = False
            self.pool.forget(self)
            self.close()

    def direction(self) -> str:
        return dict(self.tcp.labels).get("direction", "outbound")

    def close(self) -> None:
        self.usable = False
        if self.transport is not None and not self.closed:
            self.write_out()
            self.transport.close()

    # -- asyncio side -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connected = True
        self.tcp.connection_opened()
        self.start_h2({SettingCodes.ENABLE_PUSH: 0}, self.pool.runtime.config.max_header_bytes)
        self.hub.flush()

    def on_settled(self) -> None:
        """The peer's first SETTINGS: we know its stream limit, start what waits."""
        self.settled = True
        if not self.ready.done():
            self.ready.set_result(None)
        waiting, self.waiting = self.waiting, []
        for ex in waiting:
            if ex.cancelled:
                continue
            if self.capacity() > 0:
                self.start(ex)
            else:
                self.pool.dispatch(ex)

    def connect_failed(self, error: str) -> None:
        self.usable = False
        self.pool.forget(self)
        waiting, self.waiting = self.waiting, []
        now = time.monotonic()
        for ep in {id(ex.ep): ex.ep for ex in waiting}.values():
            if ep is not None:
                ep.load.failed(now)  # once per failed connection, for the balancer
        for ex in waiting:
            if not ex.cancelled:
                ex.on_lost(error)
        self.hub.flush()

    def data_received(self, data: bytes) -> None:
        self.tcp.read_bytes += len(data)
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as e:
            self.protocol_error(e)
            return
        try:
            self.handle(events)
        except Exception as e:  # a bug must cost one connection, not the proxy's loop
            self.pool.runtime.connection_error(self.direction(), "internal_error",
                                               peer=format_addr(self.key[0]),
                                               detail=repr(e)[:120])
            if self.transport is not None:
                self.transport.abort()
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
                    ex.on_data(ev.data, ev.flow_controlled_length - len(ev.data))
                else:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, (ResponseReceived, InformationalResponseReceived)):
                ex = streams.get(ev.stream_id)
                if ex is not None:
                    ex.on_response(ev.headers, isinstance(ev, InformationalResponseReceived),
                                   getattr(ev, "stream_ended", None) is not None)
            elif isinstance(ev, TrailersReceived):
                ex = streams.get(ev.stream_id)
                if ex is not None:
                    ex.on_trailers(ev.headers)
            elif isinstance(ev, StreamEnded):
                ex = streams.get(ev.stream_id)
                if ex is not None:
                    ex.on_end()
            else:
                self.on_control(ev)

    def on_control(self, ev: Event) -> None:
        if isinstance(ev, WindowUpdated):
            self.retry_blocked()
        elif isinstance(ev, StreamReset):
            ex = self.streams.get(ev.stream_id)
            if ex is None:
                return
            if ev.error_code == ErrorCodes.REFUSED_STREAM and ex.retry():
                self.streams.pop(ev.stream_id, None)
                self.pool.dispatch(ex)
            else:
                ex.on_reset(int(ev.error_code))
        elif isinstance(ev, RemoteSettingsChanged):
            if not self.settled:
                self.on_settled()
            self.retry_blocked()
        elif isinstance(ev, ConnectionTerminated):
            self.goaway(ev.last_stream_id or 0)

    def goaway(self, last_stream_id: int) -> None:
        self.usable = False
        self.pool.forget(self)
        for usid in [s for s in self.streams if s > last_stream_id]:
            ex = self.streams.pop(usid)
            if ex.retry():
                self.pool.dispatch(ex)
            else:
                ex.on_lost("upstream_reset")
        if not self.streams:
            self.close()

    def protocol_error(self, e: ProtocolError) -> None:
        self.error = "upstream_reset"
        self.pool.runtime.connection_error(self.direction(), "upstream_http2_protocol_error",
                                           peer=format_addr(self.key[0]), detail=str(e)[:80])
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.usable = False
        self.pool.forget(self)
        self.tcp.connection_closed(errno_name(exc))
        if not self.ready.done():
            self.ready.set_result(None)
        streams, self.streams = self.streams, {}
        waiting, self.waiting = self.waiting, []
        for ex in [*streams.values(), *waiting]:
            if not ex.cancelled:
                ex.on_lost(self.error or "upstream_reset")
        self.hub.flush()


class H2Pool:
    """Upstream h2 connections per (address, connection counters)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.hub = Hub()
        self.conns: dict[tuple[Addr, TcpStats], list[H2Upstream]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def dispatch(self, ex: Stream) -> None:
        """Send ``ex`` on a connection with room, opening one if needed."""
        ep = ex.ep
        assert ep is not None, "routed before dispatch"
        key = (ep.addr, ep.tcp)
        conns = self.conns.get(key)
        if conns is None:
            conns = self.conns[key] = []
        for up in conns:
            if up.capacity() > 0:
                up.start(ex)
                return
        up = H2Upstream(self, key, ep.identity)
        conns.append(up)
        up.waiting.append(ex)
        task = asyncio.get_running_loop().create_task(
            self._connect(up), name=f"h2-connect {format_addr(ep.addr)}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect(self, up: H2Upstream) -> None:
        host, port = up.key[0]
        loop = asyncio.get_running_loop()
        timeout = self.runtime.config.connect_timeout
        deadline = loop.time() + timeout
        creds = self.runtime.credentials() if up.identity else None
        try:
            if creds is not None:  # to a meshed peer: mTLS, checked against its identity
                coro = loop.create_connection(lambda: up, host, port, ssl=creds.client,
                                              server_hostname=up.identity)
            else:
                coro = loop.create_connection(lambda: up, host, port)
            await asyncio.wait_for(coro, timeout)
            # connected means the peer's SETTINGS arrived (or the connection ended)
            await asyncio.wait_for(asyncio.shield(up.ready), max(0.0, deadline - loop.time()))
        except TimeoutError:
            error = "connect_timeout"
        except ssl.SSLError:
            error = "tls_error"
        except OSError:
            error = "connect_refused"
        else:
            return
        self.runtime.connection_error(up.direction(), error, peer=format_addr(up.key[0]))
        up.connect_failed(error)
        up.close()

    def forget(self, up: H2Upstream) -> None:
        conns = self.conns.get(up.key)
        if conns is not None and up in conns:
            conns.remove(up)
            if not conns:
                del self.conns[up.key]

    def idle_elsewhere(self, up: H2Upstream) -> bool:
        """Another connection to the same endpoint is idle (keep only one idle)."""
        return any(c is not up and c.connected and not c.streams and not c.waiting
                   for c in self.conns.get(up.key, ()))

    def close_all(self) -> None:
        for conns in list(self.conns.values()):
            for up in list(conns):
                up.close()
        self.conns.clear()


def h2_pool(runtime: Runtime) -> H2Pool:
    """The runtime's upstream h2 pool (created on first use, kept on the runtime)."""
    pool: H2Pool | None = getattr(runtime, "h2_pool", None)
    if pool is None:
        pool = H2Pool(runtime)
        runtime.h2_pool = pool  # type: ignore[attr-defined]
    return pool
