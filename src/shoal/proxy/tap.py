"""Tap: live request events for whoever subscribes, headers only, never bodies.

The data path asks ``hub.active`` once per request; only when someone taps (or the
flight recorder is on) does it build an event. Each subscription has a filter, a rate
limit and a bounded queue: a slow reader gets drops (counted), never back-pressure on
requests. Secret headers are replaced by ``<redacted>`` here, before an event leaves
the proxy, unless the subscription was granted ``reveal``.

The flight recorder (off by default, ``--tap-record-bytes N``) keeps the most recent
events in a ring capped at N bytes, so a tap started now can replay what happened
just before (``since``). It only ever holds redacted headers: a secret is never
kept in memory longer than the request that carried it.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

REDACTED = "<redacted>"
DEFAULT_REDACT = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
#: requests whose ``req``/``rsp`` a failures-only subscription holds back at most
MAX_HELD = 10_000

Headers = Sequence[tuple[str, str]]
Event = dict[str, object]


class TapFilterError(ValueError):
    """A tap filter that cannot be used (bad regex, unknown direction...)."""


@dataclass(frozen=True)
class TapFilter:
    """What a subscriber wants to see; empty fields match everything.

    ``dst_labels`` must all be present with these values in the event's destination
    labels (``{"dst_deployment": "voting"}``): that is how ``tap --to`` is filtered
    here, before the rate limit spends a token on a request nobody asked for.
    """

    direction: str = ""          # "inbound" | "outbound" | ""
    method: str = ""
    path_prefix: str = ""
    authority: str = ""          # exact
    scheme: str = ""
    path_regex: str = ""
    dst_labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, data: Mapping[str, object]) -> TapFilter:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise TapFilterError(f"unknown tap filter field: {sorted(unknown)[0]}")
        fields: dict[str, object] = {}
        for k, v in data.items():
            if k == "dst_labels":
                if not isinstance(v, Mapping) or not all(
                        isinstance(a, str) and isinstance(b, str) for a, b in v.items()):
                    raise TapFilterError("tap filter field dst_labels must map strings "
                                         "to strings")
                fields[k] = tuple(sorted(v.items()))
            elif not isinstance(v, str):
                raise TapFilterError(f"tap filter field {k} must be a string")
            else:
                fields[k] = v
        flt = cls(**fields)  # type: ignore[arg-type]
        if flt.direction not in ("", "inbound", "outbound"):
            raise TapFilterError("direction must be inbound or outbound")
        if flt.path_regex:
            try:
                re.compile(flt.path_regex)
            except re.error as e:
                raise TapFilterError(f"invalid path regex: {e}") from None
        return flt

    def matches(self, direction: str, method: str, scheme: str, authority: str,
                path: str, dst_labels: Mapping[str, str] | None = None) -> bool:
        if self.direction and self.direction != direction:
            return False
        if self.method and self.method.upper() != method:
            return False
        if self.path_prefix and not path.startswith(self.path_prefix):
            return False
        if self.authority and self.authority != authority:
            return False
        if self.scheme and self.scheme.lower() != scheme:
            return False
        if self.path_regex and not re.match(self.path_regex, path):
            return False
        if self.dst_labels:
            labels = dst_labels or {}
            if any(labels.get(k) != v for k, v in self.dst_labels):
                return False
        return True

    def matches_event(self, ev: Mapping[str, object]) -> bool:
        dst = ev.get("dst_labels")
        return self.matches(str(ev.get("direction", "")), str(ev.get("method", "")),
                            str(ev.get("scheme", "")), str(ev.get("authority", "")),
                            str(ev.get("path", "")),
                            dst if isinstance(dst, Mapping) else None)


class TapSubscription:
    """One tapper: a filter, a token bucket, a bounded queue of events.

    ``failures``: only requests classified as failures. That is known at ``end``, so
    the ``req`` and ``rsp`` events of each request are held back until then and
    delivered together with the ``end`` (or forgotten when it succeeded).
    """

    def __init__(self, flt: TapFilter, max_rps: float, headers: bool, reveal: bool,
                 queue_max: int, failures: bool = False) -> None:
        self.filter = flt
        self.max_rps = max_rps
        self.headers = headers
        self.reveal = reveal
        self.failures = failures
        self.held: OrderedDict[object, list[Event]] = OrderedDict()
        self.events: deque[Event] = deque()
        self.queue_max = queue_max
        self.dropped = 0
        self.wake = asyncio.Event()
        self._tokens = max_rps
        self._refilled = time.monotonic()
        self.closed = False

    def admit(self) -> bool:
        """Take a token for a new request (the rate limit counts requests, not events)."""
        if self.max_rps <= 0:
            return True
        now = time.monotonic()
        self._tokens = min(self.max_rps, self._tokens + (now - self._refilled) * self.max_rps)
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.dropped += 1
        return False

    def push(self, event: Event) -> None:
        if self.failures:
            key = event.get("id")
            if event.get("type") != "end":
                held = self.held.get(key)
                if held is None:
                    if len(self.held) >= MAX_HELD:
                        self.held.popitem(last=False)
                        self.dropped += 1
                    held = self.held[key] = []
                held.append(event)
                return
            earlier = self.held.pop(key, [])
            if event.get("classification") != "failure":
                return
            for e in earlier:
                self._enqueue(e)
        self._enqueue(event)

    def _enqueue(self, event: Event) -> None:
        if len(self.events) >= self.queue_max:
            self.dropped += 1
            return
        self.events.append(event)
        self.wake.set()

    def drain(self) -> list[Event]:
        out = list(self.events)
        self.events.clear()
        self.wake.clear()
        return out


def redact(headers: Iterable[tuple[str, str]], deny: frozenset[str]) -> list[list[str]]:
    return [[n, REDACTED if n.lower() in deny else v] for n, v in headers]


def event_size(ev: Mapping[str, object]) -> int:
    """A cheap estimate of an event's memory (bytes): fixed overhead plus its strings."""
    size = 400
    for k in ("path", "authority", "src", "dst"):
        v = ev.get(k)
        if isinstance(v, str):
            size += len(v)
    headers = ev.get("headers")
    if isinstance(headers, list):
        size += sum(80 + len(n) + len(v) for n, v in headers)
    return size


class FlightRecorder:
    """The most recent events, oldest dropped first, capped at ``max_bytes``.

    >>> r = FlightRecorder(1000)
    >>> for i in range(5):
    ...     r.add({"type": "req", "ts": float(i)})
    >>> [e["ts"] for e in r.since(0.0)]
    [3.0, 4.0]
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.ring: deque[tuple[int, Event]] = deque()
        self.bytes = 0

    def add(self, ev: Event) -> None:
        size = event_size(ev)
        self.ring.append((size, ev))
        self.bytes += size
        while self.bytes > self.max_bytes and self.ring:
            self.bytes -= self.ring.popleft()[0]

    def since(self, ts: float) -> list[Event]:
        """Recorded events with ``ts`` at or after the given wall-clock time."""
        out = []
        for _, ev in reversed(self.ring):
            t = ev.get("ts")
            if isinstance(t, float) and t < ts:
                break
            out.append(ev)
        out.reverse()
        return out


class TapExchange:
    """The subscriptions that saw a request's ``req`` event get its ``rsp`` and ``end``;
    the flight recorder, when on, keeps all three."""

    __slots__ = ("hub", "subs", "base", "started")

    def __init__(self, hub: TapHub, subs: list[TapSubscription], base: Event):
        self.hub = hub
        self.subs = subs
        self.base = base
        self.started = time.monotonic()

    def _emit(self, kind: str, fields: Event, headers: Headers | None) -> None:
        ev = dict(self.base, type=kind, ts=time.time(), **fields)
        redacted = None
        if headers is not None:
            redacted = redact(headers, self.hub.deny)
        for s in self.subs:
            if s.headers and headers is not None:
                s.push(dict(ev, headers=[[n, v] for n, v in headers] if s.reveal
                            else redacted))
            else:
                s.push(ev)
        recorder = self.hub.recorder
        if recorder is not None:
            recorder.add(ev if redacted is None else dict(ev, headers=redacted))

    def response(self, status: int, headers: Headers | None, latency_us: int) -> None:
        self._emit("rsp", {"status": status, "latency_us": latency_us}, headers)

    def end(self, *, duration_us: int, response_bytes: int, grpc_status: int | None = None,
            error: str = "", classification: str = "success",
            trailers: Headers | None = None) -> None:
        self._emit("end", {"duration_us": duration_us, "response_bytes": response_bytes,
                           "grpc_status": grpc_status, "error": error,
                           "classification": classification}, trailers)


class TapHub:
    """The proxy's registry of tap subscriptions, and its flight recorder."""

    def __init__(self, deny: Iterable[str] = DEFAULT_REDACT, record_bytes: int = 0) -> None:
        self.deny = frozenset(h.lower() for h in deny) | DEFAULT_REDACT
        self.subs: list[TapSubscription] = []
        self.recorder = FlightRecorder(record_bytes) if record_bytes > 0 else None
        self.active = self.recorder is not None
        self._ids = itertools.count(1)

    def subscribe(self, flt: TapFilter, *, max_rps: float = 100.0, headers: bool = True,
                  reveal: bool = False, queue_max: int = 10_000, failures: bool = False,
                  since: float = 0.0) -> TapSubscription:
        """A new subscription; ``since`` seconds of recorded events are replayed into it
        first (always redacted: the recorder keeps no secrets)."""
        sub = TapSubscription(flt, max_rps, headers, reveal, queue_max, failures)
        if since > 0 and self.recorder is not None:
            for ev in self.recorder.since(time.time() - since):
                if flt.matches_event(ev):
                    if not headers and "headers" in ev:
                        ev = {k: v for k, v in ev.items() if k != "headers"}
                    sub.push(dict(ev, replayed=True))
        self.subs.append(sub)
        self.active = True
        return sub

    def unsubscribe(self, sub: TapSubscription) -> None:
        sub.closed = True
        if sub in self.subs:
            self.subs.remove(sub)
        self.active = bool(self.subs) or self.recorder is not None

    def request(self, *, conn_id: int, stream: int, direction: str, src: str, dst: str,
                tls: str, method: str, scheme: str, authority: str, path: str,
                headers: Headers, src_labels: dict[str, str] | None = None,
                dst_labels: dict[str, str] | None = None) -> TapExchange | None:
        """Publish a ``req`` event to matching subscribers (and the recorder); None when
        nobody wants it."""
        subs = [s for s in self.subs
                if s.filter.matches(direction, method, scheme, authority, path, dst_labels)
                and s.admit()]
        if not subs and self.recorder is None:
            return None
        base: Event = {
            "id": f"{conn_id}:{stream}", "proxy": "in" if direction == "inbound" else "out",
            "direction": direction, "src": src, "dst": dst, "tls": tls,
            "src_labels": src_labels or {}, "dst_labels": dst_labels or {},
            "method": method, "scheme": scheme, "authority": authority, "path": path,
        }
        ex = TapExchange(self, subs, base)
        ex._emit("req", {}, headers)
        return ex
