"""Latency sketches as the store keeps them: dense, deflated, summed as integers.

What a proxy's sketches gained in one scrape is stored as one blob per scrape
(``scrape_blob``: an index of series, then each one's counts); a running total
(``cumulative``) is a *row*: ``(zero count, lowest bin, format)`` then the uint64
counts of every bin from there to the highest, compressed: ~1 byte per bin, 4-5x
less than sparse JSON. Rows written before the format byte hold uint32 counts after a 12-byte head; their
length is a multiple of 4, a current row's never is, and both still read.

Sums are kept as one Python integer with a 64-bit field per bin (``DenseSum``):
bin counts never go negative and a field never reaches 2**64, so adding two
sketches is one integer addition (a shift aligns their lowest bins), and a row's
bytes are that integer's little-endian bytes as stored. A query merging thousands
of rows thus does no Python step per bin.

A window is then a difference of two totals plus the deltas at its edges.

>>> s = DenseSum()
>>> s.add(encode(0, {"3": 2, "5": 1}))
>>> s.add(encode(1, {2: 4}))
>>> s.sketch().bins, s.sketch().count
({2: 4, 3: 2, 5: 1}, 8)
>>> t = DenseSum()
>>> t.add(s.encode())
>>> t.add(encode(0, {7: 1}))
>>> t.sketch().bins, t.zero
({2: 4, 3: 2, 5: 1, 7: 1}, 1)
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Callable, Iterator, Mapping

from ..proxy.latency import LatencySketch
from . import deflate

#: tiers of the records table: every scrape, and the history (one per step). Older
#: stores also kept sketch rows in ``sketches`` under these tiers and per-minute (1)
#: and per-hour (3) rollups, converted by ``cumulative.Cumulative.migrate``
TIER_RAW, TIER_HISTORY = 0, 2
#: the marks a target keeps of what it closed (minute, history step, and an hour mark
#: of older stores)
ROLLUPS: tuple[str, ...] = ("minute", "step", "hour")
#: uint32 rows (before the format byte): zero count, lowest bin
_HEAD_V1 = struct.Struct("<qi")
#: current rows: zero count, lowest bin, format (2: uint64 counts)
_HEAD = struct.Struct("<qiB")
_V2 = 2
_FIELD = 64


def encode(zero: int, bins: Mapping[int, int] | Mapping[str, int]) -> bytes:
    """One row from a sparse sketch (bin keys as ints or as the JSON strings)."""
    keys = [int(i) for i in bins]
    if not keys:
        return deflate.pack(_HEAD.pack(int(zero), 0, _V2))
    lo = min(keys)
    dense = array("Q", bytes(8 * (max(keys) - lo + 1)))
    for i, n in zip(keys, bins.values(), strict=True):
        dense[i - lo] = n
    return deflate.pack(_HEAD.pack(int(zero), lo, _V2) + dense.tobytes())


def decode(data: bytes, unpack: Callable[[bytes], bytes] = deflate.unpack
           ) -> tuple[int, int, int]:
    """(zero count, lowest bin, counts as an integer of 64-bit fields) of a row;
    ``unpack`` may be a shared ``deflate.Inflater``."""
    raw = unpack(data)
    if len(raw) % 4:
        zero, lo, _ = _HEAD.unpack_from(raw)
        return zero, lo, int.from_bytes(memoryview(raw)[_HEAD.size:], "little")
    zero, lo = _HEAD_V1.unpack_from(raw)
    body = raw[_HEAD_V1.size:]
    wide = bytearray(2 * len(body))
    for k in range(4):  # uint32 -> uint64 fields, a byte lane at a time
        wide[k::8] = body[k::4]
    return zero, lo, int.from_bytes(wide, "little")


class DenseSum:
    """The sum of rows: the zero count, the lowest bin, and the bins' counts as one
    integer of 64-bit fields from there up."""

    __slots__ = ("zero", "lo", "acc")

    def __init__(self) -> None:
        self.zero = 0
        self.lo = 0
        self.acc = 0

    def add(self, data: bytes, unpack: Callable[[bytes], bytes] = deflate.unpack) -> None:
        """Add one stored row."""
        self.add_dense(*decode(data, unpack))

    def merge(self, other: DenseSum) -> None:
        self.add_dense(other.zero, other.lo, other.acc)

    def size(self) -> int:
        """Bytes held, roughly (for caches)."""
        return self.acc.bit_length() // 8 + 100

    def add_dense(self, zero: int, lo: int, acc: int) -> None:
        self.zero += zero
        if not acc:
            return
        if not self.acc:
            self.lo, self.acc = lo, acc
        elif lo >= self.lo:
            self.acc += acc << (_FIELD * (lo - self.lo))
        else:
            self.acc = (self.acc << (_FIELD * (self.lo - lo))) + acc
            self.lo = lo

    def minus(self, earlier: DenseSum | None) -> DenseSum | None:
        """This running total less an ``earlier`` one of the same series; None when
        ``earlier`` is not below it (a damaged row). Totals never decrease, so no
        field borrows from the next."""
        if earlier is None or not (earlier.acc or earlier.zero):
            return self
        acc = self.acc
        if earlier.acc:
            if earlier.lo < self.lo:
                return None
            acc -= earlier.acc << (_FIELD * (earlier.lo - self.lo))
        zero = self.zero - earlier.zero
        if acc < 0 or zero < 0:
            return None
        out = DenseSum()
        out.zero, out.lo, out.acc = zero, self.lo, acc
        return out

    @property
    def counts(self) -> array:
        """The bins' counts from ``lo`` to the highest non-empty one."""
        out = array("Q")
        out.frombytes(self.acc.to_bytes((self.acc.bit_length() + 63) // 64 * 8, "little"))
        return out

    def sketch(self) -> LatencySketch:
        s = LatencySketch()
        counts = self.counts
        s.zero = self.zero
        s.bins = {i: n for i, n in enumerate(counts, self.lo) if n}
        s.count = self.zero + sum(counts)
        return s

    def encode(self) -> bytes:
        acc = self.acc
        body = acc.to_bytes((acc.bit_length() + 63) // 64 * 8, "little") if acc else b""
        return deflate.pack(_HEAD.pack(self.zero, self.lo if acc else 0, _V2) + body)


#: a sketch as last scraped: (zero count, lowest bin, counts as an integer)
Scraped = tuple[int, int, int]


def scraped(data: Mapping[str, object]) -> Scraped | None:
    """A proxy's cumulative sketch (``LatencySketch.to_json``: ``lo`` and hex
    ``hex64``; a plain ``counts`` list; or the older sparse ``bins``) as (zero, lo,
    integer of 64-bit fields); None when malformed (a count that is not a
    non-negative integer, ...). The packed form takes no Python step per bin."""
    zero = data.get("zero", 0)
    if not isinstance(zero, int) or zero < 0:
        return None
    packed = data.get("hex64")
    if packed is not None:  # the proxies' form: uint64 LE counts in hex
        lo = data.get("lo", 0)
        if not isinstance(packed, str) or not isinstance(lo, int):
            return None
        try:
            raw = bytes.fromhex(packed)
        except ValueError:
            return None
        if len(raw) % 8:
            return None
        return zero, lo, int.from_bytes(raw, "little")
    counts = data.get("counts")
    try:
        if counts is not None:
            lo = data.get("lo", 0)
            if not isinstance(lo, int) or not isinstance(counts, list):
                return None
            dense = array("Q", counts)
        else:
            bins = data.get("bins", {})
            if not isinstance(bins, Mapping):
                return None
            keys = [int(i) for i in bins]
            lo = min(keys, default=0)
            dense = array("Q", bytes(8 * (max(keys) - lo + 1))) if keys else array("Q")
            for i, n in zip(keys, bins.values(), strict=True):
                dense[i - lo] = n
    except (TypeError, ValueError, OverflowError):
        return None
    return zero, lo, int.from_bytes(dense.tobytes(), "little")


#: what a sketch gained: (zero count, lowest bin, counts as an integer)
Delta = tuple[int, int, int]


def _top_bits(fields: int) -> int:
    """An integer with the top bit of each of ``fields`` 64-bit fields set."""
    global _TOPS
    while _TOPS.bit_length() < _FIELD * fields:
        _TOPS = (_TOPS << (_FIELD * 1024)) | _TOPS_1024
    return _TOPS


_TOPS_1024 = int.from_bytes(b"\0\0\0\0\0\0\0\x80" * 1024, "little")
_TOPS = _TOPS_1024


def delta_row(prev: Scraped | None, cur: Scraped, restarted: bool) -> Delta | None:
    """What a sketch gained since ``prev`` (None: nothing); all of it when the proxy
    restarted or any bin went down (a reset, as for counters).

    Bins 5: 1 and 7: 2, then bin 4 gains 1, bin 7 gains 2 and the zero bin 1:

    >>> prev, cur = (0, 5, 1 | 2 << 128), (1, 4, 1 | 1 << 64 | 4 << 192)
    >>> delta_row(prev, cur, False) == (1, 4, 1 | 2 << 192)
    True

    Bin 7 went down while the count grew: a reset, all of it counts:

    >>> delta_row(prev, (0, 5, 3 | 1 << 128), False) == (0, 5, 3 | 1 << 128)
    True
    """
    zero, lo, acc = cur
    if not (prev is None or restarted or zero < prev[0] or (prev[2] and lo > prev[1])):
        d = acc - (prev[2] << (_FIELD * (prev[1] - lo))) if prev[2] else acc
        d_zero = zero - prev[0]
        # a bin that went down borrows from the field above it and itself reads
        # 2**64 - k: its top bit is set (counts stay far below 2**63); the highest
        # field going down makes the difference negative
        if d >= 0 and not d & _top_bits((d.bit_length() + 63) // 64):
            if not d:
                return (d_zero, 0, 0) if d_zero else None
            skip = ((d & -d).bit_length() - 1) // _FIELD  # bins that did not move
            return d_zero, lo + skip, d >> (_FIELD * skip)
    if not (acc or zero):
        return None
    return zero, lo if acc else 0, acc


_COUNT = struct.Struct("<I")
#: one series in a scrape's blob: series id, zero count, lowest bin, bytes of counts
_ENTRY = struct.Struct("<qqiI")


def scrape_blob(deltas: Mapping[int, Delta]) -> bytes:
    """A scrape's deltas of all its series as one blob (one compression and one row
    per scrape, not per series): their count, an index of (series, zero, lowest
    bin, size), then each one's counts (64-bit fields).

    >>> blob = scrape_blob({7: (1, 4, 3 | 2 << 64), 9: (0, -2, 5)})
    >>> [(sid, z, lo, int.from_bytes(b, "little")) for sid, z, lo, b in read_scrape(blob)]
    [(7, 1, 4, 36893488147419103235), (9, 0, -2, 5)]
    """
    index, bodies = [], []
    for sid, (zero, lo, acc) in deltas.items():
        body = acc.to_bytes((acc.bit_length() + 63) // 64 * 8, "little")
        index.append(_ENTRY.pack(sid, zero, lo, len(body)))
        bodies.append(body)
    return deflate.pack(_COUNT.pack(len(index)) + b"".join(index) + b"".join(bodies))


def read_scrape(blob: bytes, unpack: Callable[[bytes], bytes] = deflate.unpack
                ) -> Iterator[tuple[int, int, int, memoryview]]:
    """(series, zero count, lowest bin, counts' bytes) of each series in a blob."""
    raw = memoryview(unpack(blob))
    n = _COUNT.unpack_from(raw)[0]
    at = _COUNT.size + n * _ENTRY.size
    for sid, zero, lo, size in _ENTRY.iter_unpack(raw[_COUNT.size:at]):
        yield sid, zero, lo, raw[at:at + size]
        at += size
