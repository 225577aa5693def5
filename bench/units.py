"""Numbers for people: the formats every table and verdict in the report uses."""

from __future__ import annotations

import math


def ok(x: float | None) -> bool:
    return x is not None and not math.isnan(x)


def us(x: float | None) -> str:
    """Microseconds for people: ``412µs``, ``4.14ms``, ``93.2ms``."""
    if not ok(x):
        return "—"
    assert x is not None
    if abs(x) >= 10_000:
        return f"{x / 1000:.1f}ms"
    if abs(x) >= 1000:
        return f"{x / 1000:.2f}ms"
    return f"{x:.0f}µs"


def seconds(x: float | None) -> str:
    """Seconds for people: ``1.84s``, ``31ms``."""
    if not ok(x):
        return "—"
    assert x is not None
    return f"{x:.2f}s" if abs(x) >= 1 else f"{1000 * x:.0f}ms"


def mb(kib: int | None) -> str:
    return "—" if not kib else f"{kib * 1024 / 1e6:.1f}MB"


def pct(x: float | None) -> str:
    return "—" if not ok(x) else f"{100 * x:.0f}%"  # type: ignore[operator]


def rps(x: float | None) -> str:
    return "—" if not ok(x) else f"{x:,.0f}"


def ms_cpu(x: float | None) -> str:
    return "—" if not ok(x) else f"{x:.1f}ms CPU"


def num(x: float | None) -> str:
    return "—" if not ok(x) else f"{x:.1f}"
