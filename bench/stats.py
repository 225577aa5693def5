"""Percentile summaries: pure functions over lists of microseconds."""

from __future__ import annotations

import math
from collections.abc import Sequence

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (no interpolation).

    >>> percentile([1, 2, 3, 4], 50), percentile([1, 2, 3, 4], 99)
    (2, 4)
    """
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarise(values: Sequence[float]) -> dict[str, float]:
    """``{"count", "mean", "p50", "p90", "p99", "p99.9", "max"}`` of the values."""
    s = sorted(values)
    out: dict[str, float] = {"count": len(s), "mean": sum(s) / len(s) if s else math.nan}
    for p in PERCENTILES:
        out[f"p{p:g}"] = percentile(s, p)
    out["max"] = s[-1] if s else math.nan
    return out
