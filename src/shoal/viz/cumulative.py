"""Latency sketches as prefix sums, so a window costs two rows per series.

The store keeps each scrape's sketch *delta* (``sketchrows``) for the raw retention.
When a minute closes, the minute's deltas are added to each series' running total
and that total is written to the ``cumulative`` table at the minute's end (only for
series that saw requests in it). When a history step (10 min) closes, every series
with a row inside the step gets one at the step's end too. The sketch of any
window ``(a, b]`` is then

    cum(B) - cum(A) + raw deltas in (a, A] + raw deltas in (B, b]

with ``A``, ``B`` the whole minutes inside the window, and ``cum(X)`` the newest row
at or before ``X``: two rows per series, however long the window, where summing
rollups took one row per minute, step or hour between the edges (20-25 rows per
series for six hours). Sums are integers with a 64-bit field per bin
(``DenseSum``), and a running total never decreases, so a subtraction never
borrows across fields.

Minute rows are kept for the raw retention plus one step; older ones are thinned
to the step rows, kept for the history retention, so windows older than the raw
retention start and end on history steps, as the history's counters do. The
newest row of each series is kept whatever its age, so a series idle for longer
than the retention still subtracts from the right total.
"""

from __future__ import annotations

import math
import sqlite3
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping

from . import deflate
from .sketchrows import DenseSum

SCHEMA = """
CREATE TABLE IF NOT EXISTS cumulative(target INTEGER, series INTEGER, ts REAL, data BLOB,
    PRIMARY KEY(target, series, ts)) WITHOUT ROWID;
"""
MINUTE = 60.0


def _ceil(t: float, step: float) -> float:
    return float(math.ceil(t / step) * step)


def _floor(t: float, step: float) -> float:
    return float(math.floor(t / step) * step)


def plan(a: float, b: float, *, raw_floor: float, minutes_since: float,
         rolled_minute: float, rolled_step: float, step: float
         ) -> tuple[tuple[float, float] | None, list[tuple[float, float]]]:
    """How to sum ``(a, b]``: the (A, B) of the prefix sums (None: no whole minute
    inside) and the ranges of raw deltas to add.

    Minute rows exist up to ``rolled_minute`` and from ``max(raw_floor,
    minutes_since)``; before that only history steps up to ``rolled_step``. Raw
    deltas exist from ``raw_floor``.

    >>> plan(1005, 4595, raw_floor=0, minutes_since=0, rolled_minute=4560,
    ...      rolled_step=4200, step=600)
    ((1020.0, 4560.0), [(1005, 1020.0), (4560.0, 4595)])
    >>> plan(1005, 1050, raw_floor=0, minutes_since=0, rolled_minute=4560,
    ...      rolled_step=4200, step=600)
    (None, [(1005, 1050)])
    >>> plan(100, 4595, raw_floor=2000, minutes_since=0, rolled_minute=4560,
    ...      rolled_step=4200, step=600)
    ((600.0, 4560.0), [(4560.0, 4595)])
    """
    minutes_from = max(raw_floor, minutes_since)
    start = a if a >= minutes_from else _ceil(a, step)
    big_a = _ceil(a, MINUTE) if a >= minutes_from else start
    big_b = min(_floor(b, MINUTE), rolled_minute)
    if big_b < minutes_from:  # only the history's steps are left there
        big_b = min(_floor(b, step), rolled_step)
    raw_lo = a if a >= raw_floor else max(start, raw_floor)
    if big_a >= big_b:
        return None, [(raw_lo, b)] if raw_lo < b else []
    edges = [(raw_lo, big_a)] if raw_lo < big_a else []
    if big_b < b:
        edges.append((big_b, b))
    return (big_a, big_b), edges


class Cumulative:
    """The ``cumulative`` table of a store; called under the store's lock, inside
    its transactions."""

    def __init__(self, db: sqlite3.Connection, cache_bytes: int) -> None:
        self.db = db
        self.cache_bytes = cache_bytes
        #: (target, series, X) -> cum(X): a settled total never changes
        self._cache: OrderedDict[tuple[int, int, float], DenseSum] = OrderedDict()
        self._cache_size = 0
        #: minute rows are thinned up to here
        self._thinned = -math.inf
        #: (target, series) -> its newest total, as written (bounded in bytes)
        self._live: OrderedDict[tuple[int, int], DenseSum] = OrderedDict()
        self._live_size = 0

    # -- writing ------------------------------------------------------------

    def _newest(self, target: int, sid: int, before: float) -> bytes | None:
        row = self.db.execute(
            "SELECT data FROM cumulative WHERE target=? AND series=? AND ts<? "
            "ORDER BY ts DESC LIMIT 1", (target, sid, before)).fetchone()
        return row[0] if row else None

    def close_minute(self, target: int, k: float, deltas: Mapping[Hashable, DenseSum]) -> None:
        """Add the minute ``(k - 60, k]``'s deltas to their series' totals at ``k``.
        The newest totals are also kept in memory (bounded), so that closing a minute
        reads nothing back."""
        rows = []
        live = self._live
        for sid, d in deltas.items():
            key = (target, sid)
            prev = live.pop(key, None)
            total = DenseSum()
            if prev is not None:
                self._live_size -= prev.size()
                total.merge(prev)
            else:
                data = self._newest(target, sid, k)
                if data is not None:
                    total.add(data)
            total.merge(d)
            rows.append((target, sid, k, total.encode()))
            live[key] = total  # type: ignore[index]
            self._live_size += total.size()
        while self._live_size > self.cache_bytes // 2 and live:
            self._live_size -= live.popitem(last=False)[1].size()
        self.db.executemany("INSERT OR REPLACE INTO cumulative VALUES (?,?,?,?)", rows)

    def forget_live(self) -> None:
        """Drop the newest totals kept in memory (after a rolled-back transaction)."""
        self._live.clear()
        self._live_size = 0

    def close_step(self, target: int, k: float, step: float, sids: Iterable[int]) -> None:
        """A row at ``k`` for each series with one in the step ``(k - step, k)``, so
        the step rows alone still give every total once the minutes are thinned."""
        rows = []
        for sid in sids:
            row = self.db.execute(
                "SELECT ts, data FROM cumulative WHERE target=? AND series=? AND ts>? "
                "AND ts<=? ORDER BY ts DESC LIMIT 1", (target, sid, k - step, k)).fetchone()
            if row is not None and row[0] != k:
                rows.append((target, sid, k, row[1]))
        self.db.executemany("INSERT OR IGNORE INTO cumulative VALUES (?,?,?,?)", rows)

    # -- reading ------------------------------------------------------------

    def at(self, target: int, sids: Iterable[int], x: float,
           inflate: deflate.Inflater) -> dict[int, DenseSum]:
        """cum(x) of each series (absent: no total yet); ``x`` must be settled (not
        after the target's last closed minute or step)."""
        out: dict[int, DenseSum] = {}
        cache = self._cache
        for sid in sids:
            key = (target, sid, x)
            hit = cache.get(key)
            if hit is None:
                row = self.db.execute(
                    "SELECT data FROM cumulative WHERE target=? AND series=? AND ts<=? "
                    "ORDER BY ts DESC LIMIT 1", (target, sid, x)).fetchone()
                hit = DenseSum()
                if row is not None:
                    hit.add(row[0], inflate)
                cache[key] = hit
                self._cache_size += hit.size()
            else:
                cache.move_to_end(key)
            if hit.acc or hit.zero:
                out[sid] = hit
        while self._cache_size > self.cache_bytes and len(cache) > 1:
            self._cache_size -= cache.popitem(last=False)[1].size()
        return out

    # -- retention ----------------------------------------------------------

    def expire(self, series: Iterable[tuple[int, int]], thin_before: float, step: float,
               hist_cut: float) -> None:
        """For each (target, series): thin minute rows up to ``thin_before`` to the
        step rows (every closed step has one per series that moved in it), and drop
        rows up to ``hist_cut`` but the newest there, the base of everything after it.
        Runs once a step, an index range per series (the table has no index on time
        alone)."""
        if thin_before - self._thinned < step:
            return
        pairs = list(series)
        self.db.executemany(
            "DELETE FROM cumulative WHERE target=? AND series=? AND ts>? AND ts<=? "
            "AND CAST(ts AS INTEGER) % ? != 0",
            [(t, sid, self._thinned, thin_before, int(step)) for t, sid in pairs])
        self._thinned = thin_before
        self.db.executemany(
            "DELETE FROM cumulative WHERE target=?1 AND series=?2 AND ts < (SELECT max(ts) "
            "FROM cumulative WHERE target=?1 AND series=?2 AND ts<=?3)",
            [(t, sid, hist_cut) for t, sid in pairs])

    def forget_targets(self, ids: set[int]) -> None:
        self.db.executemany("DELETE FROM cumulative WHERE target=?", [(i,) for i in ids])
        for key in [key for key in self._live if key[0] in ids]:
            self._live_size -= self._live.pop(key).size()
        for key in [key for key in self._cache if key[0] in ids]:
            self._cache_size -= self._cache.pop(key).size()

    # -- rollups of older stores --------------------------------------------

    def migrate(self) -> float:
        """Running totals from the per-step and per-minute delta rollups an older
        store kept (tiers 2 and 1 of ``sketches``), which are then deleted. Minute
        totals exist only after each target's last step rollup, so the returned time
        (the latest of those) is where minute rows become whole; -inf when there
        were no steps."""
        db = self.db
        totals: dict[tuple[int, int], DenseSum] = {}
        last_step: dict[int, float] = {}
        rows = []
        for tier in (2, 1):
            for target, ts, sid, data in db.execute(
                    "SELECT target, ts, series, data FROM sketches WHERE tier=? "
                    "ORDER BY target, ts", (tier,)):
                if tier == 2:
                    last_step[target] = ts
                elif ts <= last_step.get(target, -math.inf):
                    continue  # already in the step totals
                total = totals.get((target, sid))
                if total is None:
                    total = totals[(target, sid)] = DenseSum()
                total.add(data)
                rows.append((target, sid, ts, total.encode()))
                if len(rows) >= 10_000:  # a week of a large mesh does not fit at once
                    db.executemany("INSERT OR REPLACE INTO cumulative VALUES (?,?,?,?)", rows)
                    rows.clear()
        db.executemany("INSERT OR REPLACE INTO cumulative VALUES (?,?,?,?)", rows)
        db.execute("DELETE FROM sketches WHERE tier IN (1, 2, 3)")
        return max(last_step.values(), default=-math.inf)
