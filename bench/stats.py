"""Percentile summaries: pure functions over lists of microseconds."""

from __future__ import annotations

import math
from bisect import bisect_right
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


def quiet(timeline: Sequence[Sequence[float]], steal_marks: Sequence[tuple[float, int]],
          after: float = 0.05) -> tuple[list[float], float]:
    """The latencies (µs) of the requests the hypervisor left alone, and their share.

    ``timeline`` holds (scheduled send in s, latency in µs) per request and
    ``steal_marks`` (time in s, steal ticks so far) samples, both on CLOCK_MONOTONIC.
    A request counts when no steal was seen between the samples around its life
    (scheduled send to response), nor in the ``after`` seconds before it: the queue a
    stall leaves behind takes a while to drain. Requests outside the sampled span do
    not count.

    >>> marks = [(0.0, 0), (0.1, 0), (0.2, 3), (0.3, 3), (0.4, 3)]
    >>> sends = [(0.05, 1.0), (0.0999, 900.0), (0.15, 9.0), (0.22, 8.0), (0.33, 2.0),
    ...          (0.5, 7.0)]
    >>> quiet(sends, marks)
    ([1.0, 2.0], 0.3333333333333333)
    """
    if len(steal_marks) < 2 or not timeline:
        return [], 0.0
    stalls = [(a[0], b[0]) for a, b in zip(steal_marks, steal_marks[1:], strict=False)
              if b[1] > a[1]]
    starts = [a for a, _ in stalls]
    first, last = steal_marks[0][0], steal_marks[-1][0]
    kept = []
    for t, v in timeline:
        end = t + v * 1e-6
        if t < first or end > last:
            continue
        j = bisect_right(starts, end) - 1
        if j >= 0 and stalls[j][1] + after >= t:
            continue
        kept.append(v)
    return kept, len(kept) / len(timeline)
