"""Durations and windows as users type them: ``10s``, ``1m``, ``1h30m``, ``7d``.

>>> parse_duration("1m30s")
90.0
>>> parse_duration("250ms")
0.25
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import BadRange, BadWindow, WindowTooShort

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
#: The longest window or range a query may span.
MAX_SPAN = 90 * 86400.0
#: The most points a range query may return per series.
MAX_POINTS = 11000


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (Prometheus duration syntax; a bare number is seconds)."""
    s = text.strip() if isinstance(text, str) else ""
    if not s:
        raise BadWindow(f"empty duration {text!r}: use e.g. 10s, 1m, 1h")
    try:
        value = float(s)
    except ValueError:
        pos, value = 0, 0.0
        for m in _PART.finditer(s):
            if m.start() != pos:
                break
            value += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(s) or pos == 0:
            raise BadWindow(f"malformed duration {text!r}: use e.g. 10s, 1m, 1h") from None
    if not value > 0 or value != value:
        raise BadWindow(f"duration {text!r} must be positive")
    if value > MAX_SPAN:
        raise BadWindow(f"duration {text!r} is longer than {format_duration(MAX_SPAN)}")
    return value


def format_duration(seconds: float) -> str:
    """The shortest spelling: 60 -> '1m', 5400 -> '1h30m', 0.5 -> '500ms'."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    out, rest = [], int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out) or "0s"


@dataclass(frozen=True)
class Window:
    """The interval (start, end] a query covers, in Unix seconds."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def window(spec: str | float, now: float, scrape_interval: float) -> Window:
    """The window ``spec`` ending at ``now``; rejected when shorter than a scrape interval.

    A window shorter than the interval between two scrapes holds at most one sample
    per series, so no rate can be computed from it.
    """
    seconds = parse_duration(spec) if isinstance(spec, str) else float(spec)
    if not seconds > 0:
        raise BadWindow(f"window {spec!r} must be positive")
    if seconds < scrape_interval:
        raise WindowTooShort(
            f"window {format_duration(seconds)} is shorter than the scrape interval "
            f"{format_duration(scrape_interval)}: no rate can be computed from one sample")
    return Window(now - seconds, now)


def time_range(start: float, end: float, step: float, scrape_interval: float) -> list[float]:
    """The evaluation times of a range query: end, end-step, ... >= start, oldest first."""
    for name, v in (("start", start), ("end", end), ("step", step)):
        if not isinstance(v, int | float) or v != v:
            raise BadRange(f"{name} must be a number")
    if end <= start:
        raise BadRange("range end must be after its start")
    if end - start > MAX_SPAN:
        raise BadRange(f"range is longer than {format_duration(MAX_SPAN)}")
    if step < scrape_interval:
        raise WindowTooShort(
            f"step {format_duration(step)} is shorter than the scrape interval "
            f"{format_duration(scrape_interval)}")
    n = int((end - start) // step)
    if n + 1 > MAX_POINTS:
        raise BadRange(f"range of {n + 1} points exceeds {MAX_POINTS}: use a larger step")
    return [end - i * step for i in range(n, -1, -1)]
