"""HTTP/1.1 forwarding: requests parsed by httptools downstream, responses upstream.

Theory of operation. A downstream connection (``Http1Downstream``) parses requests;
each request becomes an ``Exchange`` bound to an ``Endpoint``. The exchange borrows
an idle ``Http1Upstream`` from the pool (or connects one) and streams the request
head and body to it; the upstream parses the response and streams it back. Only one
exchange per downstream connection is on the wire at a time: a pipelined request is
parsed and held (reading paused) until the one before it has been answered, so
responses keep their order. Bodies are never buffered whole: a full transport
buffer on one side pauses reading on the other.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from http import HTTPStatus
from typing import Any, Final

import httptools

from shoal.profiles import Route

from .classify import FAILURE, SUCCESS, classify
from .destination import Endpoint, Target
from .metrics import RouteStats, TrafficStats
from .pool import Pools
from .routes import MAX_ATTEMPTS, MAX_REPLAY, RouteTable
from .runtime import Runtime
from .sides import Side
from .tap import TapExchange, TapHub
from .tcp import connect_error, errno_name

_perf: Final = time.perf_counter

#: Headers that describe one hop, never forwarded (RFC 9110 7.6.1), plus ours.
HOP_BY_HOP: Final = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"proxy-authorization", b"proxy-authenticate",
})
_SPECIAL: Final = HOP_BY_HOP | {b"host", b"via", b"content-length", b"expect"}
_CRLF: Final = b"\r\n"
_COLON: Final = b": "
_CHUNK_END: Final = b"0\r\n\r\n"
#: "HTTP/1.1 200 OK\r\n" for every status code, so responses never format one.
_STATUS_LINE: Final = tuple(
    b"HTTP/1.1 %d %s\r\n" % (code, HTTPStatus(code).phrase.encode()
                              if code in HTTPStatus._value2member_map_ else b"")
    for code in range(1000))
#: Body bytes held for an exchange that has no upstream yet, before reading pauses.
_HOLD_LIMIT: Final = 256 * 1024

# Reasons for pausing reads on the downstream connection.
_P_UPSTREAM: Final = 1     # the upstream's write buffer is full
_P_HELD: Final = 2         # holding a pipelined request or a body while connecting


class _Batch:
    """Writes made while handling one read are sent with one syscall per connection.

    A response head and its body, or a request head and a small body, usually
    arrive in one read; writing them as they are produced costs a send() each,
    which profiling showed to be the largest cost per request. One instance,
    ``_BATCH``, serves the whole event loop.
    """

    def __init__(self) -> None:
        self.active = False
        self.dirty: list[_Buffered] = []

    def flush(self) -> None:
        self.active = False
        dirty = self.dirty
        if dirty:
            for conn in dirty:
                conn.flush()
            dirty.clear()


_BATCH: Final = _Batch()


class _Buffered:
    """Mixin: ``out(data)`` writes now, or at the end of the current batch."""

    # Any: the downstream always has a transport, an upstream not before it connects.
    transport: Any
    wbuf: list[bytes]

    def out(self, data: bytes) -> None:
        if _BATCH.active:
            if not self.wbuf:
                _BATCH.dirty.append(self)
            self.wbuf.append(data)
        elif self.transport is not None:
            self.transport.write(data)

    def shut(self) -> None:
        """Close after sending what is buffered."""
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def flush(self) -> None:
        buf = self.wbuf
        if buf and self.transport is not None:
            if len(buf) == 1:
                self.transport.write(buf[0])
            else:
                self.transport.writelines(buf)
        buf.clear()


def _chunk(data: bytes) -> list[bytes]:
    return [b"%x\r\n" % len(data), data, _CRLF]


def error_response(status: int, message: str, close: bool = True) -> bytes:
    body = (message + "\n").encode("utf-8", "replace")
    line = _STATUS_LINE[status]
    return b"".join((line, b"content-type: text/plain; charset=utf-8\r\n",
                     b"content-length: %d\r\n" % len(body),
                     b"connection: close\r\n" if close else b"",
                     b"l5d-proxy-error: %s\r\n" % message.encode("ascii", "replace")[:200],
                     _CRLF, body))


class Exchange:
    """One request/response through the proxy."""

    __slots__ = (
        "down", "ep", "stats", "method", "head", "req_chunked", "req_done", "held",
        "held_bytes", "up", "start", "tap", "status", "resp_started", "resp_chunked",
        "resp_bytes", "upgrade", "is_head", "keep_alive", "local", "authority", "path",
        "resp_headers_at", "close_delimited", "retryable", "http10", "pending", "target",
        "inflight", "tap_headers", "route", "rstats", "table", "replay", "replay_bytes", "attempts", "timer",
        "failure",
    )

    def __init__(self, down: Http1Downstream, ep: Endpoint | None,
                 stats: TrafficStats | None, method: bytes, start: float) -> None:
        self.down = down
        self.ep = ep
        self.stats = stats
        self.method = method
        self.head = b""
        self.req_chunked = False
        self.req_done = False
        self.held: list[bytes] | None = None   # body bytes waiting for an upstream
        self.held_bytes = 0
        self.up: Http1Upstream | None = None
        self.start = start
        self.tap: TapExchange | None = None
        self.status = 0
        self.resp_started = False
        self.resp_chunked = False
        self.resp_bytes = 0
        self.upgrade = False
        self.is_head = method == b"HEAD"
        self.keep_alive = True
        self.local = False          # answered by the proxy itself
        self.authority = b""
        self.path = b""
        self.resp_headers_at = 0.0
        self.close_delimited = False
        self.retryable = False      # safe to resend on a fresh connection
        self.http10 = False
        self.pending: tuple[int, str, str] | None = None  # a local answer awaiting its turn
        self.target: Target | None = None  # set while discovery has not answered
        self.tap_headers: list[tuple[bytes, bytes]] | None = None
        self.inflight = False
        # service profile: the matched route, its counters, timeout and retries
        self.route: Route | None = None
        self.rstats: RouteStats | None = None
        self.table: RouteTable | None = None
        self.replay: list[bytes] | None = None  # body kept for a retry
        self.replay_bytes = 0
        self.attempts = 1
        self.timer: asyncio.TimerHandle | None = None
        self.failure: bool | None = None  # a response class's verdict


class _NoTransport:
    """Stands in when nothing feeds a client connection (so flow control is a no-op)."""

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


_NO_TRANSPORT: Final = _NoTransport()


def _release(ex: Exchange) -> None:
    """The exchange no longer loads its endpoint (for the balancer)."""
    if ex.inflight:
        ex.inflight = False
        ex.ep.load.inflight -= 1  # type: ignore[union-attr]


class Http1Downstream(_Buffered, asyncio.Protocol):
    """An accepted HTTP/1.x connection: parses requests and runs their exchanges."""

    def __init__(self, runtime: Runtime, side: Side, conn_id: int) -> None:
        self.rt = runtime
        self.side = side
        self.conn_id = conn_id
        self.wbuf: list[bytes] = []
        self.cfg = runtime.config
        # read on every request: kept here as native attributes (ADR 11)
        self.max_header_bytes: int = runtime.config.max_header_bytes
        self.pools: Pools = runtime.pools
        self.taps: TapHub = runtime.tap
        self.tcp = side.src_tcp
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.peer = ""
        self.inbound = side.direction == "inbound"
        self.via = b"1.1 shoal-%s-%s" % ((runtime.config.pod or "proxy").encode(),
                                          side.proxy.encode())
        # request being parsed
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_started = 0.0       # > 0 while reading a request head
        self.head_bytes = 0
        self.parsing: Exchange | None = None
        # exchanges on the wire / waiting their turn
        self.current: Exchange | None = None
        self.queue: list[Exchange] = []
        self.paused = 0
        self.write_paused = False
        self.closing = False
        self.tunnel: asyncio.Transport | None = None
        self.tunnel_up: Http1Upstream | None = None
        self.last_active = _perf()
        self.requests = 0
        self._last_auth = b"\0"
        self._last_target: Target | None = None

    # -- Tracked ------------------------------------------------------------

    def busy(self) -> bool:
        return self.current is not None or self.tunnel is not None

    def close_idle(self) -> None:
        self.closing = True
        if not self.busy() and not self.head_started:
            self.shut()

    def abort(self) -> None:
        self.transport.abort()

    def tick(self, now: float) -> None:
        if self.head_started and now - self.head_started > self.cfg.header_timeout:
            self.head_started = 0.0
            self.reject(408, "request_timeout", "timed out reading request headers")
        elif (self.current is None and self.tunnel is None and not self.head_started
              and now - self.last_active > self.cfg.idle_timeout):
            self.shut()

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else ""
        self.rt.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.tcp.read_bytes += len(data)
        if self.tunnel is not None:
            self.tunnel_up.tcp_write(data)  # type: ignore[union-attr]
            return
        _BATCH.active = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self.upgraded(data[e.args[0]:])
        except httptools.HttpParserCallbackError:
            pass  # a callback already answered and closed
        except httptools.HttpParserError as e:
            self.reject(400, "bad_request", f"malformed request: {e}")
        else:
            if self.head_started and self.head_bytes > self.max_header_bytes:
                self.reject(431, "header_too_large", "request header section too large")
        _BATCH.flush()

    def eof_received(self) -> bool | None:
        # The client has finished sending. Let a response in flight complete.
        if self.current is not None and self.current.req_done:
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.rt.connections.discard(self)
        self.tcp.connection_closed(errno_name(exc))
        if self.tunnel is not None:
            self.tunnel.close()
        for ex in ([self.current] if self.current else []) + self.queue:
            if ex.up is not None:
                ex.up.abandon()
            if ex.local:
                continue
            if ex.resp_started:
                self.finish_metrics(ex, ex.status, "stream_reset")
            else:
                _release(ex)  # the client gave up before an answer: no response to count
        self.current = None
        self.queue.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._source().pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._source().resume_reading()

    def _source(self) -> asyncio.Transport | _NoTransport:
        """What feeds this client: the current upstream, or the tunnel's other end."""
        ex = self.current
        if ex is not None and ex.up is not None and ex.up.transport is not None:
            return ex.up.transport
        return self.tunnel if self.tunnel is not None else _NO_TRANSPORT

    # -- httptools callbacks --------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_started = _perf()
        self.head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > self.max_header_bytes:
            self.reject(431, "header_too_large", "request header section too large")
            raise httptools.HttpParserCallbackError("header too large")

    def on_headers_complete(self) -> None:
        now = _perf()
        self.head_started = 0.0
        self.last_active = now
        parser = self.parser
        method = parser.get_method()
        url = self.url
        host = b""
        via = b""
        conn_tokens: list[bytes] = []
        chunked = False
        upgrade = b""
        lines: list[bytes] = []
        for name, value in self.headers:
            lname = name.lower()
            if lname in _SPECIAL:
                if lname == b"host":
                    host = value
                    continue
                if lname == b"connection":
                    conn_tokens.extend(t.strip().lower() for t in value.split(b","))
                    continue
                if lname == b"transfer-encoding":
                    chunked = True
                    continue
                if lname == b"upgrade":
                    upgrade = value
                    continue
                if lname == b"via":
                    via = via + b", " + value if via else value
                    continue
                if lname in HOP_BY_HOP:
                    continue
            lines += (name, _COLON, value, _CRLF)
        extra = [t for t in conn_tokens if t not in (b"close", b"keep-alive", b"upgrade")]
        if extra:  # headers the client named in Connection are for this hop only
            lines = _drop_headers(lines, extra)
        # Request target: origin-form, absolute-form (we are the app's HTTP proxy).
        if url[:1] == b"/" or url == b"*":
            path = url
            authority = host
        elif url[:7].lower() == b"http://":
            rest = url[7:]
            i = rest.find(b"/")
            authority, path = (rest, b"/") if i < 0 else (rest[:i], rest[i:])
            host = authority
        elif method == b"CONNECT" and not self.inbound:
            authority, path = url, b""
        else:
            self.reject(400, "bad_request", "unsupported request target")
            raise httptools.HttpParserCallbackError("bad target")
        if not authority and not self.inbound:
            self.reject(400, "bad_request", "request has no host")
            raise httptools.HttpParserCallbackError("no host")
        # Route: one lookup per authority change on this connection, a pick per request.
        if authority == self._last_auth:
            target = self._last_target
        else:
            target = self.side.target(authority.decode("latin-1"))
            self._last_auth, self._last_target = authority, target
        ep = target.pick() if target is not None else None
        waiting = (ep is None and target is not None and target.pending is not None
                   and not target.pending.done())
        if ep is not None:
            stats: TrafficStats | None = ep.stats
        elif waiting:
            stats = None  # counted once discovery answers
        else:
            stats = self.rt.no_route_stats(authority.decode("latin-1"))
        ex = Exchange(self, ep, stats, method, now)
        self.parsing = ex
        ex.authority = authority
        ex.path = path
        if method == b"CONNECT" and target is not None:
            ex.upgrade = True
            return  # a tunnel, not a request: see upgraded()
        if stats is not None:
            stats.requests += 1
            table = self.rt.inbound_routes if self.inbound else (
                target.routes if target is not None else None)
            if table is not None:
                self.bind_route(ex, table)
        else:
            ex.target = target
        self.requests += 1
        ex.req_chunked = chunked
        ex.keep_alive = parser.should_keep_alive() and b"close" not in conn_tokens
        if parser.get_http_version() == "1.0":
            ex.http10 = True
            ex.keep_alive = False
        if self.taps.active and not waiting:
            self.tap_request(ex, self.headers)
        elif waiting:
            ex.tap_headers = self.headers  # tapped once discovery names the endpoint
        if via and self.via in via:
            self.answer(ex, 508, "loop_detected", "request loop detected")
            return
        if ep is None and not waiting:
            self.answer(ex, 502, "no_route", f"no route to {authority.decode('latin-1')}")
            return
        if upgrade and b"upgrade" in conn_tokens:
            ex.upgrade = True
            ex.keep_alive = False  # after a refused upgrade the parser cannot go on
            lines += (b"connection: upgrade\r\nupgrade: ", upgrade, _CRLF)
        if chunked:
            lines.append(b"transfer-encoding: chunked\r\n")
        ex.retryable = method in (b"GET", b"HEAD", b"OPTIONS") and not chunked
        ex.head = b"".join((method, b" ", path, b" HTTP/1.1\r\n",
                            b"host: " + host + _CRLF if host else b"",
                            *lines, b"via: ", via + b", " + self.via if via else self.via,
                            b"\r\n\r\n"))
        if self.current is None:
            self.current = ex
            self.dispatch(ex)
        else:
            ex.held = []
            self.queue.append(ex)
            self.pause(_P_HELD)

    def bind_route(self, ex: Exchange, table: RouteTable) -> None:
        """Match the request to a profile route (only for targets with a profile)."""
        ex.table = table
        ex.route, ex.rstats = table.match(ex.method, ex.path)
        ex.rstats.requests += 1
        if self.inbound:
            return  # the server side counts and classifies; timeouts and retries are the client's
        table.budget.deposit()
        if ex.route is not None and ex.route.is_retryable:
            ex.replay = []

    def timed_out(self, ex: Exchange) -> None:
        """The route's timeout passed with no response: cancel upstream, answer 504."""
        ex.timer = None
        if ex is not self.current or ex.resp_started or ex.local:
            return
        if ex.up is not None:
            ex.up.abandon()
        ex.up = None
        self.rt.connection_error(self.side.direction, "timeout",
                                 route=ex.route.name if ex.route else "")
        self.answer(ex, 504, "timeout", "request timed out (service profile route timeout)")
        _BATCH.flush()

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is None or ex.local:
            return
        if ex.replay is not None:
            ex.replay_bytes += len(body)
            if ex.replay_bytes > MAX_REPLAY:
                ex.replay = None  # too large to replay: never retried
            else:
                ex.replay.append(bytes(body))
        up = ex.up
        if up is not None and ex.held is None:
            up.send_body(body, ex.req_chunked)
        else:
            if ex.held is None:
                ex.held = []
            ex.held.append(body)
            ex.held_bytes += len(body)
            if ex.held_bytes > _HOLD_LIMIT:
                self.pause(_P_HELD)

    def on_message_complete(self) -> None:
        ex = self.parsing
        if ex is None:
            return
        ex.req_done = True
        if ex.upgrade:
            return  # the parser stops here; upgraded() takes the rest
        if ex.local:
            self.parsing = None
            if ex is self.current:
                self.exchange_done(ex)
            return
        if ex.up is not None and ex.held is None:
            ex.up.request_complete(ex.req_chunked)
        self.parsing = None

    # -- exchanges -------------------------------------------------------------

    def dispatch(self, ex: Exchange) -> None:
        """Put ``ex`` on the wire: a pooled connection now, or a new one soon."""
        ep = ex.ep
        if ep is None:
            if ex.held is None:
                ex.held = []
            self.pause(_P_HELD)
            asyncio.get_running_loop().create_task(self.await_target(ex),
                                                   name=f"http1-resolve-{self.conn_id}")
            return
        if not self.inbound:
            ep.load.inflight += 1
            ex.inflight = True
        if ex.rstats is not None:
            ex.rstats.actual_requests += 1
            route = ex.route
            if ex.timer is None and route is not None and route.timeout and not self.inbound:
                ex.timer = asyncio.get_running_loop().call_later(
                    route.timeout, self.timed_out, ex)
        up = self.pools.get(ep.addr)
        if up is not None:
            up.begin(ex)  # type: ignore[attr-defined]
            return
        if ex.held is None:
            ex.held = []
        self.pause(_P_HELD)
        asyncio.get_running_loop().create_task(self.connect(ex, ep),
                                               name=f"http1-connect-{self.conn_id}")

    async def await_target(self, ex: Exchange) -> None:
        """The first request to a service waits (briefly) for discovery's answer."""
        target = ex.target
        assert target is not None
        if target.pending is not None:
            try:
                await asyncio.wait_for(asyncio.shield(target.pending), self.cfg.connect_timeout)
            except TimeoutError:
                pass
        if ex is not self.current or self.transport.is_closing():
            return
        ex.target = None
        ep = target.pick()
        authority = ex.authority.decode("latin-1")
        if ep is None:
            ex.stats = self.rt.no_route_stats(authority)
            ex.stats.requests += 1
            why = "no endpoints for" if target.exists else "no route to"
            self.answer(ex, 502, "no_route", f"{why} {authority}")
            self.resume(_P_HELD)
            return
        ex.ep, ex.stats = ep, ep.stats
        ep.stats.requests += 1
        if self.taps.active and ex.tap_headers is not None:
            self.tap_request(ex, ex.tap_headers)
        if target.routes is not None:
            self.bind_route(ex, target.routes)
        self.dispatch(ex)

    async def connect(self, ex: Exchange, ep: Endpoint) -> None:
        loop = asyncio.get_running_loop()
        creds = self.rt.credentials() if ep.identity else None
        try:
            if creds is not None:
                coro = loop.create_connection(lambda: Http1Upstream(self.rt, ep), *ep.addr,
                                              ssl=creds.client, server_hostname=ep.identity)
            else:
                coro = loop.create_connection(lambda: Http1Upstream(self.rt, ep), *ep.addr)
            _, up = await asyncio.wait_for(coro, self.cfg.connect_timeout)
        except (OSError, TimeoutError, ssl.SSLError) as e:
            ep.load.failed(time.monotonic())
            err = "tls_error" if isinstance(e, ssl.SSLError) else connect_error(e)
            self.rt.connection_error(self.side.direction, err, target=ep.target_addr,
                                     reason=errno_name(e))
            if ex is self.current and not self.transport.is_closing():
                self.answer(ex, 502, err, f"cannot connect to {ep.target_addr}: {err}")
                self.resume(_P_HELD)
            return
        if ex is not self.current or self.transport.is_closing():
            up.close()  # the client went away meanwhile
            return
        up.begin(ex)

    def pending_sent(self, ex: Exchange) -> None:
        """The upstream wrote the head; flush body bytes held meanwhile."""
        if ex.upgrade:
            return  # bytes after an upgrade request wait for the 101
        held, ex.held = ex.held, None
        up = ex.up
        assert up is not None
        if held:
            for chunk in held:
                up.send_body(chunk, ex.req_chunked)
        if ex.req_done and not ex.upgrade:
            up.request_complete(ex.req_chunked)
        if self.paused & _P_HELD and not self.queue:
            self.resume(_P_HELD)

    def exchange_done(self, ex: Exchange) -> None:
        """The response is complete; start the next exchange or close."""
        self.current = None
        self.last_active = _perf()
        if not ex.keep_alive or self.closing and not self.queue:
            self.shut()
            return
        if self.queue:
            nxt = self.queue.pop(0)
            self.current = nxt
            if nxt.pending is not None:
                self.answer(nxt, *nxt.pending)
                return
            self.dispatch(nxt)
        elif self.paused & _P_HELD:
            self.resume(_P_HELD)

    def write(self, data: bytes) -> None:
        self.tcp.write_bytes += len(data)
        self.out(data)

    def pause(self, reason: int) -> None:
        if not self.paused:
            self.transport.pause_reading()
        self.paused |= reason

    def resume(self, reason: int) -> None:
        was = self.paused
        self.paused &= ~reason
        if was and not self.paused and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- answers from the proxy itself ----------------------------------------

    def answer(self, ex: Exchange, status: int, error: str, message: str) -> None:
        """Respond on the proxy's own behalf (502 no route, 508 loop...), then close."""
        ex.local = True
        if self.current is not None and ex is not self.current:
            ex.pending = (status, error, message)  # pipelined: answer in order
            if ex not in self.queue:
                self.queue.append(ex)
            return
        ex.status = status
        ex.keep_alive = False
        _release(ex)
        self.write(error_response(status, message))
        stats = self.stats_of(ex)
        ms = (_perf() - ex.start) * 1000.0
        stats.observe_latency(status, ms)
        if ex.rstats is not None:
            ex.rstats.observe_latency(status, ms)
        self.finish_metrics(ex, status, error)
        if ex.tap is not None:
            ex.tap.response(status, [], int((_perf() - ex.start) * 1e6))
            ex.tap.end(duration_us=0, response_bytes=0, error=error, classification=FAILURE)
        self.rt.metrics.error(self.side.direction, error)
        self.current = None
        self.queue.clear()
        self.shut()

    def reject(self, status: int, error: str, message: str) -> None:
        """Refuse malformed input: answer (if nothing was sent yet) and close."""
        self.rt.connection_error(self.side.direction, error, peer=self.peer, detail=message)
        ex = self.current
        answered = ex is not None and ex.resp_started
        if ex is not None:
            # A request already on the wire (e.g. a bad chunk mid-body): the upstream
            # has half a request, so that connection must never be reused.
            if ex.up is not None:
                ex.up.abandon()
            if not answered and not ex.local:
                self.stats_of(ex).observe_latency(status, (_perf() - ex.start) * 1000.0)
                self.finish_metrics(ex, status, error)
            self.current = None
        self.queue.clear()
        if not answered and not self.transport.is_closing():
            self.write(error_response(status, message))
        self.shut()

    def stats_of(self, ex: Exchange) -> TrafficStats:
        """The exchange's counters; one still waiting for discovery counts as unrouted."""
        if ex.stats is None:
            ex.stats = self.rt.no_route_stats(ex.authority.decode("latin-1"))
            ex.stats.requests += 1
        return ex.stats

    def finish_metrics(self, ex: Exchange, status: int, error: str = "") -> None:
        _release(ex)
        cls = classify(status, None, error)
        self.stats_of(ex).response_ended(status, cls, None, error)
        _route_ended(ex, status, cls, error)

    def tap_request(self, ex: Exchange, headers: list[tuple[bytes, bytes]]) -> None:
        """Publish the request to tappers (only called while someone taps); the event
        is built only when a tapper takes it (filter and rate limit)."""
        ep = ex.ep
        hub = self.rt.tap
        direction = self.side.direction
        method = ex.method.decode("latin-1")
        authority = ex.authority.decode("latin-1")
        path = ex.path.decode("latin-1")
        dst_labels = ep.labels if ep else None
        subs = hub.admit(direction, method, "http", authority, path, dst_labels)
        if subs is None:
            return
        if self.inbound:
            tls = self.side.tls_value
        else:  # the hop tap describes is ours to the destination, mTLS when meshed
            tls = "true" if ep is not None and ep.identity and self.rt.credentials() else \
                "no_identity"
        ex.tap = hub.publish(
            subs, conn_id=self.conn_id, stream=self.requests - 1, direction=direction,
            src=self.peer, dst=ep.target_addr if ep else "", tls=tls, method=method,
            scheme="http", authority=authority, path=path,
            headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers],
            src_labels=self.side.caller, dst_labels=dst_labels)

    # -- upgrades: WebSocket and CONNECT -------------------------------------

    def upgraded(self, rest: bytes) -> None:
        ex = self.parsing
        if ex is None:  # upgrade on a request we answered ourselves
            self.shut()
            return
        self.parsing = None
        if ex.local:
            return
        if ex.method == b"CONNECT":
            self.connect_tunnel(ex, rest)
            return
        # WebSocket and friends: hold the rest until the upstream answers 101.
        if rest:
            if ex.held is None:
                ex.held = []
            ex.held.append(rest)
        self.pause(_P_HELD)

    def start_tunnel(self, ex: Exchange, up: Http1Upstream, rest: bytes) -> None:
        """101 Switching Protocols: from now on both sides are a byte pipe."""
        self.tunnel = up.transport
        self.tunnel_up = up
        up.tunnel_down = self
        if ex.held:
            for chunk in ex.held:
                up.tcp_write(chunk)
        ex.held = None
        if rest:
            self.write(rest)
        self.current = None
        self.resume(_P_HELD | _P_UPSTREAM)

    def connect_tunnel(self, ex: Exchange, rest: bytes) -> None:
        from .detect import Detect
        from .sides import FixedSide

        target = self.rt.resolver.resolve(ex.authority.decode("latin-1"))
        if target is None:
            self.answer(ex, 502, "no_route", f"no route to {ex.authority.decode('latin-1')}")
            return
        self.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        self.rt.connections.discard(self)
        inner = Detect(self.rt, lambda: FixedSide(self.rt, target, self.tcp), counted=True)
        self.transport.set_protocol(inner)
        inner.connection_made(self.transport)
        self.current = None
        if rest:
            inner.data_received(rest)


class Http1Upstream(_Buffered, asyncio.Protocol):
    """A connection to an endpoint; carries one exchange at a time, then pools."""

    def __init__(self, runtime: Runtime, ep: Endpoint) -> None:
        self.rt = runtime
        self.ep = ep
        self.tcp = ep.tcp
        self.pools: Pools = runtime.pools
        self.wbuf: list[bytes] = []
        self.transport = None
        self.parser = httptools.HttpResponseParser(self)
        self.ex: Exchange | None = None
        self.down: Http1Downstream | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_sent = False
        self.reused = False
        self.alive = False
        self.head_done = False
        self.uses = 0
        self.tunnel_down: Http1Downstream | None = None

    # -- pool ---------------------------------------------------------------

    def reusable(self) -> bool:
        return self.alive and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.shut()

    def abandon(self) -> None:
        """The client is gone: this connection is mid-exchange, never reuse it."""
        self.alive = False
        self.ex = None
        if self.transport is not None:
            self.transport.abort()

    # -- exchange -------------------------------------------------------------

    def begin(self, ex: Exchange) -> None:
        self.ex = ex
        self.down = ex.down
        ex.up = self
        self.uses += 1
        self.headers = []
        transport = self.transport
        assert transport is not None
        head = ex.head
        self.tcp.write_bytes += len(head)
        self.out(head)
        self.head_sent = True
        if ex.held is not None:
            ex.down.pending_sent(ex)
        elif ex.req_done and not ex.upgrade:
            self.request_complete(ex.req_chunked)

    def send_body(self, data: bytes, chunked: bool) -> None:
        if chunked:
            size = b"%x\r\n" % len(data)
            self.tcp.write_bytes += len(data) + len(size) + 2
            self.out(size)
            self.out(data)
            self.out(_CRLF)
        else:
            self.tcp.write_bytes += len(data)
            self.out(data)

    def request_complete(self, chunked: bool) -> None:
        if chunked:
            self.tcp.write_bytes += 5
            self.out(_CHUNK_END)

    def tcp_write(self, data: bytes) -> None:
        self.tcp.write_bytes += len(data)
        self.out(data)

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.alive = True
        self.tcp.connection_opened()

    def data_received(self, data: bytes) -> None:
        self.tcp.read_bytes += len(data)
        if self.tunnel_down is not None:
            self.tunnel_down.write(data)
            return
        if self.ex is None:
            # Bytes from an idle upstream: it broke the protocol; drop the connection.
            self.alive = False
            self.shut()
            return
        _BATCH.active = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self.upgraded(data[e.args[0]:])
        except httptools.HttpParserCallbackError:
            pass
        except httptools.HttpParserError as e:
            self.fail("bad_response", f"malformed response from {self.ep.target_addr}: {e}")
        else:
            if self.head_done:
                # HEAD (or a bodiless answer we ended early): start a fresh parser.
                self.head_done = False
                self.parser = httptools.HttpResponseParser(self)
                self.on_message_complete()
        _BATCH.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self.tcp.connection_closed(errno_name(exc))
        if self.tunnel_down is not None:
            self.tunnel_down.shut()
            return
        ex = self.ex
        if ex is None:
            self.rt.pools.forget(self.ep.addr, self)
            return
        if ex.resp_started and ex.close_delimited:
            self.on_message_complete()
            return
        self.fail("upstream_reset", f"connection to {self.ep.target_addr} closed "
                  "before the response completed")

    def pause_writing(self) -> None:
        if self.down is not None:
            self.down.pause(_P_UPSTREAM)
        elif self.tunnel_down is not None:
            self.tunnel_down.pause(_P_UPSTREAM)

    def resume_writing(self) -> None:
        if self.down is not None:
            self.down.resume(_P_UPSTREAM)
        elif self.tunnel_down is not None:
            self.tunnel_down.resume(_P_UPSTREAM)

    # -- httptools callbacks --------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        ex = self.ex
        down = self.down
        assert ex is not None and down is not None
        parser = self.parser
        status = parser.get_status_code()
        headers, self.headers = self.headers, []
        if status < 200 and status != 101:
            # Interim (100 Continue, 103 Early Hints): pass through as is.
            down.write(b"".join((_STATUS_LINE[status],
                                 *(b"%s: %s\r\n" % h for h in headers), _CRLF)))
            return
        now = _perf()
        if ex.rstats is not None:
            ex.failure = ex.route.failure(status) if ex.route is not None else None
            failed = ex.failure if ex.failure is not None else status >= 500
            if failed and ex.replay is not None and ex.route is not None and self.retry(
                    ex, status, (now - ex.start) * 1000.0):
                return
            if ex.timer is not None:
                ex.timer.cancel()
                ex.timer = None
        ex.status = status
        ex.resp_started = True
        ex.resp_headers_at = now
        ms = (now - ex.start) * 1000.0
        ex.stats.observe_latency(status, ms)  # type: ignore[union-attr]
        if ex.rstats is not None:
            ex.rstats.observe_latency(status, ms)
        if ex.inflight:
            self.ep.load.observe(ms, now)
        lines: list[bytes] = []
        chunked = False
        length = False
        for name, value in headers:
            lname = name.lower()
            if lname in HOP_BY_HOP:
                if lname == b"transfer-encoding":
                    chunked = True
                continue
            if lname == b"content-length":
                length = True
            lines += (name, _COLON, value, _CRLF)
        bodiless = ex.is_head or status in (204, 304) or status == 101
        if status == 101:
            lines.append(b"connection: upgrade\r\n")
            for name, value in headers:
                if name.lower() == b"upgrade":
                    lines += (b"upgrade: ", value, _CRLF)
        elif ex.http10:
            ex.keep_alive = False  # an HTTP/1.0 client reads to the close
            ex.close_delimited = not length and not bodiless
        elif chunked and not bodiless:
            ex.resp_chunked = True
            lines.append(b"transfer-encoding: chunked\r\n")
        elif not length and not bodiless:
            # Close-delimited body: re-frame it chunked so the client can keep alive.
            ex.close_delimited = True
            ex.resp_chunked = True
            lines.append(b"transfer-encoding: chunked\r\n")
        if not ex.keep_alive or down.closing:
            ex.keep_alive = False
            lines.append(b"connection: close\r\n")
        down.write(b"".join((_STATUS_LINE[status] if status < 1000 else
                             b"HTTP/1.1 %d \r\n" % status, *lines, _CRLF)))
        if ex.tap is not None:
            ex.tap.response(status, [(n.decode("latin-1"), v.decode("latin-1"))
                                     for n, v in headers], int((now - ex.start) * 1e6))
        if ex.is_head or status in (204, 304):
            self.head_done = ex.is_head

    def on_body(self, body: bytes) -> None:
        ex = self.ex
        if ex is None:
            return
        ex.resp_bytes += len(body)
        down = self.down
        assert down is not None
        if ex.resp_chunked:
            size = b"%x\r\n" % len(body)
            down.write(size)
            down.write(body)
            down.write(_CRLF)
        else:
            down.write(body)

    def on_message_complete(self) -> None:
        ex = self.ex
        if ex is None or not ex.resp_started:
            return  # end of an interim response
        if ex.status == 101:
            return  # the upgrade exception follows
        down = self.down
        assert down is not None
        if ex.resp_chunked:
            down.write(_CHUNK_END)
        self.ex = None
        self.down = None
        self.end_metrics(ex, "")
        # Connection is hop-by-hop: a client that closes its own connection after this
        # exchange (``Connection: close``, HTTP/1.0) says nothing about this one, which
        # goes back to the pool unless the server or a tried upgrade ends it.
        if (self.alive and ex.req_done and not ex.upgrade and not ex.close_delimited
                and self.parser.should_keep_alive()):
            self.pools.put(self.ep.addr, self)
        else:
            self.alive = False
            if self.transport is not None:
                self.shut()
        down.exchange_done(ex)

    def end_metrics(self, ex: Exchange, error: str) -> None:
        _release(ex)
        status = ex.status or 502
        failed = ex.failure if ex.failure is not None else status >= 500
        cls = FAILURE if error or failed else SUCCESS
        ex.stats.response_ended(status, cls, None, error)  # type: ignore[union-attr]
        _route_ended(ex, status, cls, error)
        if ex.tap is not None:
            ex.tap.end(duration_us=int((_perf() - ex.resp_headers_at) * 1e6),
                       response_bytes=ex.resp_bytes, error=error, classification=cls)

    # -- retries, failures and upgrades ------------------------------------------

    def retry(self, ex: Exchange, status: int, ms: float) -> bool:
        """A retryable route failed: send the request again elsewhere, within budget."""
        rstats, table = ex.rstats, ex.table
        assert rstats is not None and table is not None
        if ex.replay is None or not ex.req_done or ex.attempts >= MAX_ATTEMPTS:
            rstats.retry("not_replayable" if ex.replay is None else "max_attempts")
            return False
        if not table.budget.withdraw():
            rstats.retry("no_budget")
            return False
        rstats.retry("")
        down = self.down
        assert down is not None and ex.stats is not None
        # This attempt is over: count it where it happened, drop its connection.
        rstats.attempt_ended(status, FAILURE)
        ex.stats.observe_latency(status, ms)
        ex.stats.response_ended(status, FAILURE, None, "")
        _release(ex)
        self.ex = self.down = None
        self.alive = False
        if self.transport is not None:
            self.transport.abort()
        tried = ex.ep
        target = down.side.target(ex.authority.decode("latin-1"))
        ep = None
        for _ in range(4):  # never the endpoint that just failed, if there is another
            ep = target.pick() if target is not None else None
            if ep is not tried or target is None or len(target.endpoints) < 2:
                break
        if ep is None:
            return False
        ex.attempts += 1
        ex.ep, ex.stats, ex.up = ep, ep.stats, None
        ep.stats.requests += 1
        ex.held = list(ex.replay)
        down.dispatch(ex)
        return True

    # -- failures and upgrades -------------------------------------------------

    def fail(self, error: str, message: str) -> None:
        ex, down = self.ex, self.down
        self.ex = None
        self.down = None
        self.alive = False
        if self.transport is not None:
            self.transport.abort()
        if ex is None or down is None:
            return
        if ex.resp_started:
            # Headers are out: all we can do is cut the client's connection.
            self.end_metrics(ex, error)
            self.rt.connection_error(down.side.direction, error, target=self.ep.target_addr)
            down.current = None
            down.transport.abort()
            return
        if ex.retryable and ex.req_done and not ex.held and self.uses > 1:
            # A pooled connection closed under us before answering: try a fresh one.
            ex.retryable = False
            ex.up = None
            down.dispatch(ex)
            return
        self.rt.connection_error(down.side.direction, error, target=self.ep.target_addr)
        down.answer(ex, 502, error, message)

    def upgraded(self, rest: bytes) -> None:
        ex, down = self.ex, self.down
        self.ex = None
        self.down = None
        if ex is None or down is None:
            return
        _release(ex)
        ex.stats.response_ended(101, SUCCESS, None, "")  # type: ignore[union-attr]
        if ex.tap is not None:
            ex.tap.end(duration_us=0, response_bytes=0, classification=SUCCESS)
        down.start_tunnel(ex, self, rest)


def _drop_headers(lines: list[bytes], names: list[bytes]) -> list[bytes]:
    """Remove headers by (lowercase) name from a flat [name, ": ", value, CRLF, ...] list."""
    out: list[bytes] = []
    for i in range(0, len(lines), 4):
        if lines[i].lower() not in names:
            out += lines[i:i + 4]
    return out


def _route_ended(ex: Exchange, status: int, cls: str, error: str) -> None:
    """Effective (what the caller saw) and actual (this attempt) route counters."""
    rstats = ex.rstats
    if rstats is None:
        return
    if ex.timer is not None:
        ex.timer.cancel()
        ex.timer = None
    rstats.response_ended(status, cls, None, error)
    if error != "timeout":
        rstats.attempt_ended(status, cls)
