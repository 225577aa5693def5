"""Tap: live request events for whoever subscribes, headers only, never bodies.

The data path asks ``hub.active`` once per request; only when someone taps does it
build an event. Each subscription has a filter, a rate limit and a bounded queue:
a slow reader gets drops (counted), never back-pressure on requests. Secret headers
are replaced by ``<redacted>`` here, before an event leaves the proxy, unless the
subscription was granted ``reveal``.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

REDACTED = "<redacted>"
DEFAULT_REDACT = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})

Headers = Sequence[tuple[str, str]]


class TapFilterError(ValueError):
    """A tap filter that cannot be used (bad regex, unknown direction...)."""


@dataclass(frozen=True)
class TapFilter:
    """What a subscriber wants to see; empty fields match everything."""

    direction: str = ""          # "inbound" | "outbound" | ""
    method: str = ""
    path_prefix: str = ""
    authority: str = ""          # exact
    scheme: str = ""
    path_regex: str = ""

    @classmethod
    def parse(cls, data: dict[str, object]) -> TapFilter:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise TapFilterError(f"unknown tap filter field: {sorted(unknown)[0]}")
        for k, v in data.items():
            if not isinstance(v, str):
                raise TapFilterError(f"tap filter field {k} must be a string")
        flt = cls(**data)  # type: ignore[arg-type]
        if flt.direction not in ("", "inbound", "outbound"):
            raise TapFilterError("direction must be inbound or outbound")
        if flt.path_regex:
            try:
                re.compile(flt.path_regex)
            except re.error as e:
                raise TapFilterError(f"invalid path regex: {e}") from None
        return flt

    def matches(self, direction: str, method: str, scheme: str, authority: str,
                path: str) -> bool:
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
        return True


class TapSubscription:
    """One tapper: a filter, a token bucket, a bounded queue of events."""

    def __init__(self, flt: TapFilter, max_rps: float, headers: bool, reveal: bool,
                 queue_max: int) -> None:
        self.filter = flt
        self.max_rps = max_rps
        self.headers = headers
        self.reveal = reveal
        self.events: deque[dict[str, object]] = deque()
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

    def push(self, event: dict[str, object]) -> None:
        if len(self.events) >= self.queue_max:
            self.dropped += 1
            return
        self.events.append(event)
        self.wake.set()

    def drain(self) -> list[dict[str, object]]:
        out = list(self.events)
        self.events.clear()
        self.wake.clear()
        return out


def redact(headers: Iterable[tuple[str, str]], deny: frozenset[str]) -> list[list[str]]:
    return [[n, REDACTED if n.lower() in deny else v] for n, v in headers]


class TapExchange:
    """The subscriptions that saw a request's ``req`` event get its ``rsp`` and ``end``."""

    __slots__ = ("hub", "subs", "base", "started")

    def __init__(self, hub: TapHub, subs: list[TapSubscription], base: dict[str, object]):
        self.hub = hub
        self.subs = subs
        self.base = base
        self.started = time.monotonic()

    def _emit(self, kind: str, fields: dict[str, object], headers: Headers | None) -> None:
        ev = dict(self.base, type=kind, ts=time.time(), **fields)
        for s in self.subs:
            if s.headers and headers is not None:
                e = dict(ev, headers=[[n, v] for n, v in headers] if s.reveal
                         else redact(headers, self.hub.deny))
                s.push(e)
            else:
                s.push(ev)

    def response(self, status: int, headers: Headers | None, latency_us: int) -> None:
        self._emit("rsp", {"status": status, "latency_us": latency_us}, headers)

    def end(self, *, duration_us: int, response_bytes: int, grpc_status: int | None = None,
            error: str = "", classification: str = "success",
            trailers: Headers | None = None) -> None:
        self._emit("end", {"duration_us": duration_us, "response_bytes": response_bytes,
                           "grpc_status": grpc_status, "error": error,
                           "classification": classification}, trailers)


class TapHub:
    """The proxy's registry of tap subscriptions."""

    def __init__(self, deny: Iterable[str] = DEFAULT_REDACT) -> None:
        self.deny = frozenset(h.lower() for h in deny) | DEFAULT_REDACT
        self.subs: list[TapSubscription] = []
        self.active = False
        self._ids = itertools.count(1)

    def subscribe(self, flt: TapFilter, *, max_rps: float = 100.0, headers: bool = True,
                  reveal: bool = False, queue_max: int = 10_000) -> TapSubscription:
        sub = TapSubscription(flt, max_rps, headers, reveal, queue_max)
        self.subs.append(sub)
        self.active = True
        return sub

    def unsubscribe(self, sub: TapSubscription) -> None:
        sub.closed = True
        if sub in self.subs:
            self.subs.remove(sub)
        self.active = bool(self.subs)

    def request(self, *, conn_id: int, stream: int, direction: str, src: str, dst: str,
                tls: str, method: str, scheme: str, authority: str, path: str,
                headers: Headers, src_labels: dict[str, str] | None = None,
                dst_labels: dict[str, str] | None = None) -> TapExchange | None:
        """Publish a ``req`` event to matching subscribers; None when nobody wants it."""
        subs = [s for s in self.subs
                if s.filter.matches(direction, method, scheme, authority, path) and s.admit()]
        if not subs:
            return None
        base: dict[str, object] = {
            "id": f"{conn_id}:{stream}", "proxy": "in" if direction == "inbound" else "out",
            "direction": direction, "src": src, "dst": dst, "tls": tls,
            "src_labels": src_labels or {}, "dst_labels": dst_labels or {},
            "method": method, "scheme": scheme, "authority": authority, "path": path,
        }
        ex = TapExchange(self, subs, base)
        ex._emit("req", {}, headers)
        return ex
