"""An open-loop HTTP/1.1 load generator that is free of coordinated omission.

Theory of operation: the request rate is split over N keep-alive connections, each
with its own fixed schedule (connection i sends at t0 + i/rate + k·N/rate), as wrk2
does. The schedule never waits for the target: when a response is late, the next
request on that connection goes out as soon as the connection is free, and every
latency is measured from the request's *scheduled* time, so a stall shows up in the
percentiles instead of silently lowering the rate.

Why plain sockets and select() rather than an event loop: libuv and asyncio timers
have millisecond resolution, which at 1000 requests/s would add up to a millisecond
of jitter to every send. select() takes a microsecond timeout, and the harness
lowers the timer slack, so sends leave within tens of microseconds of their slot.
The client also reports its own send lag so a reader can see that it kept up.

Run as ``python -m bench.openloop --port 8080 --rate 1000 --duration 15``; prints one
JSON object.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import select
import socket
import sys
import time

import httptools

from bench.stats import summarise

HOST = "backend.bench"


def request(host: str = HOST) -> bytes:
    """The one request every connection sends; ``host`` picks the service behind an
    outbound listener, which routes origin-form requests by Host."""
    return f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: shoal-bench\r\n\r\n".encode()


class Conn:
    """One keep-alive connection with its own send schedule."""

    def __init__(self, port: int, first: float, interval: float) -> None:
        self.port = port
        self.next_send = first
        self.interval = interval
        self.busy = False
        self.scheduled = 0.0
        self.sent_at = 0.0
        self.done = False
        self.status = 0
        self.connect()

    def connect(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.parser = httptools.HttpResponseParser(self)
        self.busy = False
        self.free_at = time.perf_counter()

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        self.done = True

    def fileno(self) -> int:
        return self.sock.fileno()


def _lower_timer_slack() -> None:
    """Ask for 1 µs timer slack (default 50 µs) so select() wakes on time."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        pass


def run(port: int, rate: float, duration: float, warmup: float, connections: int,
        drain: float = 2.0, host: str = HOST, timeline: bool = False) -> dict:
    _lower_timer_slack()
    req = request(host)
    interval = connections / rate
    t0 = time.perf_counter() + 0.05
    conns = [Conn(port, t0 + i / rate, interval) for i in range(connections)]
    measure_from = t0 + warmup
    stop_at = measure_from + duration
    latency: list[float] = []  # µs from scheduled send to full response
    scheduled: list[float] = []  # each one's scheduled send (``timeline``)
    service: list[float] = []  # µs from actual send to full response
    # µs from scheduled to actual send, when the connection was free in time: the
    # client's own punctuality (waiting for a busy connection is the target's doing).
    lag: list[float] = []
    sent = errors = reconnects = 0
    perf = time.perf_counter

    while True:
        now = perf()
        wait = 0.05
        for c in conns:
            if c.busy:
                continue
            if c.next_send >= stop_at:
                continue
            if c.next_send <= now:
                c.scheduled, c.sent_at = c.next_send, now
                c.next_send += c.interval
                c.done = False
                try:
                    c.sock.send(req)
                except OSError:
                    errors += 1
                    reconnects += 1
                    c.sock.close()
                    c.connect()
                    continue
                c.busy = True
                sent += 1
            else:
                wait = min(wait, c.next_send - now)
        busy = [c for c in conns if c.busy]
        if not busy and all(c.next_send >= stop_at for c in conns):
            break
        if now > stop_at + drain:
            break
        if busy:
            ready = select.select(busy, (), (), max(wait, 0.0))[0]
        else:
            time.sleep(max(wait, 0.0))
            ready = []
        for c in ready:
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            done_at = perf()
            if not data:
                errors += 1
                reconnects += 1
                c.sock.close()
                c.connect()
                continue
            try:
                c.parser.feed_data(data)
            except httptools.HttpParserError:
                errors += 1
                reconnects += 1
                c.sock.close()
                c.connect()
                continue
            if c.done:
                c.busy = False
                if c.status != 200:
                    errors += 1
                elif c.scheduled >= measure_from:
                    latency.append((done_at - c.scheduled) * 1e6)
                    scheduled.append(c.scheduled)
                    service.append((done_at - c.sent_at) * 1e6)
                    if c.free_at <= c.scheduled:
                        lag.append((c.sent_at - c.scheduled) * 1e6)
                c.free_at = done_at

    # Requests still in flight, and requests whose slot came but whose connection never
    # freed up, count with the latency they had reached by now: dropping them would be
    # the very coordinated omission this client exists to avoid.
    end = perf()
    timeouts = unsent = 0
    for c in conns:
        if c.busy:
            timeouts += 1
            if c.scheduled >= measure_from:
                latency.append((end - c.scheduled) * 1e6)
                scheduled.append(c.scheduled)
        slot = c.next_send
        while slot < stop_at:
            unsent += 1
            if slot >= measure_from:
                latency.append((end - slot) * 1e6)
                scheduled.append(slot)
            slot += c.interval
        c.sock.close()
    out = {
        "rate": rate, "duration_s": duration, "connections": connections,
        "sent": sent, "measured": len(latency), "errors": errors, "timeouts": timeouts,
        "unsent": unsent, "reconnects": reconnects, "achieved_rps": len(service) / duration,
        "latency_us": summarise(latency), "service_us": summarise(service),
        "send_lag_us": summarise(lag),
    }
    if timeline:
        # every measured request as (scheduled send on CLOCK_MONOTONIC, latency µs),
        # so the caller can set them against what the machine did meanwhile
        out["timeline"] = [[round(t, 6), round(v, 1)]
                           for t, v in zip(scheduled, latency, strict=True)]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    ap.add_argument("--duration", type=float, default=15.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    ap.add_argument("--connections", type=int, default=10)
    ap.add_argument("--host", default=HOST, help="Host header of every request")
    ap.add_argument("--timeline", action="store_true",
                    help="also list every request's scheduled send time and latency")
    args = ap.parse_args(argv)
    result = run(args.port, args.rate, args.duration, args.warmup, args.connections,
                 host=args.host, timeline=args.timeline)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
