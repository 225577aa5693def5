"""`top`'s table, built from tap events: pure aggregation and rendering, no I/O.

A request is counted when its ``end`` arrives; its latency is the ``rsp`` latency plus
the ``end`` duration (request start to end of response), as Linkerd's top reports.

>>> m = TopModel()
>>> for ev in [{"type": "req", "id": "1:0", "pod": "web-1", "direction": "outbound",
...             "src": "127.0.0.1:5000", "dst": "127.0.0.1:8080", "method": "GET",
...             "path": "/x", "dst_labels": {"pod": "api-1"}, "src_labels": {"pod": "web-1"}},
...            {"type": "rsp", "id": "1:0", "pod": "web-1", "latency_us": 900},
...            {"type": "end", "id": "1:0", "pod": "web-1", "duration_us": 100,
...             "classification": "success"}]:
...     m.add(ev)
>>> print(render(m.rows()))
Source  Destination  Method  Path  Count  Best  Worst  Last  Success Rate
web-1   api-1        GET     /x        1   1ms    1ms   1ms       100.00%
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

HEADERS = ("Source", "Destination", "Method", "Path", "Count", "Best", "Worst", "Last",
           "Success Rate")
RIGHT = {"Count", "Best", "Worst", "Last", "Success Rate"}
PENDING_MAX = 10_000  # requests seen without their end yet


def latency(us: int) -> str:
    """Go's rounded durations, as Linkerd's top prints them: 947µs, 6ms, 1.5s."""
    if us < 1000:
        return f"{us}µs"
    ms = round(us / 1000)
    if ms < 1000:
        return f"{ms}ms"
    return f"{ms / 1000:g}s"


def peer(labels: Any, addr: str) -> str:
    """A pod name when discovery knew it, else the address without its port."""
    if isinstance(labels, dict) and labels.get("pod"):
        return str(labels["pod"])
    host = str(addr).rpartition(":")[0] or str(addr)
    return host.strip("[]")


@dataclass
class Row:
    source: str
    destination: str
    method: str
    path: str
    count: int = 0
    successes: int = 0
    best: int = 0
    worst: int = 0
    last: int = 0

    def cells(self) -> list[str]:
        rate = f"{100.0 * self.successes / self.count:.2f}%" if self.count else "-"
        return [self.source, self.destination, self.method, self.path, str(self.count),
                latency(self.best), latency(self.worst), latency(self.last), rate]


class TopModel:
    """``add(event)`` for every tap event; ``rows()`` sorted by Count descending."""

    def __init__(self, routes: bool = False, hide_sources: bool = False) -> None:
        self.routes = routes
        self.hide_sources = hide_sources
        self.pending: dict[tuple[str, str], tuple[tuple[str, str, str, str], int]] = {}
        self.table: dict[tuple[str, str, str, str], Row] = {}
        self.started = False

    def key(self, ev: dict[str, Any]) -> tuple[str, str, str, str]:
        src = "" if self.hide_sources else peer(ev.get("src_labels"), ev.get("src", ""))
        dst = peer(ev.get("dst_labels"), ev.get("dst", ""))
        if self.routes:
            what = str((ev.get("route_labels") or {}).get("route") or "[DEFAULT]")
        else:
            what = str(ev.get("path", ""))
        return (src, dst, str(ev.get("method", "")), what)

    def add(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        ident = (str(ev.get("pod", "")), str(ev.get("id", "")))
        if kind == "started":
            self.started = True
        elif kind == "req":
            if len(self.pending) >= PENDING_MAX:
                self.pending.pop(next(iter(self.pending)))
            self.pending[ident] = (self.key(ev), 0)
        elif kind == "rsp" and ident in self.pending:
            key, _ = self.pending[ident]
            self.pending[ident] = (key, int(ev.get("latency_us") or 0))
        elif kind == "end" and ident in self.pending:
            key, since = self.pending.pop(ident)
            total = since + int(ev.get("duration_us") or 0)
            row = self.table.get(key)
            if row is None:
                row = self.table[key] = Row(*key, best=total, worst=total)
            row.count += 1
            row.successes += ev.get("classification") != "failure"
            row.best, row.worst, row.last = min(row.best, total), max(row.worst, total), total

    def rows(self) -> list[Row]:
        return sorted(self.table.values(),
                      key=lambda r: (-r.count, r.source, r.destination, r.method, r.path))


def render(rows: Sequence[Row], routes: bool = False, hide_sources: bool = False) -> str:
    """The table, columns two spaces apart, numbers right-aligned."""
    headers = list(HEADERS)
    if routes:
        headers[3] = "Route"
    cells = [headers] + [r.cells() for r in rows]
    if hide_sources:
        cells = [c[1:] for c in cells]
        headers = headers[1:]
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
    lines = []
    for c in cells:
        parts = [c[i].rjust(widths[i]) if headers[i] in RIGHT else c[i].ljust(widths[i])
                 for i in range(len(headers))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
