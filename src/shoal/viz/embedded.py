"""The query primitives answered from the embedded store.

Window convention (documented for parity with Prometheus): ``increase`` over a
window (start, end] is ``v(last scrape <= end) - v(last scrape <= start)`` on the
reset-adjusted counters, per series, summed by the ``by`` labels. A counter that
went down is taken to have restarted at 0 (Prometheus' rule), so nothing is lost
across proxy restarts. There is no extrapolation: the value is what the counters
counted between those two scrapes, an integer for integer counters. When a proxy
has no scrape at or before ``start`` (it appeared inside the window), its first
scrape inside the window is the baseline, as Prometheus counts only from the
first sample it holds; but a proxy first scraped soon after its start has a
record of zeros at its start time (see ``Store``), so it counts from there. Prometheus' ``increase`` extrapolates the same difference
to the window's edges, so the two agree exactly when scrapes fall on the edges
and within one scrape interval's worth of traffic otherwise.

``rate`` is that difference divided by the time between the two scrapes (not by
the window): an unbiased per-second rate that does not dip while the window's
end is not yet scraped, which is what Prometheus' extrapolation approximates.
Sketch deltas use the same (start, end] rule, so latency and counts describe the
same requests.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from collections.abc import Callable, Hashable, Sequence
from itertools import compress, repeat
from operator import add, attrgetter, itemgetter, le, lt, mul, sub, truediv

from ..proxy.latency import LatencySketch
from .queries import Key, MatcherSpec, Vector, bucket_quantile
from .series import Matcher, group_key, matchers
from .sketchrows import TIER_HISTORY, TIER_RAW
from .store import SKETCH_METRIC, Record, SeriesInfo, Span, Store, picker
from .window import Window, window


class EmbeddedBackend:
    """Primitives over a ``Store``; ``Queries(EmbeddedBackend(store))`` adds stat/edges."""

    name = "embedded"
    has_sketches = True

    def __init__(self, store: Store, scrape_interval: float = 10.0,
                 clock: Callable[[], float] = time.time, columns: bool = True) -> None:
        self.store = store
        self.scrape_interval = scrape_interval
        self.clock = clock
        #: range queries of counters read raw data from the store's columns (off: from
        #: its records, as every other query does)
        self.columns = columns

    def window(self, spec: str | float, at: float | None = None) -> Window:
        return window(spec, self.clock() if at is None else at, self.scrape_interval)

    # -- counters and gauges ----------------------------------------------

    def increase(self, metric: str, match: MatcherSpec = None, window: str | float = "1m",
                 by: Sequence[str] = (), at: float | None = None) -> Vector:
        """``sum(increase(metric{match}[window])) by (by)`` at ``at`` (default now)."""
        w = self.window(window, at)
        return self._increase(self.store.select(metric, matchers(match)), w, by)

    def rate(self, metric: str, match: MatcherSpec = None, window: str | float = "1m",
             by: Sequence[str] = (), at: float | None = None) -> Vector:
        """``sum(rate(metric{match}[window])) by (by)``: per second."""
        w = self.window(window, at)
        return self._increase(self.store.select(metric, matchers(match)), w, by, rate=True)

    def gauge(self, metric: str, match: MatcherSpec = None, window: str | float = "1m",
              by: Sequence[str] = (), at: float | None = None) -> Vector:
        """``sum(metric{match}) by (by)`` from each proxy's last scrape inside the window."""
        return self.gauge_range(metric, match, [self.window(window, at).end], window, by)[0]

    def increase_range(self, metric: str, match: MatcherSpec, times: Sequence[float],
                       window: str | float, by: Sequence[str] = (), rate: bool = False
                       ) -> list[Vector]:
        """``increase`` (or ``rate``) at each of ``times``: one timeline per proxy."""
        windows = [self.window(window, t) for t in times]
        out = _Vectors(len(windows))
        self._increase_many(self.store.select(metric, matchers(match)), windows, by, rate, out)
        return out.vectors

    def increase_series(self, metric: str, match: MatcherSpec, times: Sequence[float],
                        window: str | float, by: Sequence[str] = (), rate: bool = False
                        ) -> dict[Key, list[tuple[float, float]]]:
        """``increase_range`` as ``Queries.series`` gives it: per group, its (time, value)
        points, groups in the order the vectors would give them. Summed per group
        across windows at once, without a vector per window (a chart has ~120)."""
        windows = [self.window(window, t) for t in times]
        out = _Series(len(windows))
        self._increase_many(self.store.select(metric, matchers(match)), windows, by, rate, out)
        return out.points(times)

    def gauge_range(self, metric: str, match: MatcherSpec, times: Sequence[float],
                    window: str | float, by: Sequence[str] = ()) -> list[Vector]:
        windows = [self.window(window, t) for t in times]
        out: list[Vector] = [{} for _ in windows]
        for ss, plan, recs in self._plans(self.store.select(metric, matchers(match)), windows):
            for vec, (_, end_at) in zip(out, plan, strict=True):
                end = recs.get(end_at) if end_at is not None else None
                if end is None:
                    continue
                for s in ss:
                    v = end.get(s.id)
                    if v is not None and not math.isnan(v):
                        k = group_key(s.labels, by)
                        vec[k] = vec.get(k, 0.0) + v
        return out

    def _increase(self, series: list[SeriesInfo], w: Window, by: Sequence[str],
                  rate: bool = False) -> Vector:
        out = _Vectors(1)
        self._increase_many(series, [w], by, rate, out)
        return out.vectors[0]

    def _plans(self, series: list[SeriesInfo], windows: list[Window]):
        """Per proxy: its series, the (begin, end) records of each window as
        (tier, time), and those records.

        A window (start, end] ends at the last record at or before its end and
        begins at the last one at or before its start (or, for a proxy that
        appeared inside it, at its first record). One window finds them with three
        index lookups; a range query reads the record times it spans, or, when they
        would be many more than its edges (hours scraped every 10 s), makes one
        index probe per edge. Each edge reads the finest tier still holding it: raw
        while kept, else the history (a 7 h window starts in the history and ends in
        raw data).
        """
        plan = _Planner(self, windows)
        for target, ss in _by_target(series).items():
            yield plan(target, ss)

    def _increase_many(self, series: list[SeriesInfo], windows: list[Window],
                       by: Sequence[str], rate: bool, out: _Sums) -> None:
        """Add ``increase`` (or ``rate``) over each window to ``out``. A range query asks
        ~120 windows whose edges are shared records, so each record's values are read
        and summed per group once, and a window over which no counter went down (the
        usual case: the store keeps counters reset-adjusted) is the difference of two
        sums. A range reads the store's columns (``_span_columns``); a proxy whose
        columns cannot answer, and a single window, read records."""
        planner = _Planner(self, windows)
        spans = self.columns and len(windows) > 1
        for target, ss in _by_target(series).items():
            cols = self._span_columns(target, ss, planner.tiers, by, rate) if spans else None
            if cols is None:
                self._by_records(planner(target, ss), by, rate, out)
            else:
                out.columns(*cols)

    @staticmethod
    def _by_records(planned, by: Sequence[str], rate: bool, out: _Sums) -> None:
        """Add one proxy's increase over each window of its plan to ``out``."""
        ss, plan, recs = planned
        edges = _Edges(ss, recs, by)
        cols = edges.columns(plan, rate)
        if cols is not None:
            out.columns(*cols)
            return
        keys, gkeys, read = edges.keys, edges.gkeys, edges.read
        at, sums, bad = edges.chain()
        add = out.add
        for w, (begin_at, end_at) in enumerate(plan):
            if end_at is None or (rate and begin_at is None):
                continue
            per = 1.0 / (end_at[1] - begin_at[1]) if rate and begin_at is not None else 1.0
            if begin_at is None:
                for k, vb in zip(keys, read(end_at), strict=True):
                    if vb is not None and vb == vb:
                        out.touch(w, k)
                continue
            i, j = at[begin_at], at[end_at]
            if bad[i] == bad[j]:  # every step from begin to end grew or stayed
                for k, x, y in zip(gkeys, sums[j], sums[i], strict=True):  # type: ignore[arg-type]
                    add(w, k, (x - y) * per)
                continue
            for k, vb, va in zip(keys, read(end_at), read(begin_at), strict=True):
                if vb is None or vb != vb:  # absent, or NaN
                    continue
                d = vb - va if va is not None and va == va else vb
                if d < 0:  # reset state lost (an idle proxy outlived raw data)
                    d = vb
                add(w, k, d * per)

    def _span_columns(self, target: int, ss: list[SeriesInfo],
                      tiers: Sequence[tuple[Window, int, int]], by: Sequence[str], rate: bool
                      ) -> tuple[list[int], dict[Key, list[float]]] | None:
        """``_Edges.columns`` for a range from the store's columns of the proxy's series
        (``Store.span``), and the history's records for edges in the history (a 6 h
        chart's first window starts there): the same windows' edges, the same sums in
        the same order, without a record per raw edge. ``tiers`` has each window and
        the tiers of its start and end (as ``_Planner`` finds them). None where the
        records path's ``columns`` would decline for a reason the records decide
        (a series that went down, NaN, absent), and then the records decide."""
        raw_edges = [w.end for w, _, te in tiers if te == TIER_RAW]
        if not raw_edges:
            return None  # a range wholly in the history: its records are few
        flat = [x for x, (_, tb, _) in enumerate(tiers) if tb == TIER_RAW]
        starts = [tiers[x][0].start for x in flat]
        span = self.store.span(target, min(min(starts, default=math.inf), min(raw_edges)),
                               max(raw_edges))
        line = span.line
        ends = [tiers[x][0].end for x in flat]
        # a chart's windows abut (each one's start is the previous one's end): one
        # bisect per distinct edge
        edges = set(starts).union(ends)
        where = dict(zip(edges, map(bisect_right, repeat(line), edges), strict=True))
        je = list(map(where.__getitem__, ends))
        jb = list(map(where.__getitem__, starts))
        # a window counts when a record is inside it: the last one at or before its
        # end is later than the last one at or before its start; a proxy with none at
        # or before the start counts from its first record (index 0 of the line),
        # unless that is the end's: then the window has no increase (0) and no rate
        inside = [x for x, y in enumerate(map(lt, jb, je)) if y]
        counted = [flat[x] for x in inside]
        ib = [jb[x] - 1 for x in inside]
        ie = [je[x] - 1 for x in inside]
        if ib and min(ib) < 0:
            keep = [x for x, b in enumerate(ib) if b >= 0 or ie[x] > 0 or not rate]
            counted = [counted[x] for x in keep]
            ib = [max(ib[x], 0) for x in keep]
            ie = [ie[x] for x in keep]
        hist: list[tuple[int, int, int]] = []  # (window, begin, end): history rows < 0
        hline: list[float] = []
        if len(flat) < len(tiers):
            hist, hline = self._history_edges(target, span, tiers, rate)
            if hist:  # windows in order: a ``_Series`` sink relies on it
                merged = sorted([*zip(counted, ib, ie, strict=True), *hist])
                counted, ib, ie = map(list, zip(*merged, strict=True))  # type: ignore[assignment]
        if not counted:
            return None
        ids = [s.id for s in ss]
        rows = sorted(set(ib).union(ie))
        if rows[0] < 0:
            columns, rows = self._with_history(target, span, hline, ids, rows)
        else:
            columns = span.columns(ids, rows)
        if len(rows) < 2:
            return None  # nothing to check the values against: the records decide
        for col in columns:
            if not all(map(le, col, col[1:])):  # went down, or NaN (or absent)
                return None
        at = dict(zip(rows, range(len(rows)), strict=True))
        xb = list(map(at.__getitem__, ib))
        xe = list(map(at.__getitem__, ie))
        per = None
        if rate:
            time = line.__getitem__ if not hline else \
                (lambda r: line[r] if r >= 0 else hline[-1 - r])
            per = list(map(truediv, repeat(1.0), map(sub, map(time, ie), map(time, ib))))
        groups: dict[Key, list[Sequence[float]]] = {}
        for s, col in zip(ss, columns, strict=True):
            groups.setdefault(group_key(s.labels, by), []).append(col)
        out: dict[Key, list[float]] = {}
        for k, cols in groups.items():
            sums = list(map(sum, zip(*cols, strict=True)))
            d = list(map(sub, map(sums.__getitem__, xe), map(sums.__getitem__, xb)))
            out[k] = d if per is None else list(map(mul, d, per))
        return counted, out

    def _history_edges(self, target: int, span: Span,
                       tiers: Sequence[tuple[Window, int, int]], rate: bool
                       ) -> tuple[list[tuple[int, int, int]], list[float]]:
        """Each window that starts in the history and counts, as (window, begin row,
        end row) by ``_Planner``'s rules (begin = end: an increase of 0), a row being
        an index of ``span.line`` (raw) or ``-1 - i`` for the i-th time of the
        history's records, the second list."""
        store, line = self.store, span.line
        mixed = [(x, w, te) for x, (w, tb, te) in enumerate(tiers) if tb != TIER_RAW]
        hline = store.timeline(target, TIER_HISTORY, min(w.start for _, w, _ in mixed),
                               max(w.end for _, w, _ in mixed))
        out: list[tuple[int, int, int]] = []
        for x, w, te in mixed:
            if te == TIER_RAW:
                e = bisect_right(line, w.end) - 1
                end = line[e] if e >= 0 else None
            else:
                e = bisect_right(hline, w.end) - 1
                end = hline[e] if e >= 0 else None
                e = -1 - e
            if end is None or end <= w.start:
                continue
            b = bisect_right(hline, w.start) - 1
            if b < 0:  # appeared inside the window: its first record is the baseline
                b = 0 if hline else -1
            if b < 0 or not hline[b] < end:
                if not rate:
                    out.append((x, e, e))  # an increase of 0
                continue
            out.append((x, -1 - b, e))
        return out, hline

    def _with_history(self, target: int, span: Span, hline: list[float], ids: list[int],
                      rows: list[int]) -> tuple[list[list[float]], list[int]]:
        """The values of ``ids`` at ``rows`` (raw rows >= 0, history rows < 0), rows in
        the records path's order (time, then tier), and that order."""
        line = span.line
        raw = [r for r in rows if r >= 0]
        hist = sorted((r for r in rows if r < 0), reverse=True)  # oldest first
        times = [hline[-1 - r] for r in hist]
        recs = self.store.records(target, TIER_HISTORY, times)
        hcols = [[_hot(recs[t], sid) for t in times] for sid in ids]
        rcols = span.columns(ids, raw) if raw else [[] for _ in ids]
        if not raw or times[-1] < line[raw[0]]:  # as usual: the history's come first
            return [h + r for h, r in zip(hcols, rcols, strict=True)], hist + raw
        order = sorted([(line[r], TIER_RAW, r) for r in raw] +
                       [(t, TIER_HISTORY, r) for t, r in zip(times, hist, strict=True)])
        where = {r: i for i, r in enumerate(raw)}
        where.update((r, len(raw) + i) for i, r in enumerate(hist))
        pos = [where[r] for _, _, r in order]
        return [list(map((r + h).__getitem__, pos)) for h, r in zip(hcols, rcols, strict=True)], \
            [r for _, _, r in order]

    # -- latency ----------------------------------------------------------

    def histogram_quantile(self, q: float, metric_bucket: str, match: MatcherSpec = None,
                           window: str | float = "1m", by: Sequence[str] = (),
                           at: float | None = None) -> dict[Key, float | None]:
        """``histogram_quantile(q, sum(increase(metric_bucket{match}[w])) by (le, by))``."""
        w = self.window(window, at)
        inc = self._increase(self.store.select(metric_bucket, matchers(match)), w,
                             (*by, "le"))
        groups: dict[Key, list[tuple[float, float]]] = {}
        for k, v in inc.items():
            try:
                le = float(k[-1])
            except ValueError:
                continue
            groups.setdefault(k[:-1], []).append((le, v))
        return {k: bucket_quantile(q, b) for k, b in groups.items()}

    def sketches(self, match: MatcherSpec = None, window: str | float = "1m",
                 by: Sequence[str] = (), at: float | None = None) -> dict[Key, LatencySketch]:
        """The merged latency sketches of the window, per group."""
        w = self.window(window, at)
        ms = matchers(match)
        if not any(m.label == "dst" for m in ms):
            # proxies also publish per-route sketches (labelled dst/rt_route): a
            # workload's latency must not count those requests a second time
            ms.append(Matcher("dst", ""))
        groups: dict[int, Hashable] = {
            s.id: group_key(s.labels, by)
            for s in self.store.select(SKETCH_METRIC, ms)}
        return self.store.sketch_sum(groups, w.start, w.end)  # type: ignore[return-value]

    def sketch_quantile(self, q: float, match: MatcherSpec = None, window: str | float = "1m",
                        by: Sequence[str] = (), at: float | None = None
                        ) -> dict[Key, float | None]:
        """The q-quantile (ms) of the requests in the window, within 1 % relative error."""
        return {k: s.quantile(q) for k, s in self.sketches(match, window, by, at).items()}

    def latency_quantiles(self, qs: Sequence[float], match: MatcherSpec = None,
                          window: str | float = "1m", by: Sequence[str] = (),
                          at: float | None = None) -> dict[Key, list[float | None]]:
        """Several quantiles (ms) per group: from the sketches, or from the Linkerd
        buckets for groups without sketches (a proxy that does not serve /latency)."""
        out = {k: [s.quantile(q) for q in qs]
               for k, s in self.sketches(match, window, by, at).items() if s.count}
        counts = self.increase("response_latency_ms_count", match, window, by, at)
        if any(v > 0 and k not in out for k, v in counts.items()):
            w = self.window(window, at)
            inc = self._increase(self.store.select("response_latency_ms_bucket",
                                                   matchers(match)), w, (*by, "le"))
            buckets: dict[Key, list[tuple[float, float]]] = {}
            for k, v in inc.items():
                if k[:-1] not in out:
                    buckets.setdefault(k[:-1], []).append((float(k[-1]), v))
            for k, b in buckets.items():
                out[k] = [bucket_quantile(q, b) for q in qs]
        return out

    # -- inventory --------------------------------------------------------

    def workloads(self, match: MatcherSpec = None, window: str | float = "1m",
                  at: float | None = None) -> list[dict[str, str]]:
        """Workload labels of the proxies scraped inside the window."""
        w = self.window(window, at)
        ms = matchers(match)
        out = []
        for tid, labels in self.store.target_labels().items():
            if w.start < self.store.target_last_seen(tid) and all(m.matches(labels) for m in ms):
                if self.store.record_at(tid, w.end, after=w.start) is not None:
                    out.append(labels)
        return out


class _Planner:
    """Finds each proxy's window edges for ``EmbeddedBackend._plans``."""

    def __init__(self, backend: EmbeddedBackend, windows: list[Window]) -> None:
        store = self.store = backend.store
        tiers = self.tiers = [(w, store.tier_for(w.start), store.tier_for(w.end))
                              for w in windows]
        asks = self.asks = {}
        for w, tb, te in tiers:
            asks.setdefault(tb, set()).add(w.start)
            asks.setdefault(te, set()).add(w.end)
        self.lo, self.hi = min(w.start for w in windows), max(w.end for w in windows)
        self.one = windows[0] if len(windows) == 1 else None
        # a time read costs ~1/6 of a probe: probe when the times would be 4x the edges
        every = {TIER_RAW: backend.scrape_interval, TIER_HISTORY: store.config.history_step}
        self.probe = {tier for tier, ts in asks.items()
                      if self.one is None and (self.hi - self.lo) / every[tier] > 4 * len(ts)}

    def __call__(self, target: int, ss: list[SeriesInfo]):
        store, tiers, asks, probe = self.store, self.tiers, self.asks, self.probe
        one, lo, hi = self.one, self.lo, self.hi
        lines: dict[int, list[float]] = {}
        last: dict[int, dict[float, float | None]] = {}
        for tier, ts in asks.items():
            if tier in probe:
                last[tier] = store.last_at(target, tier, ts)
                continue
            line = lines[tier] = store.around(target, tier, one.start, one.end) \
                if one is not None else store.timeline(target, tier, lo, hi)
            last[tier] = {t: _last(line, t) for t in ts}
        plan: list[tuple[tuple[int, float] | None, tuple[int, float] | None]] = []
        for w, tb, te in tiers:
            e = last[te][w.end]
            if e is None or e <= w.start:
                plan.append((None, None))
                continue
            b = last[tb][w.start]
            if b is None:  # appeared inside the window: its first scrape is the baseline
                b = store.first_after(target, tb, w.start) if tb in probe else \
                    _first_after(lines[tb], w.start)
            plan.append(((tb, b) if b is not None and b < e else None, (te, e)))
        recs: dict[tuple[int, float], Record] = {}
        for tier in asks:
            need = {p[1] for pair in plan for p in pair if p is not None and p[0] == tier}
            for ts, rec in store.records(target, tier, need).items():
                recs[(tier, ts)] = rec
        return ss, plan, recs


def _last(line: list[float], t: float) -> float | None:
    """The last time in the sorted ``line`` at or before ``t``."""
    i = bisect_right(line, t)
    return line[i - 1] if i else None


def _first_after(line: list[float], t: float) -> float | None:
    i = bisect_right(line, t)
    return line[i] if i < len(line) else None


class _Edges:
    """One proxy's records at window edges, for ``_increase_many``: each record's
    values of the series are read once (one C-level pick from its array when all of
    them are in its hot part, as usual), and summed per group once, for all windows
    at once (``columns``) or window by window (``chain``)."""

    __slots__ = ("ids", "keys", "gkeys", "recs", "values", "_groups", "_pos", "_pick")

    def __init__(self, ss: list[SeriesInfo], recs: dict[tuple[int, float], Record],
                 by: Sequence[str]) -> None:
        self.ids = [s.id for s in ss]
        self.keys = [group_key(s.labels, by) for s in ss]
        self.recs = recs
        self.values: dict[tuple[int, float], Sequence[float | None]] = {}
        at: dict[Key, list[int]] = {}
        for i, k in enumerate(self.keys):
            at.setdefault(k, []).append(i)
        #: the groups, and the picker of each one's series' values
        self.gkeys = list(at)
        self._groups = [picker(idx) for idx in at.values()]
        #: the picker for records of the schema whose positions are ``_pos``
        self._pos: dict[int, int] | None = None
        self._pick: Callable[[Sequence[float]], Sequence[float]] | None = None

    def read(self, at: tuple[int, float]) -> Sequence[float | None]:
        v = self.values.get(at)
        if v is None:
            rec = self.recs[at]
            pick = self._picker(rec)
            v = self.values[at] = pick(rec.hot) if pick is not None \
                else list(map(rec.get, self.ids))
        return v

    def columns(self, plan: Sequence[tuple[tuple[int, float] | None, tuple[int, float] | None]],
                rate: bool) -> tuple[list[int], dict[Key, list[float]]] | None:
        """The windows of ``plan`` this proxy counts in, and its increase (or rate) over
        each of them per group, in C-level passes over its records: when their
        records share one schema holding every series in its hot part and no series
        went down (nor is NaN) from one record to the next, as usual. None otherwise,
        or when a window counts from the proxy's appearance: ``chain`` then sorts it
        out window by window."""
        counted = [w for w, (b, e) in enumerate(plan) if e is not None and b is not None]
        if not counted or (not rate and len(counted) != sum(e is not None for _, e in plan)):
            return None
        recs = self.recs
        order = sorted(recs, key=_time_then_tier)
        rs = list(map(recs.__getitem__, order))
        pos = rs[0].pos
        if list(map(_POS, rs)).count(pos) != len(rs):
            return None
        pick = self._picker(rs[0])
        if pick is None:
            return None
        values = list(map(pick, map(_HOT, rs)))
        for series in zip(*values, strict=True):
            if not all(map(le, series, series[1:])):
                return None
        at = dict(zip(order, range(len(order)), strict=True))
        begins = [plan[w][0] for w in counted]
        ends = [plan[w][1] for w in counted]
        ib = list(map(at.__getitem__, begins))
        ie = list(map(at.__getitem__, ends))
        per = list(map(truediv, repeat(1.0), map(sub, map(_TIME, ends), map(_TIME, begins)))) \
            if rate else None
        out: dict[Key, list[float]] = {}
        for k, group in zip(self.gkeys, self._groups, strict=True):
            sums = list(map(sum, map(group, values)))
            d = list(map(sub, map(sums.__getitem__, ie), map(sums.__getitem__, ib)))
            out[k] = d if per is None else list(map(mul, d, per))
        return counted, out

    def _picker(self, rec: Record) -> Callable[[Sequence[float]], Sequence[float]] | None:
        """The pick of the series' values from records laid out as ``rec``: None when
        one is absent or in the buckets' part."""
        if rec.pos is not self._pos:
            idx = list(map(rec.pos.get, self.ids))
            self._pos = rec.pos
            self._pick = None if None in idx or max(idx, default=0) >= rec.n_hot \
                else picker(idx)  # type: ignore[arg-type]
        return self._pick

    def chain(self) -> tuple[dict[tuple[int, float], int], list[list[float] | None],
                             list[int]]:
        """The records in time order: where each one is, its sums per group (in
        ``gkeys`` order; None when a value is absent or NaN), and how many *bad*
        steps lead up to it, a step from one record to the next being bad when a
        counter went down or either end has no sums. Over a window from record i to
        record j > i the increase is ``sums[j] - sums[i]`` when ``bad[i] == bad[j]``:
        every counter grew or stayed (sums over such a run cannot hide a reset)."""
        order = sorted(self.recs, key=_time_then_tier)
        sums: list[list[float] | None] = []
        bad: list[int] = []
        n = 0
        prev: Sequence[float | None] = ()
        groups = self._groups
        for i, at in enumerate(order):
            v = self.read(at)
            total = None
            if None not in v:
                total = [sum(pick(v)) for pick in groups]  # type: ignore[arg-type]
                t = sum(total)
                if t != t:  # a NaN makes its group's sum NaN
                    total = None
            if i and (total is None or sums[-1] is None or any(map(lt, v, prev))):  # type: ignore[arg-type]
                n += 1
            sums.append(total)
            bad.append(n)
            prev = v
        return {at: i for i, at in enumerate(order)}, sums, bad


def _time_then_tier(at: tuple[int, float]) -> tuple[float, int]:
    return at[1], at[0]


_TIME = itemgetter(1)
_POS, _HOT = attrgetter("pos"), attrgetter("hot")


def _by_target(series: list[SeriesInfo]) -> dict[int, list[SeriesInfo]]:
    out: dict[int, list[SeriesInfo]] = {}
    for s in series:
        out.setdefault(s.target, []).append(s)
    return out


def _hot(rec: Record, sid: int) -> float:
    """``sid``'s value in ``rec``, NaN when absent or among the buckets (no column
    holds those either)."""
    i = rec.pos.get(sid)
    return rec.hot[i] if i is not None and i < rec.n_hot else math.nan


class _Sums:
    """Where ``_increase_many`` adds each proxy's increase per window and group: as
    columns (the windows a proxy counts in, and its values there, per group), or one
    value at a time (``add``; ``touch`` marks a group present in a window with
    nothing added). Each window's sum adds the proxies in the order they come."""

    def columns(self, counted: list[int], cols: dict[Key, list[float]]) -> None:
        raise NotImplementedError

    def add(self, w: int, k: Key, x: float) -> None:
        raise NotImplementedError

    def touch(self, w: int, k: Key) -> None:
        raise NotImplementedError


class _Vectors(_Sums):
    """One vector per window (``increase_range``)."""

    def __init__(self, n: int) -> None:
        self.vectors: list[Vector] = [{} for _ in range(n)]

    def columns(self, counted: list[int], cols: dict[Key, list[float]]) -> None:
        out = self.vectors
        for k, col in cols.items():
            for w, x in zip(counted, col, strict=True):
                vec = out[w]
                vec[k] = vec.get(k, 0.0) + x

    def add(self, w: int, k: Key, x: float) -> None:
        vec = self.vectors[w]
        vec[k] = vec.get(k, 0.0) + x

    def touch(self, w: int, k: Key) -> None:
        vec = self.vectors[w]
        vec[k] = vec.get(k, 0.0)


class _Series(_Sums):
    """One column per group (``increase_series``): its sum in each window (0.0 until
    a proxy adds to it, as a vector's ``get(k, 0.0)``), the windows it is present in,
    and where it first appeared (window, then arrival), which orders the groups as
    a walk over the windows' vectors would."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.sums: dict[Key, list[float]] = {}
        self.seen: dict[Key, bytearray] = {}
        self.first: dict[Key, tuple[int, int]] = {}
        self.arrivals = 0

    def _group(self, k: Key, w: int) -> list[float]:
        col = self.sums.get(k)
        if col is None:
            col = self.sums[k] = [0.0] * self.n
            self.seen[k] = bytearray(self.n)
        first = self.first.get(k)
        if first is None or w < first[0]:
            self.first[k] = (w, self.arrivals)
        self.arrivals += 1
        return col

    def columns(self, counted: list[int], cols: dict[Key, list[float]]) -> None:
        if not counted:
            return
        for k, xs in cols.items():
            col = self._group(k, min(counted))
            if len(counted) == self.n:  # every window, in order
                col[:] = map(add, col, xs)
            else:
                for w, x in zip(counted, xs, strict=True):
                    col[w] += x
            seen = self.seen[k]
            for w in counted:
                seen[w] = 1

    def add(self, w: int, k: Key, x: float) -> None:
        self._group(k, w)[w] += x
        self.seen[k][w] = 1

    def touch(self, w: int, k: Key) -> None:
        self._group(k, w)
        self.seen[k][w] = 1

    def points(self, times: Sequence[float]) -> dict[Key, list[tuple[float, float]]]:
        return {k: list(compress(zip(times, self.sums[k], strict=True), self.seen[k]))
                for k in sorted(self.first, key=self.first.__getitem__)}
