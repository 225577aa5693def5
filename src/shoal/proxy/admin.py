"""The admin and tap listeners: small HTTP/1.1 servers (h11), off the hot path.

Admin: ``GET /metrics`` (Prometheus text), ``GET /latency`` (bounded-error sketches,
JSON), ``GET /ready``, ``GET /live``, ``POST /shutdown`` (loopback only).
Tap: ``POST /tap`` with a JSON body ``{"filter": {...}, "max_rps": 100,
"headers": true, "reveal": false, "failures": false, "since": 0}`` streams one JSON
event per line until the client goes away: first ``{"type": "started",
"recorder_bytes": N}``, then events (``since`` seconds replayed from the flight
recorder first), and a ``{"type": "stats", "dropped": N, "limited": M}`` line every
second (``limited``: the part of ``dropped`` that was over ``max_rps``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import h11

from .runtime import Runtime
from .tap import TapFilter, TapFilterError
from .taplistener import refusal

log = logging.getLogger("shoal.proxy.admin")

MAX_BODY = 64 * 1024
READ_TIMEOUT = 10.0
#: seconds between a tap stream's ``stats`` lines
STATS_EVERY = 1.0
#: seconds (on average) a tap stream waits after an event for more, to write them
#: together (a person reading a tap does not see 0.1 s; the data path sees every write)
TAP_LINGER = 0.1
#: most events a tap stream encodes and writes in one go (about a millisecond)
TAP_BATCH = 64


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    stream: AsyncIterator[bytes] | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: called when a streaming reply's client goes away (the stream should end soon);
    #: without it the handler's task is cancelled
    on_gone: Callable[[], None] | None = None


@dataclass
class Request:
    method: str
    path: str
    query: str
    body: bytes
    peer: str
    loopback: bool
    tls: bool = False
    #: the verified identity of a TLS client's certificate ("" without one)
    client_id: str = ""


Handler = Callable[[Request], Awaitable[Reply]]


def is_loopback(host: str) -> bool:
    """127.0.0.0/8 or ::1, also as an IPv4-mapped peer of a dual-stack listener.

    >>> is_loopback("127.0.0.1"), is_loopback("::ffff:127.0.0.1"), is_loopback("10.0.0.1")
    (True, True, False)
    """
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


class HttpServer:
    """A minimal, strict HTTP/1.1 server for a fixed set of routes."""

    def __init__(self, routes: dict[tuple[str, str], Handler]) -> None:
        self.routes = routes
        self.clients: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.clients.add(task)
        peer = writer.get_extra_info("peername") or ("", 0)
        tls = writer.get_extra_info("ssl_object")
        client_id = ""
        if tls is not None:
            from .identity import peer_identity

            client_id = peer_identity(tls.getpeercert())
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
        try:
            while True:
                req = await self._read_request(conn, reader, peer[0])
                if req is None:
                    break
                req.tls, req.client_id = tls is not None, client_id
                keep = await self._respond(conn, reader, writer, req)
                if not keep or conn.our_state is not h11.DONE:
                    break
                conn.start_next_cycle()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except h11.RemoteProtocolError as e:
            await self._send_error(conn, writer, e.error_status_hint, str(e))
        except TimeoutError:
            await self._send_error(conn, writer, 408, "request timed out")
        finally:
            self.clients.discard(task)
            writer.close()

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader,
                            peer: str) -> Request | None:
        target = method = ""
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(reader.read(65536), READ_TIMEOUT)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed):
                return None
            if isinstance(event, h11.Request):
                method = event.method.decode()
                target = event.target.decode("latin-1")
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise h11.RemoteProtocolError("request body too large", error_status_hint=413)
            elif isinstance(event, h11.EndOfMessage):
                path, _, query = target.partition("?")
                return Request(method, path, query, bytes(body), peer, is_loopback(peer))

    async def _respond(self, conn: h11.Connection, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter, req: Request) -> bool:
        handler = self.routes.get((req.method, req.path))
        if handler is None:
            allowed = [m for (m, p) in self.routes if p == req.path]
            reply = (Reply(405, b"method not allowed\n") if allowed
                     else Reply(404, b"not found\n"))
        else:
            try:
                reply = await handler(req)
            except Exception:  # a bug must not kill the listener
                log.exception("admin handler failed path=%s", req.path)
                reply = Reply(500, b"internal error\n")
        headers = [("content-type", reply.content_type), *reply.headers]
        if reply.stream is None:
            headers.append(("content-length", str(len(reply.body))))
            writer.write(conn.send(h11.Response(status_code=reply.status, headers=headers)))
            writer.write(conn.send(h11.Data(data=reply.body)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
            return True
        headers.append(("transfer-encoding", "chunked"))
        writer.write(conn.send(h11.Response(status_code=reply.status, headers=headers)))
        await writer.drain()
        # A stream ends as soon as its client goes away, not at the next failed write:
        # a tap released late would keep costing the data path.
        gone = asyncio.ensure_future(reader.read(1))
        task = asyncio.current_task()

        def client_gone(_: asyncio.Future[bytes]) -> None:
            if gone.cancelled():
                return
            if reply.on_gone is not None:
                reply.on_gone()
            elif task is not None:
                task.cancel()

        gone.add_done_callback(client_gone)
        try:
            async for chunk in reply.stream:
                writer.write(conn.send(h11.Data(data=chunk)))
                await writer.drain()
        finally:
            gone.remove_done_callback(client_gone)
            gone.cancel()
            aclose = getattr(reply.stream, "aclose", None)
            if aclose is not None:
                await aclose()
        if gone.done() and not gone.cancelled():
            return False
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
        return False

    async def _send_error(self, conn: h11.Connection, writer: asyncio.StreamWriter,
                          status: int, message: str) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = (message + "\n").encode()
        try:
            writer.write(conn.send(h11.Response(status_code=status, headers=[
                ("content-type", "text/plain"), ("content-length", str(len(body))),
                ("connection", "close")])))
            writer.write(conn.send(h11.Data(data=body)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
        except (ConnectionError, h11.LocalProtocolError):
            pass

    def close_clients(self) -> None:
        for task in list(self.clients):
            task.cancel()


def admin_routes(rt: Runtime, shutdown: Callable[[], None]) -> dict[tuple[str, str], Handler]:
    # Formatting a busy proxy's exposition takes tens of milliseconds (prometheus_client
    # validates and escapes every label of every sample). In a worker thread the event
    # loop gets the GIL back every switch interval instead of stalling every request
    # for the whole scrape; the collectors read snapshots (list(dict.items()) is atomic).
    async def metrics(req: Request) -> Reply:
        body = await asyncio.get_running_loop().run_in_executor(None, rt.metrics.exposition)
        return Reply(200, body, "text/plain; version=0.0.4; charset=utf-8")

    async def latency(req: Request) -> Reply:
        body = await asyncio.get_running_loop().run_in_executor(
            None, lambda: json.dumps(rt.metrics.latency_json()).encode())
        return Reply(200, body, "application/json")

    async def ready(req: Request) -> Reply:
        if rt.ready.is_set() and not rt.draining:
            return Reply(200, b"ready\n")
        return Reply(503, b"not ready\n")

    async def live(req: Request) -> Reply:
        return Reply(200, b"live\n")

    async def stop(req: Request) -> Reply:
        if not req.loopback:
            return Reply(403, b"shutdown is only accepted from loopback\n")
        asyncio.get_running_loop().call_soon(shutdown)
        return Reply(202, b"shutting down\n")

    return {("GET", "/metrics"): metrics, ("GET", "/latency"): latency,
            ("GET", "/ready"): ready, ("GET", "/live"): live, ("POST", "/shutdown"): stop}


def tap_routes(rt: Runtime) -> dict[tuple[str, str], Handler]:
    async def tap(req: Request) -> Reply:
        refused = refusal(req.loopback, req.tls, req.client_id, rt.config.tap_client_id)
        if refused:
            rt.connection_error("tap", refused, peer=req.peer, client_id=req.client_id)
            why = REFUSALS[refused] + (f" (not {req.client_id})" if req.client_id else "")
            return Reply(403, why.encode() + b"\n")
        try:
            spec = json.loads(req.body or b"{}")
            if not isinstance(spec, dict):
                raise ValueError("tap request must be a JSON object")
            unknown = set(spec) - TAP_FIELDS
            if unknown:
                raise ValueError(f"unknown tap request field: {sorted(unknown)[0]}")
            flt = TapFilter.parse(spec.get("filter") or {})
            max_rps = float(spec.get("max_rps", 100))
            if not 0 <= max_rps <= 100_000:
                raise ValueError("max_rps must be between 0 and 100000")
            since = float(spec.get("since", 0))
            if not 0 <= since <= 86_400:
                raise ValueError("since must be between 0 and 86400 seconds")
        except (ValueError, TypeError, TapFilterError) as e:
            return Reply(400, f"invalid tap request: {e}\n".encode())
        if len(rt.tap.subs) >= rt.config.tap_max_subscribers:
            return Reply(503, b"too many tap subscribers\n")
        sub = rt.tap.subscribe(flt, max_rps=max_rps, headers=bool(spec.get("headers", True)),
                               reveal=bool(spec.get("reveal", False)),
                               failures=bool(spec.get("failures", False)), since=since)
        recorder = rt.tap.recorder
        started = {"type": "started",
                   "recorder_bytes": recorder.max_bytes if recorder is not None else 0}

        async def events() -> AsyncIterator[bytes]:
            loop = asyncio.get_running_loop()
            timer: asyncio.TimerHandle | None = None
            try:
                yield json.dumps(started).encode() + b"\n"
                next_stats = loop.time() + STATS_EVERY
                while not sub.closed and not rt.stopping.is_set():
                    if not sub.events:
                        # until an event, the next stats line, or the reader leaves;
                        # a timer, not wait_for: no task per wait
                        timer = loop.call_at(next_stats, sub.wake.set)
                        await sub.wake.wait()
                        timer.cancel()
                        if sub.events and TAP_LINGER > 0:
                            # let a batch gather: one write per reader every TAP_LINGER
                            # seconds or so rather than one per event, however busy the
                            # proxy. Readers woken by the same event flush at spread-out
                            # times, so requests never wait for all of them at once.
                            await asyncio.sleep(TAP_LINGER * (0.5 + random.random()))
                    else:  # a backlog, written in bounded batches with requests between
                        await asyncio.sleep(0)
                    if sub.closed:
                        break
                    out = sub.drain_lines(TAP_BATCH)
                    if loop.time() >= next_stats:
                        next_stats = loop.time() + STATS_EVERY
                        out += json.dumps({"type": "stats", "dropped": sub.dropped,
                                           "limited": sub.limited}).encode() + b"\n"
                    if out:
                        yield out
            finally:
                if timer is not None:
                    timer.cancel()
                rt.tap.unsubscribe(sub)

        return Reply(200, content_type="application/x-ndjson", stream=events(),
                     on_gone=sub.close)

    return {("POST", "/tap"): tap}


REFUSALS = {
    "plaintext_refused": "tap is only accepted from loopback, or over mTLS from the "
                         "control plane",
    "client_cert_missing": "tap over TLS needs the control plane's client certificate",
    "client_identity_refused": "tap is only accepted from the control plane's identity",
}

#: fields of a ``POST /tap`` body
TAP_FIELDS = frozenset({"filter", "max_rps", "headers", "reveal", "failures", "since"})
