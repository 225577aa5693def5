"""Embedded metrics store: SQLite in WAL mode, one transaction per scrape.

Theory of operation. One scrape of one proxy becomes one *record*: the values of
all its numeric series, in the order of a *schema* (the list of series ids, stored
once and reused while the proxy's series set does not change), packed as float64,
the histogram buckets in a second, deflated blob that only bucket quantiles
decompress (earlier versions deflated both: such records still read). Counters
are stored *reset-adjusted*: when a raw counter goes down (or the proxy's
``process_start_time_seconds`` changes) the value before the reset is added to
an offset, so the stored value never decreases and ``increase`` over any window
is ``value(last record <= end) - value(last record <= start)``: two records per
proxy, whatever the window. This counts exactly what Prometheus' reset handling
counts between the two samples; see ``embedded`` for the window convention.

When a history step closes, a proxy's raw records in it are also written as
*columns*: one row for their times, and one per hot series with its value at each
of those times (NaN where a record lacks it); when an hour closes, its steps'
columns become one chunk. A range query (a chart: ~120 windows over an hour or
six) reads the columns of the series it sums: a row per series and hour, instead
of one record per window edge and proxy. The records of the open step are read one
by one. The columns repeat the records' hot values (about a third more disk).

Latency sketches are cumulative on the proxy; the store keeps, per series and per
scrape, the *delta* since the previous scrape (only series that saw requests get
a row, see ``sketchrows``), and when a minute closes, each series' running total
of those deltas (see ``cumulative``). A window's sketch is the difference of two
totals plus the raw deltas at its edges: two rows per series, whatever the window.

Retention: raw records, their columns and raw sketch deltas live ``raw_retention``
(6 h), minute totals one history step longer; history records (the last raw record
of each history step, without the histogram buckets: the history's latency comes
from the sketches) and the totals at each step's end live ``history_retention``
(7 d). ``compact`` deletes what expired; it runs from ``ingest`` once a minute.

Crash safety: every ingest (record, new series, sketch rows, running totals, and
the per-target reset state) is one SQLite transaction, with ``synchronous=NORMAL`` in
WAL mode, which survives a killed process (only power loss can drop the last
commits). The sketches' previous cumulative values are not persisted: after a
reopen the first scrape of each proxy is the new baseline for its sketches
(counters carry on from the persisted state).

Calls are serialised by a lock, so the scraper (event loop) and API handlers in
worker threads can share one store; each call is short (one scrape, one query).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import sys
import threading
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import groupby, repeat
from operator import add, itemgetter, lt

from ..proxy.latency import LatencySketch
from . import deflate
from .cumulative import MINUTE, Cumulative, plan
from .cumulative import SCHEMA as _CUMULATIVE_SCHEMA
from .exposition import Sample, parse_labels, render_labels
from .series import Labels, Matcher
from .sketchrows import (
    ROLLUPS,
    TIER_HISTORY,
    TIER_RAW,
    Delta,
    DenseSum,
    Scraped,
    decode,
    delta_row,
    read_scrape,
    scrape_blob,
    scraped,
)

#: the name under which sketch series are kept (labels as response_latency_ms)
SKETCH_METRIC = "response_latency_ms_sketch"
PROCESS_START = "process_start_time_seconds"
#: a proxy first scraped at most this long after its start counts from zero at its start
FRESH_START = 120.0
#: raw columns of a closed hour are kept as one chunk (those of the open hour, per step)
HOUR = 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS targets(id INTEGER PRIMARY KEY, key TEXT UNIQUE, labels TEXT);
CREATE TABLE IF NOT EXISTS series(id INTEGER PRIMARY KEY, target INTEGER, name TEXT,
    labels TEXT, counter INTEGER, sketch INTEGER);
CREATE TABLE IF NOT EXISTS schemas(id INTEGER PRIMARY KEY, target INTEGER, series BLOB,
    hot INTEGER);
CREATE TABLE IF NOT EXISTS records(tier INTEGER, target INTEGER, ts REAL, schema INTEGER,
    vals BLOB, cold BLOB);
CREATE UNIQUE INDEX IF NOT EXISTS records_at ON records(tier, target, ts);
CREATE TABLE IF NOT EXISTS columns(target INTEGER, series INTEGER, step REAL, vals BLOB,
    PRIMARY KEY(target, series, step)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sketches(tier INTEGER, target INTEGER, ts REAL, series INTEGER,
    data BLOB);
CREATE INDEX IF NOT EXISTS sketches_at ON sketches(tier, target, ts);
CREATE TABLE IF NOT EXISTS raw_sketches(target INTEGER, ts REAL, data BLOB,
    PRIMARY KEY(target, ts)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state(target INTEGER PRIMARY KEY, ts REAL, start REAL,
    schema INTEGER, offsets BLOB, rolled TEXT);
"""


def _env_seconds(env: Mapping[str, str], key: str, default: float) -> float:
    if key not in env:
        return default
    from .window import parse_duration
    return parse_duration(env[key])


@dataclass(frozen=True)
class StoreConfig:
    """How long and how fine the store keeps data."""

    #: SHOAL_METRICS_RAW_RETENTION: full resolution (every scrape) kept this long
    raw_retention: float = 6 * 3600.0
    #: SHOAL_METRICS_HISTORY_RETENTION: downsampled history kept this long
    history_retention: float = 7 * 86400.0
    #: SHOAL_METRICS_HISTORY_STEP: resolution of the history (a multiple of a minute)
    history_step: float = 600.0
    #: seconds between two retention passes (run from ingest)
    compact_every: float = 60.0
    #: decoded records kept in memory for queries, in bytes: a dashboard refresh over
    #: 1000 proxies reads each one's window edges, which must all fit
    cache_bytes: int = 48 << 20
    #: columns (a series over a step or an hour) kept in memory for range queries, bytes
    column_cache_bytes: int = 16 << 20
    #: SQLite page cache, KiB
    sqlite_cache_kib: int = 8192

    def __post_init__(self) -> None:
        if self.history_step % 60 or self.history_step < 60 or 3600 % self.history_step:
            raise ValueError("history step must be a whole number of minutes dividing an hour")
        if self.raw_retention < self.history_step:
            raise ValueError("raw retention must be at least one history step")
        if self.history_retention < self.raw_retention:
            raise ValueError("history retention must be at least the raw retention")

    @classmethod
    def parse(cls, env: Mapping[str, str]) -> StoreConfig:
        return cls(
            raw_retention=_env_seconds(env, "SHOAL_METRICS_RAW_RETENTION", cls.raw_retention),
            history_retention=_env_seconds(env, "SHOAL_METRICS_HISTORY_RETENTION",
                                           cls.history_retention),
            history_step=_env_seconds(env, "SHOAL_METRICS_HISTORY_STEP", cls.history_step),
        )


class SeriesInfo:
    """One series: its id, its proxy (target) and its labels (workload labels included)."""

    __slots__ = ("id", "target", "name", "labels", "counter", "sketch")

    def __init__(self, id: int, target: int, name: str, labels: dict[str, str],
                 counter: bool, sketch: bool) -> None:
        self.id = id
        self.target = target
        self.name = name
        self.labels = labels
        self.counter = counter
        self.sketch = sketch

    def __repr__(self) -> str:
        return f"SeriesInfo({self.id}, {self.name}{{{render_labels(self.labels)}}})"


class Record:
    """One scrape's values; the histogram buckets are read and decoded only when
    asked for (``load_cold`` fetches their blob: most queries never do)."""

    __slots__ = ("ts", "pos", "n_hot", "hot", "_cold", "_load_cold")

    def __init__(self, ts: float, pos: dict[int, int], n_hot: int, hot: array,
                 load_cold: Callable[[float], bytes | None]) -> None:
        self.ts = ts
        self.pos = pos
        self.n_hot = n_hot
        self.hot = hot
        self._cold: array | None = None
        self._load_cold = load_cold

    def _buckets(self) -> array:
        if self._cold is None:
            blob = self._load_cold(self.ts)
            self._cold = _unpack(blob) if blob else array("d")
        return self._cold

    def get(self, sid: int) -> float | None:
        i = self.pos.get(sid)
        if i is None:
            return None
        if i < self.n_hot:
            return self.hot[i]
        cold = self._buckets()
        i -= self.n_hot
        return cold[i] if i < len(cold) else None

    def size(self) -> int:
        """Bytes it holds once its buckets are decoded (an estimate, for the cache)."""
        return 8 * len(self.pos) + 200

    def values(self) -> list[float]:
        """Every value, in schema order."""
        return list(self.hot) + list(self._buckets())


class Span:
    """A proxy's raw data over a range, for a range query: ``line`` holds its record
    times (sorted, from the last one at or before the range's start), ``columns``
    the values of some series at some of those times."""

    __slots__ = ("line", "_store", "_target", "_steps", "_before", "_tail")

    def __init__(self, store: Store, target: int, line: list[float],
                 steps: list[tuple[float, int, int]], before: bool, tail: int) -> None:
        self.line = line
        self._store = store
        self._target = target
        #: the column chunks in ``line``: (chunk end, rows skipped as expired, rows)
        self._steps = steps
        #: whether ``line`` starts with an older record (not in a step's columns)
        self._before = before
        #: how many records of the open step end ``line``
        self._tail = tail

    def columns(self, series: Sequence[int], rows: Sequence[int]) -> list[list[float]]:
        """For each of ``series``, its values at the ``line`` indices ``rows`` (sorted);
        NaN where a record lacks it."""
        store, line = self._store, self.line
        out: list[list[float]] = [[] for _ in series]
        i = at = 0  # the next of rows, and where the next chunk starts in line
        if self._before:
            at = 1
            if rows and rows[0] == 0:
                rec = store.records(self._target, TIER_RAW, [line[0]])[line[0]]
                for col, sid in zip(out, series, strict=True):
                    col.append(_nan_if_none(rec.get(sid)))
                i = 1
        if self._steps:
            got = store._columns(self._target, series, [k for k, _, _ in self._steps])
            for k, skip, n in self._steps:
                end = at + n - skip
                j = bisect_left(rows, end, i)
                if j > i:
                    offsets = [r - at + skip for r in rows[i:j]]
                    pick = itemgetter(*offsets) if len(offsets) > 1 else _one(offsets[0])
                    for col, sid in zip(out, series, strict=True):
                        vals = got.get((sid, k))
                        col.extend(pick(vals) if vals is not None else repeat(math.nan, j - i))
                    i = j
                at = end
        if i < len(rows):  # the open step's
            times = [line[r] for r in rows[i:]]
            recs = store.records(self._target, TIER_RAW, times)
            for col, sid in zip(out, series, strict=True):
                col.extend(_nan_if_none(recs[t].get(sid)) for t in times)
        return out


def _one(i: int) -> Callable[[Sequence[float]], tuple[float]]:
    return lambda vals: (vals[i],)


def _col_size(col: array) -> int:
    """Bytes a cached column holds (an estimate, for the cache's bound)."""
    return 8 * len(col) + 100


def _nan_if_none(v: float | None) -> float:
    return math.nan if v is None else v


_NAME, _LABELS = itemgetter(0), itemgetter(1)


def picker(idx: Sequence[int]) -> Callable[[Sequence[float]], Sequence[float]]:
    """``values -> [values[i] for i in idx]`` at C speed (``itemgetter``)."""
    if len(idx) > 1:
        return itemgetter(*idx)
    if idx:
        i = idx[0]
        return lambda v: (v[i],)
    return lambda v: ()


class _Shape:
    """A scrape's layout, remembered so that the next scrape with the same series in
    the same order (the usual case) is stored without a Python step per sample."""

    __slots__ = ("names", "labels", "sids", "schema", "hot", "cold", "counters", "off_hot",
                 "off_cold", "values", "start_at")

    def __init__(self, samples: Sequence[Sample], sids: list[int], cold: Mapping[str, bool],
                 schema: int, offsets: Mapping[int, float]) -> None:
        #: the name and raw labels of each sample: two list compares tell a repeat
        #: (cheaper than one of (name, labels) pairs, which must be built first)
        self.names = list(map(_NAME, samples))
        self.labels = list(map(_LABELS, samples))
        self.sids = sids
        self.schema = schema
        hot_at = [i for i, s in enumerate(samples) if not cold[s[0]]]
        cold_at = [i for i, s in enumerate(samples) if cold[s[0]]]
        self.hot, self.cold = picker(hot_at), picker(cold_at)
        self.counters = picker([i for i, s in enumerate(samples) if s[3]])
        off = [offsets.get(sid, 0.0) for sid in sids]
        self.off_hot = [off[i] for i in hot_at] if any(off) else None
        self.off_cold = [off[i] for i in cold_at] if any(off) else None
        #: the raw values of the last scrape, in sample order
        self.values = [s[2] for s in samples]
        #: where ``process_start_time_seconds`` is
        self.start_at = next((i for i, s in enumerate(samples)
                              if s[0] == PROCESS_START and not s[1]), None)


@dataclass
class _Target:
    id: int
    labels: dict[str, str]
    #: (metric name, raw label block) -> series id
    keys: dict[tuple[str, str], int] = field(default_factory=dict)
    sketch_keys: dict[Labels, int] = field(default_factory=dict)
    #: the same, keyed by labels in the order the proxy sends them (no sort per scrape)
    sketch_seen: dict[tuple[tuple[str, str], ...], int] = field(default_factory=dict)
    schemas: dict[tuple[int, ...], int] = field(default_factory=dict)
    last_ts: float = -math.inf
    start: float | None = None
    raw: dict[int, float] = field(default_factory=dict)
    offsets: dict[int, float] = field(default_factory=dict)
    #: the last scrape's layout while the next ones repeat it (``raw`` then lags)
    shape: _Shape | None = None
    #: sketch series id -> the sketch as last scraped (not persisted)
    sketch_prev: dict[int, Scraped] = field(default_factory=dict)
    #: the open minute's sketch deltas summed as they are stored: (the minute's end,
    #: whether every scrape of it went through here, sums per series); closing the
    #: minute then needs no read of what was just written
    minute: tuple[float, bool, dict[int, DenseSum]] = (-math.inf, False, {})
    sketch_baseline: bool = False
    #: last bucket key rolled up, per rollup tier (minute, history step, hour)
    rolled: list[float] = field(default_factory=lambda: [-math.inf] * len(ROLLUPS))


@dataclass(frozen=True)
class IngestStats:
    samples: int
    new_series: int
    sketch_rows: int


def _locked(method: Callable) -> Callable:
    def call(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    call.__name__, call.__doc__ = method.__name__, method.__doc__
    return call


def _pack(values: Sequence[float]) -> bytes:
    return deflate.pack(array("d", values).tobytes())


#: marks a blob of plain float64 (a deflated blob starts with ``\x01`` or a zlib header)
_PLAIN = b"\x02"


def _plain(values: Sequence[float]) -> bytes:
    """A record's hot values as they are: deflate shrinks them only ~1.6x (float64
    counters), and inflating costs a range query more than reading the bytes."""
    return _PLAIN + array("d", values).tobytes()


def _unpack(blob: bytes, inflate: Callable[[bytes], bytes] = deflate.unpack) -> array:
    a = array("d")
    a.frombytes(memoryview(blob)[1:] if blob[:1] == _PLAIN else inflate(blob))
    return a


class Store:
    """The embedded store under one directory; see the module docstring.

    >>> import tempfile
    >>> from shoal.viz.exposition import parse
    >>> s = Store(tempfile.mkdtemp())
    >>> _ = s.ingest({"namespace": "ns", "pod": "web-1"}, 10.0,
    ...              parse('# TYPE request_total counter\\nrequest_total 3\\n'))
    >>> [x.labels for x in s.select("request_total", [])]
    [{'namespace': 'ns', 'pod': 'web-1'}]
    >>> s.close()
    """

    def __init__(self, directory: str | os.PathLike[str],
                 config: StoreConfig | None = None) -> None:
        self.config = config or StoreConfig()
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.path = os.path.join(self.directory, "metrics.sqlite")
        self._lock = threading.RLock()
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(f"PRAGMA cache_size=-{self.config.sqlite_cache_kib}")
        self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self.db.executescript(_SCHEMA + _CUMULATIVE_SCHEMA)
        self._targets: dict[str, _Target] = {}
        self._targets_by_id: dict[int, _Target] = {}
        self.series: dict[int, SeriesInfo] = {}
        self._by_name: dict[str, list[SeriesInfo]] = {}
        self._schema_cache: dict[int, tuple[tuple[int, ...], dict[int, int], int]] = {}
        self._select_cache: dict[tuple[str, tuple[Matcher, ...]], list[SeriesInfo]] = {}
        self._records: OrderedDict[tuple[int, int, float], Record] = OrderedDict()
        self._records_bytes = 0
        #: (target, series, step) -> the series' column in that step (series 0: times)
        self._cols: OrderedDict[tuple[int, int, float], array] = OrderedDict()
        self._cols_bytes = 0
        #: raw records older than this are gone (a step's columns may still hold some)
        self._raw_from = -math.inf
        #: latency sketches' running totals (``cumulative``)
        self._cum = Cumulative(self.db, self.config.cache_bytes // 2)
        #: minute totals are whole from here on (later than -inf in a converted store)
        self._minutes_since = -math.inf
        #: raw sketch rows per series, as stores before ``raw_sketches`` kept them
        self._old_raw = False
        #: ``around`` answers per proxy until that proxy's next scrape: one stat asks
        #: the same windows of the same proxies for each of its metrics
        self._around: dict[int, dict[tuple[int, float, float], list[float]]] = {}
        self._last_compact = -math.inf
        self._cold_names: dict[str, bool] = {}
        #: newest ingested timestamp; retention and tier choice are relative to it
        self.now = -math.inf
        self._load()

    # -- loading ----------------------------------------------------------

    def _load(self) -> None:
        for tid, key, labels in self.db.execute("SELECT id, key, labels FROM targets"):
            t = _Target(tid, json.loads(labels))
            self._targets[key] = t
            self._targets_by_id[tid] = t
        for sid, tid, name, labels, counter, sketch in self.db.execute(
                "SELECT id, target, name, labels, counter, sketch FROM series"):
            info = self._remember(SeriesInfo(sid, tid, name, _intern(json.loads(labels)),
                                             bool(counter), bool(sketch)))
            t = self._targets_by_id.get(tid)
            if t is None:
                continue
            own = own_labels(info, t)
            if sketch:
                t.sketch_keys[tuple(sorted(own.items()))] = sid
            else:
                t.keys[(name, render_labels(own))] = sid
        for sid, tid, blob in self.db.execute("SELECT id, target, series FROM schemas"):
            ids = tuple(array("q", blob))
            t = self._targets_by_id.get(tid)
            if t is not None:
                t.schemas[ids] = sid
        for tid, ts, start, schema, offsets, rolled in self.db.execute(
                "SELECT target, ts, start, schema, offsets, rolled FROM state"):
            t = self._targets_by_id.get(tid)
            if t is None:
                continue
            ids = self._schema(schema)[0]
            t.last_ts, t.start = ts, start
            t.offsets = {i: o for i, o in zip(ids, _unpack(offsets), strict=True) if o}
            last = self.db.execute("SELECT ts, schema, vals FROM records WHERE tier=0 "
                                   "AND target=? AND ts=?", (tid, ts)).fetchone()
            if last is not None:  # raw = stored (adjusted) - offset
                rec = self._decode(TIER_RAW, tid, last)
                rids = self._schema(last[1])[0]
                t.raw = {i: v - t.offsets.get(i, 0.0)
                         for i, v in zip(rids, rec.values(), strict=True)}
            marks = json.loads(rolled)
            t.rolled = marks + [-math.inf] * (len(ROLLUPS) - len(marks))
            t.sketch_baseline = True
            self.now = max(self.now, ts)
        self._sketch_layout()
        self._columnize()
        self._old_raw = self.db.execute("SELECT 1 FROM sketches LIMIT 1").fetchone() is not None

    def _sketch_layout(self) -> None:
        """Convert an older store's sketch rollups to running totals, once."""
        db = self.db
        row = db.execute("SELECT value FROM meta WHERE key='sketch_layout'").fetchone()
        if row is not None:
            since = json.loads(row[0]).get("minutes_since")
            self._minutes_since = -math.inf if since is None else float(since)
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            since = self._cum.migrate()
            self._minutes_since = since
            db.execute("INSERT INTO meta(key, value) VALUES ('sketch_layout', ?)",
                       (json.dumps({"layout": "cumulative",
                                    "minutes_since": since if since > -math.inf else None}),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _columnize(self) -> None:
        """Write the columns of an older store's closed steps, once."""
        db = self.db
        first = db.execute("SELECT min(ts) FROM records WHERE tier=0").fetchone()[0]
        self._raw_from = -math.inf if first is None else first
        if db.execute("SELECT 1 FROM meta WHERE key='columns'").fetchone() is not None:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            for t in self._targets.values():
                self._write_columns(t.id, -math.inf, t.rolled[1])
            db.execute("INSERT INTO meta(key, value) VALUES ('columns', '1')")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _chunk(self, ts: float, closed: float) -> float:
        """The end of the column chunk holding a record at ``ts`` once the steps up to
        ``closed`` are: its hour when that hour is closed, else its step."""
        hour = math.ceil(ts / HOUR) * HOUR
        return hour if hour <= closed else math.ceil(ts / self.config.history_step) * \
            self.config.history_step

    def _write_columns(self, target: int, a: float, closed: float,
                       replace: bool = False) -> None:
        """Write the columns of ``target``'s raw records in (a, closed], ``a`` being
        the end of a chunk (or -inf); ``replace`` those in that range."""
        if replace:
            t = self._targets_by_id[target]
            self.db.executemany("DELETE FROM columns WHERE target=? AND series=? AND step>? "
                                "AND step<=?",
                                [(target, sid, a, closed) for sid in self._hot_series(t)])
            for key in [key for key in self._cols
                        if key[0] == target and a < key[2] <= closed]:
                self._cols_bytes -= _col_size(self._cols.pop(key))
        rows = self.db.execute("SELECT ts, schema, vals FROM records WHERE tier=0 AND target=? "
                               "AND ts>? AND ts<=? ORDER BY ts", (target, a, closed)).fetchall()
        out: list[tuple[int, int, float, bytes]] = []
        for k, run in groupby(rows, key=lambda r: self._chunk(r[0], closed)):
            run = list(run)
            out.append((target, 0, k, array("d", [r[0] for r in run]).tobytes()))
            hots = [_unpack(r[2]) for r in run]
            if len({r[1] for r in run}) == 1:  # one schema, as usual: a transpose
                ids = self._schema(run[0][1])[0]
                out.extend((target, sid, k, array("d", col).tobytes())
                           for sid, col in zip(ids, zip(*hots, strict=True), strict=False))
                continue
            cols: dict[int, array] = {}
            for i, (r, hot) in enumerate(zip(run, hots, strict=True)):
                for sid, v in zip(self._schema(r[1])[0], hot, strict=False):
                    col = cols.get(sid)
                    if col is None:
                        col = cols[sid] = array("d", [math.nan]) * len(run)
                    col[i] = v
            out.extend((target, sid, k, col.tobytes()) for sid, col in cols.items())
        self.db.executemany("INSERT INTO columns(target, series, step, vals) VALUES (?,?,?,?)",
                            out)

    def _close_columns(self, target: int, closed: float, now_closed: float) -> None:
        """Write the columns of the steps closed in (closed, now_closed]: the hour that
        just closed, if one did, becomes one chunk."""
        hour = math.floor(now_closed / HOUR) * HOUR
        if hour - HOUR < closed < hour:
            self._write_columns(target, hour - HOUR, now_closed, replace=True)
        else:
            self._write_columns(target, closed, now_closed)

    def _hot_series(self, t: _Target) -> set[int]:
        """The series that have columns (0: the times), of any of ``t``'s schemas."""
        out = {0}
        for schema in t.schemas.values():
            ids, _, n_hot = self._schema(schema)
            out.update(ids[:n_hot])
        return out

    def _rewrite_columns(self, t: _Target, ts: float) -> None:
        """Write again the columns of the chunk holding ``ts`` (a record arrived in a
        step already closed, which only a scrape stamped before an idle proxy's step
        was closed for it can do)."""
        closed, step = t.rolled[1], self.config.history_step
        hour = math.ceil(ts / HOUR) * HOUR
        start = hour - HOUR if hour <= closed else math.ceil(ts / step) * step - step
        self._write_columns(t.id, start, closed, replace=True)

    def _remember(self, info: SeriesInfo) -> SeriesInfo:
        self._select_cache.clear()
        self.series[info.id] = info
        self._by_name.setdefault(info.name, []).append(info)
        return info

    def _schema(self, schema_id: int) -> tuple[tuple[int, ...], dict[int, int], int]:
        """(series ids, id -> position, how many come before the bucket series)."""
        s = self._schema_cache.get(schema_id)
        if s is None:
            row = self.db.execute("SELECT series, hot FROM schemas WHERE id=?",
                                  (schema_id,)).fetchone()
            ids = tuple(array("q", row[0]))
            s = self._schema_cache[schema_id] = (ids, {sid: i for i, sid in enumerate(ids)},
                                                 row[1])
        return s

    # -- ingest -----------------------------------------------------------

    @_locked
    def ingest(self, target: Mapping[str, str], ts: float, samples: Sequence[Sample],
               sketches: Iterable[tuple[Mapping[str, str], Mapping[str, object]]] = ()
               ) -> IngestStats:
        """Store one scrape of the proxy with workload labels ``target`` at time ``ts``.

        ``samples`` come from ``exposition.parse``; ``sketches`` are the proxy's
        ``/latency`` series as (labels, ``LatencySketch.to_json()``). A scrape not
        newer than the proxy's previous one is ignored.
        """
        t = self._target(target)
        if ts <= t.last_ts:
            return IngestStats(0, 0, 0)
        self._around.pop(t.id, None)
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            stats, commit = self._ingest(t, ts, samples, sketches)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            t.minute = (t.minute[0], False, {})  # they may hold what was rolled back
            self._cum.forget_live()
            raise
        commit()
        self.now = max(self.now, ts)
        if ts - self._last_compact >= self.config.compact_every:
            self._last_compact = ts
            self.compact(ts)
        return stats

    def _target(self, labels: Mapping[str, str]) -> _Target:
        key = render_labels(dict(labels))
        t = self._targets.get(key)
        if t is None:
            tid = self.db.execute("INSERT INTO targets(key, labels) VALUES (?, ?)",
                                  (key, json.dumps(dict(labels), sort_keys=True))).lastrowid
            assert tid is not None
            t = self._targets[key] = self._targets_by_id[tid] = _Target(tid, dict(labels))
        return t

    def _new_series(self, t: _Target, name: str, own: dict[str, str], counter: bool,
                    sketch: bool, new: list[SeriesInfo]) -> int:
        labels = {(f"exported_{k}" if k in t.labels else k): v for k, v in own.items()}
        labels.update(t.labels)
        labels = dict(sorted(labels.items()))
        sid = self.db.execute(
            "INSERT INTO series(target, name, labels, counter, sketch) VALUES (?,?,?,?,?)",
            (t.id, name, json.dumps(labels), int(counter), int(sketch))).lastrowid
        assert sid is not None
        new.append(SeriesInfo(sid, t.id, name, _intern(labels), counter, sketch))
        return sid

    def _ingest(self, t: _Target, ts: float, samples: Sequence[Sample],
                sketches: Iterable[tuple[Mapping[str, str], Mapping[str, object]]]):
        db = self.db
        new: list[SeriesInfo] = []
        keys = t.keys
        added: list[tuple[str, str]] = []
        start = None
        at = t.shape.start_at if t.shape is not None else None
        if at is not None and at < len(samples) and samples[at][0] == PROCESS_START \
                and not samples[at][1]:
            start = samples[at][2]
        else:
            for s in samples:
                if s.name == PROCESS_START and not s.raw_labels:
                    start = s.value
        restarted = start is not None and t.start is not None and start != t.start
        if not restarted and t.shape is not None:
            fast = self._ingest_same(t, ts, samples, sketches, start)
            if fast is not None:
                return fast
        if t.shape is not None:  # the raw values lag behind the shape's: bring them up
            t.raw.update(zip(t.shape.sids, t.shape.values, strict=True))
            t.shape = None
        prev_raw, offsets = t.raw, t.offsets
        new_offsets: dict[int, float] = {}
        # histogram buckets ("cold": read only by bucket quantiles) are kept apart from
        # the rest ("hot"), so a stat decodes a fifth of each record
        parts: tuple[tuple[list[int], list[float], list[float]], ...] = (([], [], []),
                                                                        ([], [], []))
        cold_names = self._cold_names
        get, prev_get, off_get = keys.get, prev_raw.get, offsets.get
        try:
            for name, raw_labels, v, counter in samples:
                sid = get((name, raw_labels))
                if sid is None:
                    sid = self._series_for(t, name, raw_labels, counter, new, added)
                cold = cold_names.get(name)
                if cold is None:
                    cold = cold_names[name] = name.endswith("_bucket")
                ids, raw, adjusted = parts[cold]
                ids.append(sid)
                raw.append(v)
                if counter:
                    p = prev_get(sid)
                    if p is not None and (v < p or restarted):
                        new_offsets[sid] = new_offsets.get(sid, off_get(sid, 0.0)) + p
                        off = new_offsets[sid]
                    else:
                        off = new_offsets.get(sid) or off_get(sid)
                    adjusted.append(v + off if off else v)
                else:
                    adjusted.append(v)
            for ids, raw, adjusted in parts:
                if len(set(ids)) != len(ids):  # the same series twice: the last one wins
                    last = {sid: (r, a) for sid, r, a in zip(ids, raw, adjusted, strict=True)}
                    ids[:] = list(last)
                    raw[:] = [r for r, _ in last.values()]
                    adjusted[:] = [a for _, a in last.values()]
            (hot_ids, hot_raw, hot_adj), (cold_ids, cold_raw, cold_adj) = parts
            ids = hot_ids + cold_ids
            raw = hot_raw + cold_raw
            dedup = len(ids) == len(samples)

            key = tuple(ids)
            schema = t.schemas.get(key)
            new_schema = None
            if schema is None:
                schema = db.execute("INSERT INTO schemas(target, series, hot) VALUES (?,?,?)",
                                    (t.id, array("q", ids).tobytes(),
                                     len(hot_ids))).lastrowid
                new_schema = (key, schema)
            fresh = (t.last_ts == -math.inf and start is not None
                     and 0 < ts - start <= FRESH_START)
            if fresh:
                # a proxy first seen soon after it started: its counters were 0 at its
                # start, so what it counted before this scrape is traffic, not a baseline
                kinds = {keys[(x[0], x[1])]: x[3] for x in samples}

                def at_start(ids: list[int]) -> list[float]:
                    return [0.0 if kinds.get(i) else math.nan for i in ids]
                db.execute("INSERT INTO records(tier, target, ts, schema, vals, cold) "
                           "VALUES (0,?,?,?,?,?)",
                           (t.id, start, schema, _plain(at_start(hot_ids)),
                            _pack(at_start(cold_ids)) if cold_ids else None))
            db.execute("INSERT INTO records(tier, target, ts, schema, vals, cold) "
                       "VALUES (0,?,?,?,?,?)", (t.id, ts, schema, _plain(hot_adj),
                                                _pack(cold_adj) if cold_ids else None))
            if ts <= t.rolled[1]:
                self._rewrite_columns(t, ts)

            sketch_rows, sketch_prev, rolled = self._ingest_tail(t, ts, sketches, restarted,
                                                                 new, baseline=not fresh)
            if new_offsets or new_schema is not None or t.last_ts == -math.inf:
                merged = dict(offsets)
                merged.update(new_offsets)
                db.execute("INSERT OR REPLACE INTO state(target, ts, start, schema, offsets, "
                           "rolled) VALUES (?,?,?,?,?,?)",
                           (t.id, ts, start, schema, _pack([merged.get(i, 0.0) for i in ids]),
                            json.dumps(rolled)))
            else:
                db.execute("UPDATE state SET ts=?, start=?, rolled=? WHERE target=?",
                           (ts, start, json.dumps(rolled), t.id))
        except BaseException:
            for k in added:
                keys.pop(k, None)
            raise

        def commit() -> None:
            for info in new:
                self._remember(info)
                if info.sketch:
                    t.sketch_keys[tuple(sorted(own_labels(info, t).items()))] = info.id
            if new_schema is not None:
                t.schemas[new_schema[0]] = new_schema[1]
            t.raw.update(zip(ids, raw, strict=True))
            t.offsets.update(new_offsets)
            t.last_ts, t.start, t.rolled = ts, start, rolled
            t.sketch_prev.update(sketch_prev)
            t.sketch_baseline = False
            if dedup:
                get = t.keys.get
                t.shape = _Shape(samples, [get((s[0], s[1])) for s in samples],
                                 self._cold_names, schema, t.offsets)

        return IngestStats(len(ids), len(new), len(sketch_rows)), commit

    def _ingest_same(self, t: _Target, ts: float, samples: Sequence[Sample],
                     sketches: Iterable[tuple[Mapping[str, str], Mapping[str, object]]],
                     start: float | None):
        """``_ingest`` for a scrape laid out as the previous one with no counter gone
        down: a few C-level passes over the samples. None when that is not the case."""
        shape = t.shape
        assert shape is not None
        if list(map(_LABELS, samples)) != shape.labels or \
                list(map(_NAME, samples)) != shape.names:
            return None
        values = [s[2] for s in samples]
        if any(map(lt, shape.counters(values), shape.counters(shape.values))):
            return None
        hot, cold = shape.hot(values), shape.cold(values)
        if shape.off_hot is not None:
            hot = list(map(add, hot, shape.off_hot))
            cold = list(map(add, cold, shape.off_cold))  # type: ignore[arg-type]
        db = self.db
        db.execute("INSERT INTO records(tier, target, ts, schema, vals, cold) "
                   "VALUES (0,?,?,?,?,?)", (t.id, ts, shape.schema, _plain(hot),
                                            _pack(cold) if cold else None))
        if ts <= t.rolled[1]:
            self._rewrite_columns(t, ts)
        new: list[SeriesInfo] = []
        gained, sketch_prev, rolled = self._ingest_tail(t, ts, sketches, False, new)
        db.execute("UPDATE state SET ts=?, start=?, rolled=? WHERE target=?",
                   (ts, start, json.dumps(rolled), t.id))

        def commit() -> None:
            for info in new:
                self._remember(info)
                t.sketch_keys[tuple(sorted(own_labels(info, t).items()))] = info.id
            shape.values = values
            t.last_ts, t.start, t.rolled = ts, start, rolled
            t.sketch_prev.update(sketch_prev)
            t.sketch_baseline = False

        return IngestStats(len(values), len(new), len(gained)), commit

    def _ingest_tail(self, t: _Target, ts: float,
                     sketches: Iterable[tuple[Mapping[str, str], Mapping[str, object]]],
                     restarted: bool, new: list[SeriesInfo], baseline: bool = True):
        """Store the sketch deltas, close what the scrape closed, and add the deltas to
        their minute's sums (in place: a failed ingest marks the sums unusable)."""
        sketch_prev, gained = self._sketch_deltas(t, sketches, restarted, new, baseline)
        if gained:
            self.db.execute("INSERT OR REPLACE INTO raw_sketches(target, ts, data) "
                            "VALUES (?,?,?)", (t.id, ts, scrape_blob(gained)))
        rolled = self._roll(t, t.last_ts, ts)
        k = math.ceil(ts / MINUTE) * MINUTE
        if t.minute[0] != k:  # whole when this is the minute's first scrape
            t.minute = (k, t.last_ts <= k - MINUTE, {})
        sums = t.minute[2]
        for sid, (zero, lo, acc) in gained.items():
            total = sums.get(sid)
            if total is None:
                total = sums[sid] = DenseSum()
            total.add_dense(zero, lo, acc)
        return gained, sketch_prev, rolled

    def _series_for(self, t: _Target, name: str, raw_labels: str, counter: bool,
                    new: list[SeriesInfo], added: list[tuple[str, str]]) -> int:
        own = parse_labels(raw_labels)
        canon = (name, render_labels(own))
        sid = t.keys.get(canon)
        if sid is None:
            sid = self._new_series(t, name, own, counter, False, new)
            t.keys[canon] = sid
            added.append(canon)
        t.keys[(name, raw_labels)] = sid
        added.append((name, raw_labels))
        return sid

    def _sketch_deltas(self, t: _Target,
                       sketches: Iterable[tuple[Mapping[str, str], Mapping[str, object]]],
                       restarted: bool, new: list[SeriesInfo], baseline: bool = True):
        """What each sketch gained, and each as scraped; a proxy's first scrape is a
        baseline unless ``baseline`` is false (it counted from zero since a known,
        recent start)."""
        prev = t.sketch_prev
        out: dict[int, Scraped] = {}
        gained: dict[int, Delta] = {}
        pending: dict[Labels, int] = {}
        first = t.sketch_baseline or (baseline and t.last_ts == -math.inf)
        seen = t.sketch_seen
        for labels, data in sketches:
            as_sent = tuple(labels.items())
            sid = seen.get(as_sent)
            if sid is None:
                lk = tuple(sorted(as_sent))
                sid = t.sketch_keys.get(lk)
                if sid is not None:
                    seen[as_sent] = sid
                else:
                    sid = pending.get(lk)
                    if sid is None:
                        sid = pending[lk] = self._new_series(t, SKETCH_METRIC, dict(labels),
                                                             True, True, new)
            cur = scraped(data)
            if cur is None:
                continue
            p = prev.get(sid)
            if p == cur and not restarted:
                continue
            out[sid] = cur
            if p is None and first:
                continue  # first scrape (ever, or since a reopen): a baseline, not a delta
            d = delta_row(p, cur, restarted)
            if d is not None:
                gained[sid] = d
        return out, gained

    # -- rollups ----------------------------------------------------------

    def _roll(self, t: _Target, prev_ts: float, ts: float) -> list[float]:
        """Close the minute and history step that the previous scrape fell in, once a
        scrape after their end arrives; returns the new marks (minute, step, and an
        hour mark older stores kept).

        A closed minute adds its sketch deltas to the series' running totals
        (``cumulative``); a closed step gets each total at its end, and a history
        record (the step's last raw record).
        """
        rolled = list(t.rolled)
        if prev_ts == -math.inf:
            return rolled
        k = math.ceil(prev_ts / MINUTE) * MINUTE
        if rolled[0] < k < ts:
            end, whole, sums = t.minute
            self._cum.close_minute(t.id, k, sums if end == k and whole
                                   else self._merge_raw(t.id, k - MINUTE, k))
            rolled[0] = k
        step = self.config.history_step
        k = math.ceil(prev_ts / step) * step
        if rolled[1] < k < ts:
            self._cum.close_step(t.id, k, step, t.sketch_keys.values())
            self._close_columns(t.id, rolled[1], k)
            rolled[1] = k
            # the history keeps no histogram buckets: its latency comes from the sketches
            self.db.execute(
                "INSERT OR IGNORE INTO records(tier, target, ts, schema, vals, cold) "
                "SELECT 2, target, ts, schema, vals, NULL FROM records "
                "WHERE tier=0 AND target=? AND ts=?", (t.id, prev_ts))
        return rolled

    def _merge_raw(self, target: int, a: float, b: float, sids: Sequence[int] = (),
                   into: dict[Hashable, DenseSum] | None = None,
                   groups: Mapping[int, Hashable] | None = None,
                   inflate: deflate.Inflater | None = None) -> dict[Hashable, DenseSum]:
        """The raw sketch deltas of ``target`` in (a, b], summed per series (or per
        group of ``groups``, into ``into``); only ``sids`` when given."""
        out: dict[Hashable, DenseSum] = {} if into is None else into
        for sid, zero, lo, acc in self._raw_deltas(target, a, b, sids,
                                                   inflate or deflate.Inflater()):
            key: Hashable = sid
            if groups is not None:
                key = groups.get(sid)
                if key is None:
                    continue
            s = out.get(key)
            if s is None:
                s = out[key] = DenseSum()
            s.add_dense(zero, lo, acc)
        return out

    def _raw_deltas(self, target: int, a: float, b: float, sids: Sequence[int],
                    inflate: deflate.Inflater) -> Iterator[tuple[int, int, int, int]]:
        """(series, zero count, lowest bin, counts) of each raw delta in (a, b]; only
        of ``sids`` when given."""
        want = set(sids) if sids else None
        for (data,) in self.db.execute("SELECT data FROM raw_sketches WHERE target=? AND ts>? "
                                       "AND ts<=?", (target, a, b)):
            for sid, zero, lo, body in read_scrape(data, inflate):
                if want is None or sid in want:
                    yield sid, zero, lo, int.from_bytes(body, "little")
        if self._old_raw:  # a row per series and scrape, as stores before this kept them
            only = f" AND series IN ({','.join('?' * len(sids))})" if 0 < len(sids) <= 64 else ""
            for sid, data in self.db.execute(
                    "SELECT series, data FROM sketches WHERE tier=0 AND target=? AND ts>? "
                    "AND ts<=?" + only, (target, a, b, *(sids if only else ()))):
                if want is None or sid in want:
                    yield (sid, *decode(data, inflate))

    # -- retention --------------------------------------------------------

    @_locked
    def compact(self, now: float) -> None:
        """Roll up what idle proxies left open, then delete what retention expired."""
        cfg, db = self.config, self.db
        raw_cut = now - cfg.raw_retention
        hist_cut = now - cfg.history_retention
        db.execute("BEGIN IMMEDIATE")
        try:
            for t in list(self._targets.values()):
                if t.last_ts == -math.inf or t.last_ts > now - 2 * 60.0:
                    continue
                rolled = self._roll(t, t.last_ts, now)
                if rolled != t.rolled:
                    db.execute("UPDATE state SET rolled=? WHERE target=?",
                               (json.dumps(rolled), t.id))
                    t.rolled = rolled
            db.execute("DELETE FROM records WHERE tier=0 AND ts<=?", (raw_cut,))
            db.executemany("DELETE FROM raw_sketches WHERE target=? AND ts<=?",
                           [(t.id, raw_cut) for t in self._targets.values()])
            db.executemany("DELETE FROM columns WHERE target=? AND series=? AND step<=?",
                           [(t.id, sid, raw_cut) for t in self._targets.values()
                            for sid in self._hot_series(t)])
            if self._old_raw:
                db.execute("DELETE FROM sketches WHERE tier=0 AND ts<=?", (raw_cut,))
                self._old_raw = db.execute("SELECT 1 FROM sketches LIMIT 1").fetchone() is not None
            db.execute("DELETE FROM records WHERE tier=2 AND ts<=?", (hist_cut,))
            self._cum.expire([(s.target, s.id) for s in self._by_name.get(SKETCH_METRIC, ())],
                             raw_cut - cfg.history_step, cfg.history_step, hist_cut)
            gone = [t for t in self._targets.values() if t.last_ts <= hist_cut]
            for t in gone:
                for table, col in (("series", "target"), ("schemas", "target"),
                               ("columns", "target"),
                                   ("state", "target"), ("targets", "id")):
                    db.execute(f"DELETE FROM {table} WHERE {col}=?", (t.id,))
            if gone:
                self._cum.forget_targets({t.id for t in gone})
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._cum.forget_live()
            raise
        if gone:
            ids = {t.id for t in gone}
            for k in [k for k, t in self._targets.items() if t.id in ids]:
                del self._targets[k]
            for i in ids:
                self._targets_by_id.pop(i, None)
            self.series = {k: s for k, s in self.series.items() if s.target not in ids}
            self._by_name = {n: [s for s in ss if s.target not in ids]
                             for n, ss in self._by_name.items()}
            self._select_cache.clear()
        db.execute("PRAGMA incremental_vacuum(256)")
        self._forget(raw_cut, hist_cut)

    def _forget(self, raw_cut: float, hist_cut: float) -> None:
        """Drop from the caches what retention deleted; the rest stays valid."""
        for k in [k for k in self._records
                  if k[2] <= (raw_cut if k[0] == TIER_RAW else hist_cut)]:
            self._records_bytes -= self._records.pop(k).size()
        self._raw_from = max(self._raw_from, math.nextafter(raw_cut, math.inf))
        for k in [k for k in self._cols if k[2] <= raw_cut]:
            self._cols_bytes -= _col_size(self._cols.pop(k))
        self._around.clear()

    # -- reading ----------------------------------------------------------

    @_locked
    def select(self, name: str, matchers: Sequence[Matcher]) -> list[SeriesInfo]:
        """The series named ``name`` whose labels satisfy every matcher."""
        key = (name, tuple(matchers))
        out = self._select_cache.get(key)
        if out is None:
            out = [s for s in self._by_name.get(name, ())
                   if all(m.matches(s.labels) for m in matchers)]
            if len(self._select_cache) > 256:
                self._select_cache.clear()
            self._select_cache[key] = out
        return list(out)

    @_locked
    def target_labels(self) -> dict[int, dict[str, str]]:
        return {t.id: t.labels for t in self._targets.values()}

    def target_last_seen(self, target: int) -> float:
        t = self._targets_by_id.get(target)
        return t.last_ts if t else -math.inf

    def raw_floor(self) -> float:
        """Oldest time still held at full resolution."""
        return self.now - self.config.raw_retention

    @_locked
    def record_at(self, target: int, t: float, after: float | None = None) -> Record | None:
        """The last record of ``target`` at or before ``t`` (and after ``after``)."""
        tier = TIER_RAW if t > self.raw_floor() else TIER_HISTORY
        row = self.db.execute(
            "SELECT ts, schema, vals FROM records WHERE tier=? AND target=? AND ts<=? "
            "ORDER BY ts DESC LIMIT 1", (tier, target, t)).fetchone()
        if row is None or (after is not None and row[0] <= after):
            return None
        return self._decode(tier, target, row)

    def tier_for(self, t: float) -> int:
        """The tier holding values at ``t``: raw while kept, then the history."""
        return TIER_RAW if t > self.raw_floor() else TIER_HISTORY

    @_locked
    def timeline(self, target: int, tier: int, a: float, b: float) -> list[float]:
        """Times of ``target``'s records in [last one <= a, b], oldest first."""
        first = self.db.execute("SELECT max(ts) FROM records WHERE tier=? AND target=? "
                                "AND ts<=?", (tier, target, a)).fetchone()[0]
        return [r[0] for r in self.db.execute(
            "SELECT ts FROM records WHERE tier=? AND target=? AND ts>=? AND ts<=? ORDER BY ts",
            (tier, target, a if first is None else first, b))]

    @_locked
    def last_at(self, target: int, tier: int, times: Iterable[float]
                ) -> dict[float, float | None]:
        """For each of ``times``, the time of ``target``'s last record at or before it
        (None if there is none): one index probe each, 500 to a statement."""
        out: dict[float, float | None] = {}
        ts = list(times)
        for i in range(0, len(ts), 500):
            chunk = ts[i:i + 500]
            out.update(self.db.execute(
                f"WITH p(t) AS (VALUES {','.join(['(?)'] * len(chunk))}) "
                "SELECT t, (SELECT ts FROM records WHERE tier=? AND target=? AND ts<=p.t "
                "ORDER BY ts DESC LIMIT 1) FROM p", (*chunk, tier, target)))
        return out

    @_locked
    def first_after(self, target: int, tier: int, t: float) -> float | None:
        """The time of ``target``'s first record after ``t``."""
        return self.db.execute("SELECT min(ts) FROM records WHERE tier=? AND target=? "
                               "AND ts>?", (tier, target, t)).fetchone()[0]

    @_locked
    def around(self, target: int, tier: int, a: float, b: float) -> list[float]:
        """The record times a window (a, b] needs: the last <= a, the first > a and the
        last <= b (three index lookups; sorted, without duplicates). Remembered until
        that proxy's next ingest or a compaction; treat the list as read-only."""
        memo = self._around.get(target)
        if memo is None or len(memo) >= 64:
            memo = self._around[target] = {}
        key = (tier, a, b)
        hit = memo.get(key)
        if hit is not None:
            return hit
        q = "SELECT {}(ts) FROM records WHERE tier=? AND target=? AND ts{}?"
        got = {self.db.execute(q.format("max", "<="), (tier, target, a)).fetchone()[0],
               self.db.execute(q.format("min", ">"), (tier, target, a)).fetchone()[0],
               self.db.execute(q.format("max", "<="), (tier, target, b)).fetchone()[0]}
        got.discard(None)
        out = memo[key] = sorted(t for t in got if t <= b)
        return out

    @_locked
    def span(self, target: int, a: float, b: float) -> Span:
        """``target``'s raw data from the last record at or before ``a`` to ``b``: the
        columns of its closed steps, then the records of its open one."""
        t = self._targets_by_id.get(target)
        closed = t.rolled[1] if t is not None else -math.inf
        db = self.db
        line: list[float] = []
        steps: list[tuple[float, int, int]] = []
        upto = min(closed, math.ceil(b / HOUR) * HOUR)
        if upto > a - HOUR:
            floor = self._raw_from
            got = self._columns(target, (0,), [k for (k,) in db.execute(
                "SELECT step FROM columns WHERE target=? AND series=0 AND step>? AND step<=? "
                "ORDER BY step", (target, a - HOUR, upto))])
            for (_, k), times in sorted(got.items()):
                if times[-1] <= a:  # the last record at or before a is here or later
                    steps.clear()
                    line.clear()
                skip = bisect_left(times, floor) if times[0] < floor else 0
                if skip < len(times) and times[0] <= b:
                    steps.append((k, skip, len(times)))
                    line.extend(times[skip:] if skip else times)
        tail = [r[0] for r in db.execute("SELECT ts FROM records WHERE tier=0 AND target=? "
                                         "AND ts>? AND ts<=? ORDER BY ts", (target, closed, b))]
        before = False
        if not (line or tail) or (line or tail)[0] > a:  # the one at or before a is older
            ts = db.execute("SELECT max(ts) FROM records WHERE tier=0 AND target=? AND ts<=?",
                            (target, a)).fetchone()[0]
            if ts is not None:
                line.insert(0, ts)
                before = True
        line.extend(tail)
        return Span(self, target, line, steps, before, len(tail))

    @_locked
    def _columns(self, target: int, series: Iterable[int], steps: list[float]
                 ) -> dict[tuple[int, float], array]:
        """(series, step) -> the column of each of ``series`` in each of ``steps`` that
        has one (cached, the least recently read leaving first)."""
        cache = self._cols
        out: dict[tuple[int, float], array] = {}
        missing = []
        for sid in series:
            for k in steps:
                key = (target, sid, k)
                col = cache.get(key)
                if col is None:
                    missing.append(sid)
                    break
                cache.move_to_end(key)
                out[(sid, k)] = col
        if not missing:
            return out
        added = 0
        for sid in missing:  # read whole: drop what is cached of them
            for k in steps:
                col = cache.pop((target, sid, k), None)
                if col is not None:
                    added -= _col_size(col)
        for i in range(0, len(missing), 500):
            chunk = missing[i:i + 500]
            for sid, k, blob in self.db.execute(
                    "SELECT series, step, vals FROM columns WHERE target=? AND series IN "
                    f"({','.join('?' * len(chunk))}) AND step>=? AND step<=?",
                    (target, *chunk, steps[0], steps[-1])):
                col = array("d")
                col.frombytes(blob)
                out[(sid, k)] = cache[(target, sid, k)] = col
                added += _col_size(col)
        self._cols_bytes += added
        while self._cols_bytes > self.config.column_cache_bytes and len(cache) > 1:
            self._cols_bytes -= _col_size(cache.popitem(last=False)[1])
        return out

    @_locked
    def records(self, target: int, tier: int, times: Iterable[float]) -> dict[float, Record]:
        """The records of ``target`` stamped at exactly ``times`` (one query per 500).
        They stay cached, the least recently read leaving first."""
        cache = self._records
        out: dict[float, Record] = {}
        missing = []
        for ts in times:
            key = (tier, target, ts)
            rec = cache.get(key)
            if rec is None:
                missing.append(ts)
            else:
                cache.move_to_end(key)
                out[ts] = rec
        if not missing:
            return out
        inflate = deflate.Inflater()
        added = 0
        for i in range(0, len(missing), 500):
            chunk = missing[i:i + 500]
            for ts, sid, blob in self.db.execute(
                    "SELECT ts, schema, vals FROM records WHERE tier=? AND target=? AND "
                    f"ts IN ({','.join('?' * len(chunk))})", (tier, target, *chunk)):
                rec = out[ts] = cache[(tier, target, ts)] = self._record(tier, target, ts,
                                                                        sid, blob, inflate)
                added += rec.size()
        self._records_bytes += added
        self._trim_records()
        return out

    def _record(self, tier: int, target: int, ts: float, schema_id: int, blob: bytes,
                inflate: Callable[[bytes], bytes] = deflate.unpack) -> Record:
        """A record from its row (its bucket blob is fetched if ever asked for)."""
        _, pos, n_hot = self._schema(schema_id)
        return Record(ts, pos, n_hot, _unpack(blob, inflate),
                      partial(self._cold_blob, tier, target))

    def _decode(self, tier: int, target: int, row: tuple[float, int, bytes]) -> Record:
        key = (tier, target, row[0])
        rec = self._records.get(key)
        if rec is None:
            rec = self._records[key] = self._record(tier, target, *row)
            self._records_bytes += rec.size()
            self._trim_records()
        else:
            self._records.move_to_end(key)
        return rec

    def _trim_records(self) -> None:
        while self._records_bytes > self.config.cache_bytes and len(self._records) > 1:
            self._records_bytes -= self._records.popitem(last=False)[1].size()

    @_locked
    def _cold_blob(self, tier: int, target: int, ts: float) -> bytes | None:
        row = self.db.execute("SELECT cold FROM records WHERE tier=? AND target=? AND ts=?",
                              (tier, target, ts)).fetchone()
        return row[0] if row else None

    @_locked
    def sketch_sum(self, groups: Mapping[int, Hashable], a: float, b: float
                   ) -> dict[Hashable, LatencySketch]:
        """Merged latency deltas in (a, b] of the sketch series in ``groups`` (id -> group):
        per series, two running totals and the raw deltas at the window's edges."""
        sums: dict[Hashable, DenseSum] = {}
        targets: dict[int, list[int]] = {}
        for sid in groups:
            targets.setdefault(self.series[sid].target, []).append(sid)
        inflate = deflate.Inflater()
        raw_floor, step = self.raw_floor(), self.config.history_step
        for target, sids in targets.items():
            t = self._targets_by_id.get(target)
            rolled = t.rolled if t else [-math.inf] * len(ROLLUPS)
            whole, edges = plan(a, b, raw_floor=raw_floor, minutes_since=self._minutes_since,
                                rolled_minute=rolled[0], rolled_step=rolled[1], step=step)
            if whole is not None:
                lo = self._cum.at(target, sids, whole[0], inflate)
                for sid, hi in self._cum.at(target, sids, whole[1], inflate).items():
                    d = hi.minus(lo.get(sid))
                    if d is None:
                        continue  # a total went down: a damaged row, not traffic
                    g = groups[sid]
                    s = sums.get(g)
                    if s is None:
                        s = sums[g] = DenseSum()
                    s.merge(d)
            for x, y in edges:
                self._merge_raw(target, x, y, sids, sums, groups, inflate)
        return {g: s.sketch() for g, s in sums.items()}

    # -- housekeeping -----------------------------------------------------

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.path.getsize(self.path + suffix)
            except OSError:
                pass
        return total

    @_locked
    def close(self) -> None:
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.db.close()


def own_labels(info: SeriesInfo, t: _Target) -> dict[str, str]:
    """The labels the proxy exposed for ``info`` (without the workload labels)."""
    own = {k: v for k, v in info.labels.items() if k not in t.labels}
    for k, v in info.labels.items():
        if k.startswith("exported_") and k[len("exported_"):] in t.labels:
            del own[k]
            own[k[len("exported_"):]] = v
    return own


def _intern(labels: dict[str, str]) -> dict[str, str]:
    return {sys.intern(k): sys.intern(v) for k, v in labels.items()}
