"""Latency sketches as the store keeps them: per-interval deltas, dense and deflated.

A row is ``(zero count, lowest bin)`` then the uint32 counts of every bin from
there to the highest, compressed: ~1 byte per bin, 4-5x less than sparse JSON.
Sums of rows stay dense (``DenseSum``), so merging a row is a C-level
``map(add, ...)`` over a slice instead of a Python loop over bins.

``pieces`` cuts a window into the fewest rows: raw rows at the edges, then
minute, history-step and hour rollups towards the middle.

>>> s = DenseSum()
>>> s.add(encode(0, {"3": 2, "5": 1}))
>>> s.add(encode(1, {2: 4}))
>>> s.sketch().bins, s.sketch().count
({2: 4, 3: 2, 5: 1}, 8)
"""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Mapping, Sequence
from operator import add

from ..proxy.latency import LatencySketch
from . import deflate

TIER_RAW, TIER_MINUTE, TIER_HISTORY, TIER_HOUR = 0, 1, 2, 3
MINUTE, HOUR = 60.0, 3600.0
#: the rollup tiers, finest first (tier, bucket size; None: the history step)
ROLLUPS: tuple[tuple[int, float | None], ...] = ((TIER_MINUTE, MINUTE), (TIER_HISTORY, None),
                                                 (TIER_HOUR, HOUR))
_HEAD = struct.Struct("<qi")


def encode(zero: int, bins: Mapping[int, int] | Mapping[str, int]) -> bytes:
    """One row from a sparse sketch (bin keys as ints or as the JSON strings)."""
    keys = [int(i) for i in bins]
    if not keys:
        return deflate.pack(_HEAD.pack(int(zero), 0))
    lo = min(keys)
    dense = array("I", bytes(4 * (max(keys) - lo + 1)))
    for i, n in zip(keys, bins.values(), strict=True):
        dense[i - lo] = n
    return deflate.pack(_HEAD.pack(int(zero), lo) + dense.tobytes())


def decode(data: bytes) -> tuple[int, int, array]:
    raw = deflate.unpack(data)
    zero, lo = _HEAD.unpack_from(raw)
    dense = array("I")
    dense.frombytes(raw[_HEAD.size:])
    return zero, lo, dense


class DenseSum:
    """The sum of rows, kept dense from its lowest bin."""

    __slots__ = ("zero", "lo", "counts")

    def __init__(self) -> None:
        self.zero = 0
        self.lo = 0
        self.counts: list[int] = []

    def add(self, data: bytes) -> None:
        """Add one stored row."""
        self.add_dense(*decode(data))

    def merge(self, other: DenseSum) -> None:
        self.add_dense(other.zero, other.lo, other.counts)

    def size(self) -> int:
        """Bytes held, roughly (for caches)."""
        return 8 * len(self.counts) + 100

    def add_dense(self, zero: int, lo: int, dense: Sequence[int]) -> None:
        self.zero += zero
        n = len(dense)
        if not n:
            return
        counts = self.counts
        if not counts:
            self.lo, self.counts = lo, list(dense)
            return
        if lo < self.lo:
            counts[0:0] = [0] * (self.lo - lo)
            self.lo = lo
        i = lo - self.lo
        if i + n > len(counts):
            counts.extend([0] * (i + n - len(counts)))
        counts[i:i + n] = map(add, counts[i:i + n], dense)

    def sketch(self) -> LatencySketch:
        s = LatencySketch()
        s.zero = self.zero
        s.bins = {i: n for i, n in enumerate(self.counts, self.lo) if n}
        s.count = self.zero + sum(self.counts)
        return s

    def encode(self) -> bytes:
        while self.counts and not self.counts[-1]:
            self.counts.pop()
        return deflate.pack(_HEAD.pack(self.zero, self.lo) + array("I", self.counts).tobytes())


def add_encoded(sketch: LatencySketch, data: bytes) -> None:
    """Merge one row into a ``LatencySketch``."""
    zero, lo, dense = decode(data)
    bins = sketch.bins
    get = bins.get
    total = zero
    for i, n in enumerate(dense, lo):
        if n:
            bins[i] = get(i, 0) + n
            total += n
    sketch.zero += zero
    sketch.count += total


Previous = tuple[int, int, Mapping[str, int]]


def delta(prev: Previous | None, zero: int, bins: Mapping[str, int], count: int,
          restarted: bool) -> tuple[int, Mapping[str, int]]:
    """What a cumulative sketch gained since ``prev`` (count, zero, bins); all of it
    when the proxy restarted or any bin went down (a reset, as for counters)."""
    if prev is None or restarted or count < prev[0] or zero < prev[1]:
        return zero, bins
    pget = prev[2].get
    out = {}
    for i, n in bins.items():
        d = n - pget(i, 0)
        if d:
            if d < 0:
                return zero, bins
            out[i] = d
    if len(prev[2]) > len(bins):
        return zero, bins
    return zero - prev[1], out


def _ceil(t: float, step: float) -> float:
    return float(math.ceil(t / step) * step)


def _floor(t: float, step: float) -> float:
    return float(math.floor(t / step) * step)


def pieces(a: float, b: float, rolled: Sequence[float], raw_floor: float,
           step: float) -> list[tuple[int, float, float]]:
    """(tier, lo, hi] ranges whose rows add up to the deltas stamped in (a, b].

    ``rolled`` are the last buckets rolled up per rollup tier (minute, history
    step, hour; a bucket keyed K holds the rows of (K - size, K]). Before
    ``raw_floor`` only the history is left, so ``a`` moves up to a history step.

    >>> pieces(5, 1995, (1980, 1800, -math.inf), raw_floor=0, step=600)
    [(2, 600.0, 1800.0), (1, 60.0, 600.0), (1, 1800.0, 1980.0), (0, 5, 60.0), (0, 1980.0, 1995)]
    """
    if a < raw_floor:
        a = _ceil(a, step)
    out: list[tuple[int, float, float]] = []
    tier, lo, hi = TIER_RAW, a, b
    for (level, size), r in zip(ROLLUPS, rolled, strict=False):
        size = size or step
        if r == -math.inf:
            break
        a_k, b_k = _ceil(lo, size), _floor(min(hi, r), size)
        if a_k >= b_k:
            break
        out += [(tier, b_k, hi), (tier, lo, a_k)]
        tier, lo, hi = level, a_k, b_k
    out.append((tier, lo, hi))
    out.reverse()
    return [p for p in out if p[1] < p[2]]
