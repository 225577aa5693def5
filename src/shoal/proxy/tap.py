"""Tap: live request events for whoever subscribes, headers only, never bodies.

The data path asks ``hub.active`` once per request; only when someone taps (or the
flight recorder is on) does it build an event. Each subscription has a filter, a rate
limit and a bounded queue: a slow reader gets drops (counted), never back-pressure on
requests. Secret headers are replaced by ``<redacted>`` here, before an event leaves
the proxy, unless the subscription was granted ``reveal``.

Identical subscriptions (same filter and ``max_rps``: several people tapping the same
resource, or dashboard tabs) form a ``TapGroup``: one match and one rate limit per
request for all of them, so they admit the same requests; and every event is one dict
shared by all its subscribers that remembers its JSON line: it is encoded once however
many take it. A busy proxy's cost of tapping grows with the events delivered, hardly
with the number of identical tappers.

The flight recorder (off by default, ``--tap-record-bytes N``) keeps the most recent
events in a ring capped at N bytes, so a tap started now can replay what happened
just before (``since``). It only ever holds redacted headers: a secret is never
kept in memory longer than the request that carried it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
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


class TapEvent(dict):  # type: ignore[type-arg]
    """An event as subscribers receive it; ``line`` is its JSON, set on first use."""

    __slots__ = ("line",)
    line: bytes


def json_line(ev: Mapping[str, object]) -> bytes:
    """The event as one NDJSON line, encoded once per ``TapEvent``."""
    line: bytes | None = getattr(ev, "line", None)
    if line is None:
        line = json.dumps(ev).encode() + b"\n"
        if isinstance(ev, TapEvent):
            ev.line = line
    return line


class TapGroup:
    """The subscriptions with the same filter and ``max_rps``: one match and one token
    bucket (``max_rps`` requests a second, bursts of ``max_rps``) per request for all
    of them, so a request they do not get costs the same for one tapper or twenty."""

    __slots__ = ("filter", "max_rps", "members", "tokens", "refilled", "refused")

    def __init__(self, flt: TapFilter, max_rps: float) -> None:
        self.filter = flt
        self.max_rps = max_rps
        self.members: list[TapSubscription] = []
        self.tokens = max_rps
        self.refilled = time.monotonic()
        #: requests over the rate limit since the group began
        self.refused = 0

    def admit(self) -> bool:
        """Take a token for a request (the rate limit counts requests, not events)."""
        if self.max_rps <= 0:
            return True
        now = time.monotonic()
        self.tokens = min(self.max_rps, self.tokens + (now - self.refilled) * self.max_rps)
        self.refilled = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.refused += 1
        return False


class TapSubscription:
    """One tapper: a filter, a (shared) rate limit, a bounded queue of events.

    ``failures``: only requests classified as failures. That is known at ``end``, so
    the ``req`` and ``rsp`` events of each request are held back until then and
    delivered together with the ``end`` (or forgotten when it succeeded).
    """

    def __init__(self, flt: TapFilter, max_rps: float, headers: bool, reveal: bool,
                 queue_max: int, failures: bool = False,
                 group: TapGroup | None = None) -> None:
        self.filter = flt
        self.max_rps = max_rps
        self.group = group or TapGroup(flt, max_rps)
        self._refused_before = self.group.refused
        self.headers = headers
        self.reveal = reveal
        self.failures = failures
        self.held: OrderedDict[object, list[Event]] = OrderedDict()
        self.events: deque[Event] = deque()
        self.queue_max = queue_max
        #: events not delivered for a full queue (a slow reader) or held too long
        self.lost = 0
        self.wake = asyncio.Event()
        self.closed = False

    @property
    def limited(self) -> int:
        """Requests this subscription did not get for being over ``max_rps``."""
        return self.group.refused - self._refused_before

    @property
    def dropped(self) -> int:
        """What this subscriber missed: requests over ``max_rps`` and lost events."""
        return self.limited + self.lost

    def push(self, event: Event) -> None:
        if self.failures:
            key = event.get("id")
            if event.get("type") != "end":
                held = self.held.get(key)
                if held is None:
                    if len(self.held) >= MAX_HELD:
                        self.held.popitem(last=False)
                        self.lost += 1
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
            self.lost += 1
            return
        self.events.append(event)
        self.wake.set()

    def drain(self) -> list[Event]:
        out = list(self.events)
        self.events.clear()
        self.wake.clear()
        return out

    def drain_lines(self, most: int = 0) -> bytes:
        """The oldest ``most`` queued events (all when 0) as NDJSON, taken off the
        queue. Bounding a batch bounds the time one write keeps the loop from the
        data path, also when a reader comes back with a full queue."""
        events = self.events
        if most <= 0 or len(events) <= most:
            out = b"".join(map(json_line, events))
            events.clear()
            self.wake.clear()
            return out
        pop = events.popleft
        return b"".join(json_line(pop()) for _ in range(most))

    def close(self) -> None:
        """The reader went away: the stream ends at its next wake-up."""
        self.closed = True
        self.wake.set()


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
        # One dict per view of the event (no headers / redacted / revealed), shared by
        # every subscriber with that view, so each is encoded to JSON once.
        ev = TapEvent(self.base, type=kind, ts=time.time(), **fields)
        redacted = revealed = None
        for s in self.subs:
            if not s.headers or headers is None:
                s.push(ev)
            elif s.reveal:
                if revealed is None:
                    revealed = TapEvent(ev, headers=[[n, v] for n, v in headers])
                s.push(revealed)
            else:
                if redacted is None:
                    redacted = TapEvent(ev, headers=redact(headers, self.hub.deny))
                s.push(redacted)
        recorder = self.hub.recorder
        if recorder is not None:
            if redacted is None and headers is not None:
                redacted = TapEvent(ev, headers=redact(headers, self.hub.deny))
            recorder.add(redacted if redacted is not None else ev)

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
        #: (filter, max_rps) -> its subscriptions, matched and rate-limited together
        self.groups: dict[tuple[TapFilter, float], TapGroup] = {}

    def subscribe(self, flt: TapFilter, *, max_rps: float = 100.0, headers: bool = True,
                  reveal: bool = False, queue_max: int = 10_000, failures: bool = False,
                  since: float = 0.0) -> TapSubscription:
        """A new subscription; ``since`` seconds of recorded events are replayed into it
        first (always redacted: the recorder keeps no secrets)."""
        group = self.groups.get((flt, max_rps))
        if group is None:
            group = self.groups[(flt, max_rps)] = TapGroup(flt, max_rps)
        sub = TapSubscription(flt, max_rps, headers, reveal, queue_max, failures, group)
        if since > 0 and self.recorder is not None:
            for ev in self.recorder.since(time.time() - since):
                if flt.matches_event(ev):
                    if not headers and "headers" in ev:
                        ev = {k: v for k, v in ev.items() if k != "headers"}
                    sub.push(dict(ev, replayed=True))
        self.subs.append(sub)
        group.members.append(sub)
        self.active = True
        return sub

    def unsubscribe(self, sub: TapSubscription) -> None:
        sub.close()
        if sub in self.subs:
            self.subs.remove(sub)
            group = sub.group
            group.members.remove(sub)
            if not group.members:
                self.groups.pop((group.filter, group.max_rps), None)
        self.active = bool(self.subs) or self.recorder is not None

    def admit(self, direction: str, method: str, scheme: str, authority: str, path: str,
              dst_labels: dict[str, str] | None = None) -> list[TapSubscription] | None:
        """The subscriptions that take this request (their filter matches and their
        rate limit has room); None when nobody, not even the recorder, wants it. The
        data path asks this first and builds the event only when it is wanted: with
        ``max_rps`` 100 on a proxy serving 1000 requests/s, nine in ten are not."""
        subs: list[TapSubscription] = []
        for group in self.groups.values():
            if group.filter.matches(direction, method, scheme, authority, path, dst_labels) \
                    and group.admit():
                subs += group.members
        if not subs and self.recorder is None:
            return None
        return subs

    def publish(self, subs: list[TapSubscription], *, conn_id: int, stream: int,
                direction: str, src: str, dst: str, tls: str, method: str, scheme: str,
                authority: str, path: str, headers: Headers,
                src_labels: dict[str, str] | None = None,
                dst_labels: dict[str, str] | None = None) -> TapExchange:
        """Send the ``req`` event to ``subs`` (from ``admit``) and the recorder."""
        base: Event = {
            "id": f"{conn_id}:{stream}", "proxy": "in" if direction == "inbound" else "out",
            "direction": direction, "src": src, "dst": dst, "tls": tls,
            "src_labels": src_labels or {}, "dst_labels": dst_labels or {},
            "method": method, "scheme": scheme, "authority": authority, "path": path,
        }
        ex = TapExchange(self, subs, base)
        ex._emit("req", {}, headers)
        return ex
