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
from operator import lt

from ..proxy.latency import LatencySketch
from .queries import Key, MatcherSpec, Vector, bucket_quantile
from .series import Matcher, group_key, matchers
from .store import SKETCH_METRIC, Record, SeriesInfo, Store, picker
from .window import Window, window


class EmbeddedBackend:
    """Primitives over a ``Store``; ``Queries(EmbeddedBackend(store))`` adds stat/edges."""

    name = "embedded"
    has_sketches = True

    def __init__(self, store: Store, scrape_interval: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.scrape_interval = scrape_interval
        self.clock = clock

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
        return self._increase_many(self.store.select(metric, matchers(match)), windows, by,
                                   rate)

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
        return self._increase_many(series, [w], by, rate)[0]

    def _plans(self, series: list[SeriesInfo], windows: list[Window]):
        """Per proxy: its series, the (begin, end) records of each window as
        (tier, time), and those records; one timeline query per tier, one fetch.

        Each edge reads the finest tier still holding it: raw while kept, else the
        history (a 7 h window starts in the history and ends in raw data).
        """
        store = self.store
        lo, hi = min(w.start for w in windows), max(w.end for w in windows)
        tiers = [(w, store.tier_for(w.start), store.tier_for(w.end)) for w in windows]
        for target, ss in _by_target(series).items():
            lines: dict[int, list[float]] = {}
            plan: list[tuple[tuple[int, float] | None, tuple[int, float] | None]] = []
            for w, tb, te in tiers:
                tl = _line(store, lines, target, te, lo, hi, windows)
                j = bisect_right(tl, w.end) - 1
                if j < 0 or tl[j] <= w.start:
                    plan.append((None, None))
                    continue
                end = (te, tl[j])
                tl = _line(store, lines, target, tb, lo, hi, windows)
                i = bisect_right(tl, w.start) - 1
                if i < 0:  # appeared inside the window: its first scrape is the baseline
                    i = 0
                begin = (tb, tl[i]) if i < len(tl) and tl[i] < end[1] else None
                plan.append((begin, end))
            recs: dict[tuple[int, float], Record] = {}
            for tier in lines:
                need = {p[1] for pair in plan for p in pair if p is not None and p[0] == tier}
                for ts, rec in store.records(target, tier, need).items():
                    recs[(tier, ts)] = rec
            yield ss, plan, recs

    def _increase_many(self, series: list[SeriesInfo], windows: list[Window],
                       by: Sequence[str], rate: bool) -> list[Vector]:
        """``increase`` (or ``rate``) over each window. A range query asks ~60 windows
        whose edges are shared records, so each record's values are read once, and a
        window whose counters all grew is the difference of two per-group sums."""
        out: list[Vector] = [{} for _ in windows]
        for ss, plan, recs in self._plans(series, windows):
            edges = _Edges(ss, recs, by)
            keys, read, summed = edges.keys, edges.read, edges.summed
            for vec, (begin_at, end_at) in zip(out, plan, strict=True):
                if end_at is None or (rate and begin_at is None):
                    continue
                per = 1.0 / (end_at[1] - begin_at[1]) if rate and begin_at is not None else 1.0
                if begin_at is None:
                    for k, vb in zip(keys, read(end_at), strict=True):
                        if vb is not None and vb == vb:
                            vec[k] = vec.get(k, 0.0)
                    continue
                ev, bv = read(end_at), read(begin_at)
                se, sb = summed(end_at), summed(begin_at)
                if se is not None and sb is not None and not any(map(lt, ev, bv)):  # type: ignore[arg-type]
                    for k, x in se.items():
                        vec[k] = vec.get(k, 0.0) + (x - sb[k]) * per
                    continue
                for k, vb, va in zip(keys, ev, bv, strict=True):
                    if vb is None or vb != vb:  # absent, or NaN
                        continue
                    d = vb - va if va is not None and va == va else vb
                    if d < 0:  # reset state lost (an idle proxy outlived raw data)
                        d = vb
                    vec[k] = vec.get(k, 0.0) + d * per
        return out

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


def _line(store: Store, lines: dict[int, list[float]], target: int, tier: int, lo: float,
          hi: float, windows: list[Window]) -> list[float]:
    """The record times of ``target`` the windows need: the whole timeline for a
    range query, three index lookups for one window."""
    tl = lines.get(tier)
    if tl is None:
        if len(windows) == 1:
            tl = store.around(target, tier, windows[0].start, windows[0].end)
        else:
            tl = store.timeline(target, tier, lo, hi)
        lines[tier] = tl
    return tl


class _Edges:
    """One proxy's records at window edges, for ``_increase_many``: each record's
    values of the series are read once (one C-level pick from its array when all of
    them are in its hot part, as usual), and summed per group once."""

    __slots__ = ("ids", "keys", "recs", "values", "sums", "groups", "_pos", "_pick")

    def __init__(self, ss: list[SeriesInfo], recs: dict[tuple[int, float], Record],
                 by: Sequence[str]) -> None:
        self.ids = [s.id for s in ss]
        self.keys = [group_key(s.labels, by) for s in ss]
        self.recs = recs
        self.values: dict[tuple[int, float], Sequence[float | None]] = {}
        self.sums: dict[tuple[int, float], dict[Key, float] | None] = {}
        at: dict[Key, list[int]] = {}
        for i, k in enumerate(self.keys):
            at.setdefault(k, []).append(i)
        #: each group with the picker of its series' values
        self.groups = [(k, picker(idx)) for k, idx in at.items()]
        #: the picker for records of the schema whose positions are ``_pos``
        self._pos: dict[int, int] | None = None
        self._pick: Callable[[Sequence[float]], Sequence[float]] | None = None

    def read(self, at: tuple[int, float]) -> Sequence[float | None]:
        v = self.values.get(at)
        if v is None:
            rec = self.recs[at]
            if rec.pos is not self._pos:
                idx = list(map(rec.pos.get, self.ids))
                self._pos = rec.pos
                self._pick = None if None in idx or max(idx, default=0) >= rec.n_hot \
                    else picker(idx)  # type: ignore[arg-type]
            pick = self._pick
            v = self.values[at] = pick(rec.hot) if pick is not None \
                else list(map(rec.get, self.ids))
        return v

    def summed(self, at: tuple[int, float]) -> dict[Key, float] | None:
        """Per group; None when a value is absent or NaN."""
        if at in self.sums:
            return self.sums[at]
        v = self.read(at)
        total: dict[Key, float] | None = None
        if None not in v:
            total = {k: sum(pick(v)) for k, pick in self.groups}  # type: ignore[arg-type]
            if any(x != x for x in total.values()):  # a NaN makes its group's sum NaN
                total = None
        self.sums[at] = total
        return total


def _by_target(series: list[SeriesInfo]) -> dict[int, list[SeriesInfo]]:
    out: dict[int, list[SeriesInfo]] = {}
    for s in series:
        out.setdefault(s.target, []).append(s)
    return out
