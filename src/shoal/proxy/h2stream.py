"""One forwarded HTTP/2 request stream: both directions, its metrics and its tap events.

An ``Exchange`` is created when a client's request headers arrive. It is recorded
exactly once, where the response ends or fails: ``requests`` at request headers,
``observe_latency`` at response headers, ``response_ended`` at the end, with the gRPC
status from the trailers (or from the headers of a trailers-only response).

On the client side a service profile's route adds two things, as on HTTP/1: a
timeout over the whole exchange (retries included), and, for ``isRetryable`` routes,
retries of attempts that failed before any response byte went to the client. A
retry replays the request's headers, body (kept while it is at most ``MAX_REPLAY``)
and trailers on a new upstream stream, so only requests the client has ended are
retried: a streaming call still sending when its answer comes is not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from h2.errors import ErrorCodes
from h2.exceptions import H2Error

from .classify import FAILURE, GRPC_FAILURES, GRPC_UNKNOWN, SUCCESS, classify
from .destination import Endpoint, Target
from .h2flow import Headers, Outbox
from .metrics import RouteStats, TrafficStats
from .routes import MAX_ATTEMPTS, MAX_REPLAY, RouteTable, retry_endpoint
from .tap import TapExchange

if TYPE_CHECKING:
    from shoal.profiles import Route

    from .h2pool import H2Upstream
    from .http2 import H2Downstream

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                        b"transfer-encoding", b"upgrade"})
GRPC_STATUS = b"grpc-status"
GRPC_DEADLINE_EXCEEDED = 4
TIMEOUT_TEXT = "request timed out (service profile route timeout)"


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


def grpc_status_of(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The ``grpc-status`` in ``headers`` (Unknown when unreadable), None when absent."""
    for name, value in headers:
        if name == GRPC_STATUS:
            try:
                return int(value)
            except ValueError:
                return GRPC_UNKNOWN
    return None


def is_grpc_request(headers: Headers) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return value.startswith(b"application/grpc")
    return False


def attempt_failed(route: Route | None, status: int, grpc: int | None) -> bool:
    """Does this response, as its headers tell, call for a retry? The route's
    response classes decide; else a 5xx or a failing gRPC status (trailers-only)."""
    failure = route.failure(status) if route is not None else None
    if failure is not None:
        return failure
    return status >= 500 or (grpc is not None and grpc in GRPC_FAILURES)


def _us(seconds: float) -> int:
    return int(seconds * 1_000_000)


class Exchange:
    """One request stream: routed, forwarded both ways, recorded once."""

    __slots__ = ("down", "sid", "ep", "stats", "headers", "up", "usid", "to_up", "to_down",
                 "t0", "t_rsp", "status", "grpc", "is_grpc", "rsp_bytes", "tap",
                 "recorded", "req_end", "rsp_end", "up_done", "down_done", "cancelled",
                 "attempts", "pending_rst", "tap_trailers", "loaded", "route", "rstats",
                 "timer", "table", "target", "replay", "replay_bytes")

    def __init__(self, down: H2Downstream, sid: int, headers: Headers) -> None:
        self.down = down
        self.sid = sid
        self.ep: Endpoint | None = None            # set once routed
        self.stats: TrafficStats | None = None     # set once routed
        self.loaded = False        # counted in its endpoint's in-flight load
        self.route: Route | None = None            # the service profile's matching route
        self.rstats: RouteStats | None = None
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
        # service profile route: its timeout, and for retries the request kept to replay
        self.timer: asyncio.TimerHandle | None = None
        self.table: RouteTable | None = None      # set only on retryable routes
        self.target: Target | None = None
        self.replay: list[bytes] | None = None
        self.replay_bytes = 0

    def bind_route(self, table: RouteTable, target: Target, method: bytes, path: bytes,
                   client_side: bool) -> None:
        """Count the request on its profile route; on the client side, arm the route's
        timeout and keep the request for its retries."""
        route, rstats = table.match(method, path)
        self.route, self.rstats = route, rstats
        rstats.requests += 1
        rstats.actual_requests += 1
        if not client_side:
            return  # the server side counts and classifies; timeouts and retries are the client's
        table.budget.deposit()
        if route is None:
            return
        if route.timeout:
            self.timer = asyncio.get_running_loop().call_later(route.timeout, self.timed_out)
        if route.is_retryable:
            self.table, self.target = table, target
            box = self.to_up  # what arrived while discovery answered
            self.replay_bytes = box.size
            self.replay = list(box.chunks) if box.size <= MAX_REPLAY else None

    # -- upstream events --------------------------------------------------

    def attached(self, up: H2Upstream, usid: int) -> None:
        self.up = up
        self.usid = usid
        self.to_up.dst = up
        self.to_up.sid = usid
        self.to_down.src = up
        self.to_down.src_sid = usid

    def on_response(self, headers: Headers, informational: bool, ended: bool) -> None:
        down = self.down
        if informational:
            try:
                down.conn.send_headers(self.sid, forwarded(headers))
            except H2Error:
                return
            down.mark()
            return
        status = 0
        grpc = False
        grpc_status = None
        fwd = []
        for name, value in headers:  # one pass: what we count, and what we forward
            if name == b":status":
                status = int(value)
            elif name == b"content-type":
                grpc = value.startswith(b"application/grpc")
            elif name == GRPC_STATUS:  # a trailers-only response
                grpc_status = grpc_status_of([(name, value)])
            elif name in HOP_BY_HOP or (name == b"te" and value.strip().lower() != b"trailers"):
                continue
            fwd.append((name, value))
        if (self.table is not None and attempt_failed(self.route, status, grpc_status)
                and self.retry_route(status, grpc_status, "")):
            return
        timer = self.timer
        if timer is not None:  # the route's timeout waits for a response, as on HTTP/1:
            self.timer = None  # a long gRPC stream that answered is not cut
            timer.cancel()
        if grpc_status is not None:
            self.grpc = grpc_status
        self.status = status
        self.is_grpc = grpc
        now = time.monotonic()
        self.t_rsp = now
        ms = (now - self.t0) * 1000.0
        if self.stats is not None:
            self.stats.observe_latency(status, ms)
        if self.rstats is not None:
            self.rstats.observe_latency(status, ms)
        if self.loaded and self.ep is not None:
            self.ep.load.observe(ms, now)
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
            if (not self.status and self.table is not None
                    and self.retry_route(0, None, "stream_reset")):
                return
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
            # the response is complete; a request still open can no longer be delivered
            if not self.req_end:
                if self.to_down.ended:
                    self.reset_down(ErrorCodes.CANCEL)
                else:
                    self.pending_rst = ErrorCodes.CANCEL
            return
        if self.status == 0:
            if self.table is not None and self.retry_route(0, None, error):
                return
            self.respond_error(502, error, f"{error.replace('_', ' ')} to {self.target_addr()}")
        else:
            self.record(error)
            self.reset_down(ErrorCodes.INTERNAL_ERROR)

    def retry_route(self, status: int, grpc: int | None, error: str) -> bool:
        """This attempt failed on a retryable route, before any response byte went to
        the client: send the request again (to another endpoint when the target has
        one), within the route's budget. False: the client gets this attempt's answer.

        Skipped retries are counted by reason, as on HTTP/1.
        """
        rstats, table = self.rstats, self.table
        assert rstats is not None and table is not None
        if self.cancelled:
            return False  # the client is gone, or the route's timeout answered it
        if self.replay is None or not self.req_end:
            rstats.retry("not_replayable")
            return False
        if self.attempts >= MAX_ATTEMPTS:
            rstats.retry("max_attempts")
            return False
        if not table.budget.withdraw():
            rstats.retry("no_budget")
            return False
        rstats.retry("")
        # This attempt is over: count it where it happened, let its stream go.
        code = status or 502
        rstats.attempt_ended(code, FAILURE)
        stats = self.stats
        if stats is not None:
            if status:
                stats.observe_latency(status, (time.monotonic() - self.t0) * 1000.0)
            stats.response_ended(code, FAILURE, grpc, error)
        self.unload()
        up = self.up
        if up is not None and not self.up_done:
            up.reset(self.usid, ErrorCodes.CANCEL)
            up.release(self.usid)
        self.to_up.discard()
        # The next attempt replays the kept request; the client has ended it and every
        # byte of it was acknowledged already, so this outbox acknowledges nothing.
        box = Outbox(self)
        box.chunks.extend(self.replay)
        box.size = self.replay_bytes
        box.trailers = self.to_up.trailers
        box.end = True
        self.to_up = box
        self.to_down.src = None
        self.up = None
        self.usid = 0
        self.up_done = False
        self.attempts += 1
        assert self.ep is not None
        ep = self.ep = retry_endpoint(self.target, self.ep)
        self.stats = ep.stats
        ep.stats.requests += 1
        ep.load.inflight += 1
        self.loaded = True
        rstats.actual_requests += 1
        self.down.pool.dispatch(self)
        return True

    def timed_out(self) -> None:
        """The route's timeout passed before the response ended: cancel the upstream
        stream and answer 504 (gRPC: DEADLINE_EXCEEDED), or reset the client's stream
        if the response headers already went out."""
        self.timer = None
        if self.recorded or self.cancelled:
            return
        down = self.down
        down.runtime.connection_error(down.side.direction, "timeout",
                                      route=self.route.name if self.route else "")
        self.cancelled = True  # an attempt still waiting for its connection is not sent
        self.to_up.discard()
        up = self.up
        if up is not None and not self.up_done:
            self.up_done = True
            up.reset(self.usid, ErrorCodes.CANCEL)
            up.release(self.usid)
        if self.status:
            self.record("timeout")
            self.reset_down(ErrorCodes.CANCEL)
        elif is_grpc_request(self.headers):
            self.respond_error(200, "timeout", TIMEOUT_TEXT, GRPC_DEADLINE_EXCEEDED)
        else:
            self.respond_error(504, "timeout", TIMEOUT_TEXT)
        down.hub.flush()

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
        replay = self.replay
        if replay is not None:  # a retryable route: keep the body while it is small
            self.replay_bytes += len(data)
            if self.replay_bytes > MAX_REPLAY:
                self.replay = None  # too large to replay: never retried
            else:
                replay.append(data)
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
        timer = self.timer
        if timer is not None:
            self.timer = None
            timer.cancel()
        self.down.streams.pop(self.sid, None)
        self.to_down.discard()
        if self.status and not self.recorded:
            self.record("stream_reset")
        self.unload()  # the client gave up before an answer: no response to count
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

    def target_addr(self) -> str:
        return self.ep.target_addr if self.ep is not None else ""

    def respond_error(self, status: int, error: str, text: str,
                      grpc_status: int | None = None) -> None:
        """Answer the client ourselves (no response came from upstream): ``text`` as a
        plain body, or with ``grpc_status`` a gRPC trailers-only answer carrying it."""
        self.status = status
        now = time.monotonic()
        self.t_rsp = now
        ms = (now - self.t0) * 1000.0
        if self.ep is not None and self.stats is not None:
            self.stats.observe_latency(status, ms)
        if self.rstats is not None:
            self.rstats.observe_latency(status, ms)
        if grpc_status is None:
            body = text.encode()
            headers = [(b":status", str(status).encode()),
                       (b"content-type", b"text/plain; charset=utf-8"),
                       (b"content-length", str(len(body)).encode())]
        else:
            self.is_grpc = True
            self.grpc = grpc_status
            body = b""
            headers = [(b":status", str(status).encode()),
                       (b"content-type", b"application/grpc"),
                       (b"grpc-status", str(grpc_status).encode()),
                       (b"grpc-message", text.encode("ascii", "replace"))]
        if self.tap is not None:
            self.tap.response(status, text_headers(headers), _us(now - self.t0))
        self.rsp_bytes = len(body)
        self.rsp_end = True
        self.to_up.discard()
        self.record(error)
        if self.down_done:
            return
        try:
            self.down.conn.send_headers(self.sid, headers, end_stream=not body)
        except H2Error:
            return
        self.down.mark()
        box = self.to_down
        box.src = None
        if not body:
            box.ended = True
            self.outbox_ended(box)
            return
        box.push(body)
        box.end = True
        box.flush()

    def unload(self) -> None:
        """The exchange no longer loads its endpoint (for the balancer)."""
        if self.loaded and self.ep is not None:
            self.loaded = False
            self.ep.load.inflight -= 1

    def record(self, error: str) -> None:
        if self.recorded:
            return
        self.recorded = True
        timer = self.timer
        if timer is not None:
            self.timer = None
            timer.cancel()
        self.unload()
        grpc = self.grpc
        if grpc is None and self.is_grpc and not error:
            grpc = GRPC_UNKNOWN
        status = self.status or 502
        failure = self.route.failure(status) if self.route is not None else None
        if failure is None:
            cls = classify(status, grpc, error)
        else:  # the profile's responseClasses decide
            cls = FAILURE if error or failure else SUCCESS
        if self.stats is not None:
            self.stats.response_ended(status, cls, grpc, error)
        rstats = self.rstats
        if rstats is not None:
            rstats.response_ended(status, cls, grpc, error)
            if error != "timeout":  # a cancelled attempt had no actual response
                rstats.attempt_ended(status, cls)
        tap = self.tap
        if tap is not None:
            now = time.monotonic()
            tap.end(duration_us=_us(now - self.t_rsp) if self.t_rsp else 0,
                    response_bytes=self.rsp_bytes, grpc_status=grpc, error=error,
                    classification=cls, trailers=self.tap_trailers)
