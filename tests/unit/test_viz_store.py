"""The embedded store: persistence, counter resets, rollups, retention."""

import math
import random
import struct
from array import array

from hypothesis import example, given, settings
from hypothesis import strategies as st

from shoal.proxy.latency import LatencySketch
from shoal.viz import deflate
from shoal.viz.embedded import EmbeddedBackend
from shoal.viz.exposition import parse
from shoal.viz.sketchrows import DenseSum
from shoal.viz.sketchrows import encode as encode_sketch
from shoal.viz.store import TIER_RAW, Store, StoreConfig
from shoal.viz.synthetic import Mesh, SyntheticProxy, workload

T0 = 1_700_000_000.0
POD = workload("ns", "web")


def counter(value, start=1.0, extra=""):
    return parse(f"# TYPE request counter\nrequest_total{{direction=\"inbound\"{extra}}} {value}\n"
                 f"# TYPE process_start_time_seconds gauge\n"
                 f"process_start_time_seconds {start}\n")


def backend(store, now):
    return EmbeddedBackend(store, 10.0, clock=lambda: now)


def test_series_carry_the_workload_labels_and_survive_a_reopen(tmp_path):
    s = Store(tmp_path)
    for i, v in enumerate([10, 20, 35]):
        s.ingest(POD, T0 + 10 * i, counter(v))
    s.close()
    s = Store(tmp_path)
    [series] = s.select("request_total", [])
    assert series.labels == dict(POD, direction="inbound")
    assert backend(s, T0 + 20).increase("request_total", window="30s") == {(): 25.0}
    # counting carries on across the reopen, resets included
    s.ingest(POD, T0 + 30, counter(3))
    assert backend(s, T0 + 30).increase("request_total", window="30s") == {(): 3 + 15 + 10}


def test_a_counter_that_goes_down_restarted_at_zero(tmp_path):
    s = Store(tmp_path)
    for i, v in enumerate([100, 150, 20, 50]):
        s.ingest(POD, T0 + 10 * i, counter(v))
    b = backend(s, T0 + 30)
    assert b.increase("request_total", window="30s") == {(): 50 + 20 + 30}
    assert b.rate("request_total", window="30s") == {(): 100 / 30}


def test_a_new_process_start_time_is_a_reset_even_when_counts_grew(tmp_path):
    s = Store(tmp_path)
    s.ingest(POD, T0, counter(10, start=1.0))
    s.ingest(POD, T0 + 10, counter(15, start=2.0))  # restarted and already counted 15
    assert backend(s, T0 + 10).increase("request_total", window="10s") == {(): 15.0}


def test_window_edges_count_what_happened_between_the_scrapes(tmp_path):
    s = Store(tmp_path)
    for i in range(7):
        s.ingest(POD, T0 + 10 * i, counter(10 * i))
    b = EmbeddedBackend(s, 10.0, clock=lambda: T0 + 60)
    assert b.increase("request_total", window="1m") == {(): 60.0}
    assert b.increase("request_total", window="25s") == {(): 30.0}  # (35, 60]: 30 -> 60
    assert b.increase("request_total", window="10s", at=T0 + 5) == {(): 0.0}  # one sample
    assert b.rate("request_total", window="10s", at=T0 + 5) == {}
    # a proxy first scraped inside the window counts from its first scrape
    assert b.increase("request_total", window="1m", at=T0 + 40) == {(): 40.0}


def test_new_series_count_from_zero_but_the_first_scrape_is_a_baseline(tmp_path):
    s = Store(tmp_path)
    s.ingest(POD, T0, counter(1000))
    s.ingest(POD, T0 + 10, counter(1000) + counter(7, extra=',x="new"')[:1])
    inc = backend(s, T0 + 10).increase("request_total", window="20s", by=("x",))
    assert inc == {("",): 0.0, ("new",): 7.0}


def sketch(values):
    return LatencySketch.of(values).to_json()


def test_sketch_deltas_and_running_totals_sum_to_the_traffic_of_the_window(tmp_path):
    cfg = StoreConfig(raw_retention=4 * 3600, history_retention=8 * 3600, history_step=600)
    s = Store(tmp_path, cfg)
    rnd = random.Random(3)
    cumulative: list[float] = []
    per_scrape: list[list[float]] = []
    n = 900  # 2.5 h: minutes, history steps and hours close along the way
    for i in range(n):
        new = [rnd.uniform(1, 500) for _ in range(rnd.randint(0, 3))]
        per_scrape.append(new)
        cumulative += new
        s.ingest(POD, T0 + 10 * i, counter(len(cumulative)),
                 [({"direction": "inbound", "status_code": "200"}, sketch(cumulative))])
    [info] = s.select("response_latency_ms_sketch", [])
    for a, b in [(5, 8985), (0, 8990), (600, 1200), (55, 605), (1000, 1990), (120, 130),
                 (3595, 7205), (3600, 7200), (1, 8000)]:
        got = s.sketch_sum({info.id: "g"}, T0 + a, T0 + b).get("g", LatencySketch())
        # deltas of scrapes in (a, b]; scrape 0 is the baseline
        want = LatencySketch.of(v for i in range(1, n) if a < 10 * i <= b
                                for v in per_scrape[i])
        assert (got.count, got.zero, got.bins) == (want.count, want.zero, want.bins), (a, b)
    s._cum._cache.clear()
    s.sketch_sum({info.id: "g"}, T0 + 5, T0 + 8985)
    assert len(s._cum._cache) == 2  # two running totals, whatever the window's length


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=2, max_size=60), st.integers(0, 600),
       st.integers(1, 600))
def test_any_window_sums_exactly_the_raw_deltas(tmp_path_factory, counts, a, length):
    s = Store(tmp_path_factory.mktemp("s"), StoreConfig(raw_retention=3600,
                                                        history_retention=3600,
                                                        history_step=120))
    values: list[float] = []
    per: list[list[float]] = []
    for i, n in enumerate(counts):
        new = [float(1 + (i * 7 + j) % 300) for j in range(n)]
        per.append(new)
        values += new
        s.ingest(POD, T0 + 10 * i, [], [({"le": "x"}, sketch(values))])
    sid = s.select("response_latency_ms_sketch", [])[0].id
    got = s.sketch_sum({sid: 0}, T0 + a, T0 + a + length).get(0, LatencySketch())
    want = LatencySketch.of(v for i in range(1, len(counts)) if a < 10 * i <= a + length
                            for v in per[i])
    assert (got.count, got.bins) == (want.count, want.bins)


def test_retention_drops_raw_data_keeps_history_and_bounds_the_file(tmp_path):
    cfg = StoreConfig(raw_retention=1800, history_retention=3 * 3600, history_step=600,
                      compact_every=60)
    s = Store(tmp_path, cfg)
    mesh = Mesh(s, [SyntheticProxy(POD, [workload("ns", "emoji")])], start=T0, interval=60)
    mesh.run(scrapes=120, requests_per_series=2)  # two hours at 1 min
    oldest_raw = s.db.execute("SELECT min(ts) FROM records WHERE tier=?", (TIER_RAW,)).fetchone()
    assert oldest_raw[0] > mesh.now - 1800 - 120
    history = s.db.execute("SELECT count(*), min(ts) FROM records WHERE tier=2").fetchone()
    assert history[0] >= 10 and history[1] < mesh.now - 3600
    b = EmbeddedBackend(s, 10.0, clock=lambda: mesh.now)
    # an hour ago is only in the history: 10-minute resolution, same counts
    old = b.increase("response_total", {"direction": "inbound"}, "30m", at=mesh.now - 3600)
    recent = b.increase("response_total", {"direction": "inbound"}, "30m")
    assert math.isclose(sum(old.values()), sum(recent.values()), rel_tol=0.25)
    # a window that starts in the history and ends in raw data reads each edge from
    # the finest tier holding it: the last scrape counts
    hour = b.increase("response_total", {"direction": "inbound"}, "1h")
    assert math.isclose(sum(hour.values()), 2 * sum(recent.values()), rel_tol=0.25)
    assert b.rate("response_total", {"direction": "inbound"}, "1h")
    lat = b.latency_quantiles([0.5], {"direction": "inbound"}, "30m", at=mesh.now - 3600)
    assert lat and all(v[0] for v in lat.values())
    size_2h = s.size_bytes()
    mesh.run(scrapes=120, requests_per_series=2)  # two more hours
    s.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert s.size_bytes() < 2 * size_2h


def _sketch_traffic(s, bursts, n):
    """Scrapes every 10 s for ``n`` scrapes; scrape i gains ``bursts(i)`` latencies.
    Returns what each scrape gained."""
    cumulative: list[float] = []
    per_scrape: list[list[float]] = []
    for i in range(n):
        new = [float(1 + (i * 13 + j) % 700) for j in range(bursts(i))]
        per_scrape.append(new)
        cumulative += new
        s.ingest(POD, T0 + 10 * i, counter(len(cumulative)),
                 [({"direction": "inbound"}, sketch(cumulative))])
    return per_scrape


def _window(per_scrape, a, b):
    return LatencySketch.of(v for i in range(1, len(per_scrape)) if a < 10 * i <= b
                            for v in per_scrape[i])


def _step(t, up=True):
    """``t`` (seconds after T0) moved to a history step (600 s) of absolute time."""
    k = (math.ceil if up else math.floor)((T0 + t) / 600) * 600
    return k - T0


def test_windows_in_the_history_start_and_end_on_its_steps(tmp_path):
    """Older than the raw retention only the step totals are left: a window there
    covers the whole steps inside it, as the history's counters do."""
    s = Store(tmp_path, StoreConfig(raw_retention=1800, history_retention=6 * 3600,
                                    history_step=600))
    per = _sketch_traffic(s, lambda i: i % 3, 1440)  # 4 h
    [info] = s.select("response_latency_ms_sketch", [])
    for a, b in [(1205, 4790), (600, 7200), (1805, 13000), (3000, 14390)]:
        got = s.sketch_sum({info.id: 0}, T0 + a, T0 + b).get(0, LatencySketch())
        hi = b if b > 14390 - 1800 else _step(b, up=False)
        want = _window(per, _step(a), hi)
        assert (got.count, got.bins) == (want.count, want.bins), (a, b)
    thinned = s.db.execute("SELECT count(*) FROM cumulative WHERE ts < ? AND "
                           "CAST(ts AS INTEGER) % 600 != 0", (T0 + 14390 - 3060,)).fetchone()
    kept = s.db.execute("SELECT count(*) FROM cumulative WHERE ts < ?",
                        (T0 + 14390 - 3060,)).fetchone()
    assert thinned[0] == 0 and kept[0] >= 15


def test_a_series_idle_for_longer_than_the_retention_still_counts_exactly(tmp_path):
    s = Store(tmp_path, StoreConfig(raw_retention=1200, history_retention=2400,
                                    history_step=600))
    per = _sketch_traffic(s, lambda i: 2 if i < 30 or i > 700 else 0, 760)
    [info] = s.select("response_latency_ms_sketch", [])
    for a, b in [(6900, 7590), (7005, 7500), (7080, 7590)]:
        got = s.sketch_sum({info.id: 0}, T0 + a, T0 + b).get(0, LatencySketch())
        want = _window(per, a, b)
        assert (got.count, got.bins) == (want.count, want.bins), (a, b)


def test_an_older_store_s_rollups_become_running_totals(tmp_path):
    """Stores written before the running totals kept delta rollups per minute (tier
    1), per step (2) and per hour (3); opening one converts them, once."""
    cfg = StoreConfig(raw_retention=3600, history_retention=4 * 3600, history_step=600)
    s = Store(tmp_path, cfg)
    per = _sketch_traffic(s, lambda i: i % 4, 720)  # 2 h
    [info] = s.select("response_latency_ms_sketch", [])
    db = s.db
    # rewrite it as an older store would have left it: delta rollups, no totals
    db.execute("BEGIN")
    rows = [(info.target, T0 + 10 * i, info.id, encode_sketch(0, LatencySketch.of(new).bins))
            for i, new in enumerate(per) if i and new]
    rolled = s._targets_by_id[info.target].rolled
    for tier, size, floor, last in ((1, 60, T0 + 7190 - 3600, rolled[0]),
                                    (2, 600, -math.inf, rolled[1]),
                                    (3, 3600, -math.inf, rolled[1])):
        sums: dict[tuple[int, int, float], DenseSum] = {}
        for target, ts, sid, data in rows:
            k = math.ceil(ts / size) * size
            if floor < k <= last:  # the buckets closed so far
                sums.setdefault((target, sid, k), DenseSum()).add(data)
        db.executemany("INSERT INTO sketches VALUES (?,?,?,?,?)",
                       [(tier, t, k, sid, d.encode()) for (t, sid, k), d in sums.items()])
    # ... and a row per series and scrape for the raw deltas
    db.executemany("INSERT INTO sketches VALUES (0,?,?,?,?)",
                   [r for r in rows if r[1] > T0 + 7190 - 3600])
    db.execute("DELETE FROM raw_sketches")
    db.execute("DELETE FROM cumulative")
    db.execute("DELETE FROM meta WHERE key='sketch_layout'")
    db.execute("COMMIT")
    s.close()
    s = Store(tmp_path, cfg)
    assert s.db.execute("SELECT count(*) FROM sketches WHERE tier>0").fetchone()[0] == 0
    assert s._old_raw
    for a, b in [(3605, 7190), (4000, 7000), (6600, 7185), (5, 7190)]:
        got = s.sketch_sum({info.id: 0}, T0 + a, T0 + b).get(0, LatencySketch())
        want = _window(per, a if a >= 7190 - 3600 else _step(a), b)
        assert (got.count, got.bins) == (want.count, want.bins), (a, b)
    per_more = _sketch_traffic_after(s, per, 360)  # an hour more, on the new layout
    for a, b in [(7200, 10790), (3605, 10790), (10000, 10700)]:
        got = s.sketch_sum({info.id: 0}, T0 + a, T0 + b).get(0, LatencySketch())
        want = _window(per_more, a if a >= 10790 - 3600 else _step(a), b)
        assert (got.count, got.bins) == (want.count, want.bins), (a, b)
    s.compact(T0 + 10790 + 60)
    assert not s._old_raw  # the old raw rows expired with the raw retention


def _sketch_traffic_after(s, per_scrape, n):
    cumulative = [v for new in per_scrape for v in new]
    out = list(per_scrape)
    for i in range(len(per_scrape), len(per_scrape) + n):
        new = [float(1 + (i * 13 + j) % 700) for j in range(i % 4)]
        out.append(new)
        cumulative += new
        s.ingest(POD, T0 + 10 * i, counter(len(cumulative)),
                 [({"direction": "inbound"}, sketch(cumulative))])
    return out


@given(st.integers(0, 10**6), st.dictionaries(st.integers(-2000, 2000), st.integers(0, 2**31),
                                            max_size=50))
def test_stored_sketch_rows_decode_to_what_was_encoded(zero, bins):
    row = DenseSum()
    row.add(encode_sketch(zero, {str(i): n for i, n in bins.items()}))
    s = row.sketch()
    want = {i: n for i, n in bins.items() if n}
    assert (s.zero, s.bins, s.count) == (zero, want, zero + sum(want.values()))


@given(st.lists(st.tuples(st.integers(0, 1000),
                         st.dictionaries(st.integers(-300, 300), st.integers(0, 2**32 - 1),
                                         max_size=30)), min_size=1, max_size=12))
def test_summed_rows_equal_summed_sketches_whatever_the_order_of_lowest_bins(rows):
    """Sums are integers with a 64-bit field per bin: shifts align rows whose lowest
    bins differ, and uint32 counts summed past 2**32 carry into no neighbour."""
    inflate = deflate.Inflater()
    total = DenseSum()
    want: dict[int, int] = {}
    for zero, bins in rows * 3:
        total.add(encode_sketch(zero, bins), inflate)
        for i, n in bins.items():
            if n:
                want[i] = want.get(i, 0) + n
    again = DenseSum()
    again.add(total.encode())
    for s in (total, again):
        sk = s.sketch()
        assert (sk.zero, sk.bins) == (3 * sum(z for z, _ in rows), want)


def test_rows_written_before_the_format_byte_still_read():
    """uint32 rows (a 12-byte head, no format byte) from older stores."""
    old = deflate.pack(struct.pack("<qi", 5, -3) + array("I", [2, 0, 7]).tobytes())
    row = DenseSum()
    row.add(old)
    s = row.sketch()
    assert (s.zero, s.bins, s.count) == (5, {-3: 2, -1: 7}, 14)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(0, 5), min_size=4, max_size=4),
                          st.booleans(), st.integers(0, 3)), min_size=2, max_size=25),
       st.integers(0, 240), st.integers(10, 240))
def test_repeated_scrapes_count_exactly_through_resets_and_reorders(
        tmp_path_factory, steps, a, length):
    """Scrapes laid out as the previous one take a faster path: it must count as the
    general one, through counter resets (then offsets) and changes of sample order."""
    s = Store(tmp_path_factory.mktemp("s"))
    names = ['req_total{a="0"}', 'req_total{a="1"}', 'lat_bucket{le="5"}',
             'lat_bucket{le="+Inf"}']
    values = [0] * 4
    seen: list[list[int]] = []
    for i, (incs, reset, rotate) in enumerate(steps):
        values = [0 if reset and k == i % 4 else v + d
                  for k, (v, d) in enumerate(zip(values, incs, strict=True))]
        seen.append(list(values))
        order = list(range(4))[rotate:] + list(range(4))[:rotate] if i % 5 == 4 else range(4)
        text = "# TYPE req counter\n# TYPE lat histogram\n# TYPE g gauge\n"
        text += "".join(f"{names[k]} {values[k]}\n" for k in order) + f"g {i}\n"
        s.ingest(POD, T0 + 10 * i, parse(text))
    want = [0.0] * 4
    for i in range(1, len(seen)):
        if a < 10 * i <= a + length:
            for k in range(4):
                v, p = seen[i][k], seen[i - 1][k]
                want[k] += v - p if v >= p else v
    b = backend(s, T0 + a + length)
    got = b.increase("req_total", window=float(length), by=("a",), at=T0 + a + length)
    end = min(len(seen) - 1, (a + length) // 10)
    if end * 10 <= a:  # no scrape inside the window
        assert not any(got.values())
        return
    assert got.get(("0",), 0.0) == want[0] and got.get(("1",), 0.0) == want[1]
    lat = b.increase("lat_bucket", window=float(length), by=("le",), at=T0 + a + length)
    assert lat.get(("5",), 0.0) == want[2] and lat.get(("+Inf",), 0.0) == want[3]
    assert b.gauge("g", window=float(length), at=T0 + a + length) == {(): float(end)}


def test_sketch_deltas_whatever_order_the_bins_come_in(tmp_path):
    s = Store(tmp_path)
    first = {"zero": 1, "bins": {"7": 2, "3": 1}}
    grown = {"zero": 1, "bins": {"7": 3, "3": 1, "9": 4}}      # appended: the fast path
    shuffled = {"zero": 2, "bins": {"9": 4, "7": 5, "3": 1}}   # reordered: the general one
    went_down = {"zero": 0, "bins": {"9": 1, "7": 5, "3": 1}}  # a reset: all of it counts
    for i, doc in enumerate([first, grown, shuffled, went_down]):
        s.ingest(POD, T0 + 10 * i, [], [({"direction": "inbound"}, doc)])
    [info] = s.select("response_latency_ms_sketch", [])

    def got(i: int) -> tuple[int, dict[int, int]]:
        sk = s.sketch_sum({info.id: 0}, T0 + 10 * i - 5, T0 + 10 * i)[0]
        return sk.zero, sk.bins
    assert got(1) == (0, {7: 1, 9: 4})
    assert got(2) == (1, {7: 2})
    assert got(3) == (0, {9: 1, 7: 5, 3: 1})


def test_dense_sketches_whose_lowest_bin_moves_or_whose_bin_goes_down(tmp_path):
    """Proxies send dense counts from their lowest bin; a new lower bin shifts them,
    and a bin that went down while the total grew is a reset (all of it counts)."""
    s = Store(tmp_path)
    docs = [{"zero": 0, "lo": 5, "counts": [1, 0, 2]},
            {"zero": 1, "lo": 3, "counts": [4, 0, 1, 0, 3]},      # bin 3 is new
            {"zero": 1, "lo": 3, "counts": [4, 0, 1, 0, 2, 0, 9]},  # bin 7 went down
            {"zero": 1, "lo": 3, "counts": [4, 0, 1, 0, 2, 0, 9]},  # no change: no row
            {"zero": 1, "lo": 3, "counts": ["x"]}]                 # malformed: skipped
    for i, doc in enumerate(docs):
        s.ingest(POD, T0 + 10 * i, [], [({"direction": "inbound"}, doc)])
    [info] = s.select("response_latency_ms_sketch", [])

    def got(i: int) -> tuple[int, dict[int, int]]:
        sk = s.sketch_sum({info.id: 0}, T0 + 10 * i - 5, T0 + 10 * i).get(0, LatencySketch())
        return sk.zero, sk.bins
    assert got(1) == (1, {3: 4, 7: 1})
    assert got(2) == (1, {3: 4, 5: 1, 7: 2, 9: 9})
    assert got(3) == got(4) == (0, {})


def test_remembered_totals_stay_right_while_scrapes_and_retention_go_on(tmp_path):
    cfg = StoreConfig(raw_retention=3600, history_retention=3 * 3600, history_step=600)
    s = Store(tmp_path, cfg)
    rnd = random.Random(5)
    cumulative: list[float] = []
    per_scrape: list[list[float]] = []
    checked = 0
    for i in range(1100):  # 3 h: minutes, steps and hours close; retention deletes
        new = [rnd.uniform(1, 900) for _ in range(rnd.randint(0, 2))]
        per_scrape.append(new)
        cumulative += new
        s.ingest(POD, T0 + 10 * i, counter(len(cumulative)),
                 [({"direction": "inbound"}, sketch(cumulative))])
        if i % 45 or i < 400:
            continue
        [info] = s.select("response_latency_ms_sketch", [])
        now = 10 * i
        for a, b in [(now - 3300, now), (now - 2400, now - 600), (now - 1205, now - 5)]:
            got = s.sketch_sum({info.id: 0}, T0 + a, T0 + b).get(0, LatencySketch())
            want = LatencySketch.of(v for j in range(1, i + 1) if a < 10 * j <= b
                                    for v in per_scrape[j])
            assert (got.count, got.bins) == (want.count, want.bins), (i, a, b)
            checked += 1
    assert checked > 30 and s._cum._cache  # the totals were remembered and reused


def test_a_proxy_first_seen_soon_after_its_start_counts_from_its_start(tmp_path):
    s = Store(tmp_path)
    fresh, old = workload("ns", "fresh"), workload("ns", "old")
    s.ingest(fresh, T0 + 10, counter(40, start=T0 + 2)
             + parse("# TYPE tcp_open_connections gauge\ntcp_open_connections 3\n"),
             [({"direction": "inbound"}, sketch([5.0] * 40))])
    s.ingest(old, T0 + 10, counter(40, start=T0 - 3600),
             [({"direction": "inbound"}, sketch([5.0] * 40))])
    b = backend(s, T0 + 10)
    assert b.increase("request_total", window="1m", by=("deployment",)) == {
        ("fresh",): 40.0, ("old",): 0.0}  # the old one's count is a baseline
    assert b.rate("request_total", {"deployment": "fresh"}, window="1m") == {(): 40 / 8}
    assert b.gauge("tcp_open_connections", window="1m") == {(): 3.0}
    assert b.gauge("tcp_open_connections", window="10s", at=T0 + 5) == {}
    lat = b.sketches({"direction": "inbound"}, window="1m", by=("deployment",))
    assert {k: v.count for k, v in lat.items()} == {("fresh",): 40}


def test_records_with_deflated_values_from_earlier_versions_still_read(tmp_path):
    s = Store(tmp_path)
    for i, v in enumerate([10, 20, 35, 50]):
        s.ingest(POD, T0 + 10 * i, counter(v))
    s.close()
    # earlier versions deflated the hot values too: rewrite the first two that way
    s = Store(tmp_path)
    rows = s.db.execute("SELECT rowid, vals FROM records WHERE ts<?", (T0 + 20,)).fetchall()
    assert rows and all(v[:1] == b"\x02" for _, v in rows)
    for rowid, vals in rows:
        s.db.execute("UPDATE records SET vals=? WHERE rowid=?", (deflate.pack(vals[1:]), rowid))
    s.db.commit()
    s.close()
    s = Store(tmp_path)
    assert [v[:1] for (v,) in s.db.execute("SELECT vals FROM records ORDER BY ts")] == [
        b"\x01", b"\x01", b"\x02", b"\x02"]
    b = backend(s, T0 + 30)
    assert b.increase("request_total", window="30s") == {(): 40.0}  # 10 (deflated) -> 50
    assert b.increase_range("request_total", None, [T0 + 10, T0 + 30], "10s") == [
        {(): 10.0}, {(): 15.0}]


@given(st.lists(st.integers(0, 30), min_size=3, max_size=12), st.integers(1, 8),
       st.integers(10, 60), st.booleans())
@example([5, 9, 2, 4, 8, 8, 9], 2, 60, False)  # api's first window holds two of its records
@settings(max_examples=40, deadline=None)
def test_range_edges_by_probes_or_by_timelines_are_the_same(counts, late, step, rate):
    """A range query finds its windows' edge records by reading the record times
    (few records per edge) or by one index probe per edge (many): the same answer,
    with resets, a proxy that appears late, and windows without a record."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        s = Store(d)
        other = workload("ns", "api")
        for i, v in enumerate(counts):
            s.ingest(POD, T0 + 15 * i, counter(v, start=1.0))  # a drop is a reset
            if i >= late:
                s.ingest(other, T0 + 15 * i + 5, counter(3 * i, start=1.0))
        times = [T0 + t for t in range(step, 15 * len(counts) + step, step)]
        want = backend(s, T0).increase_range("request_total", None, times, step,
                                             ("deployment",), rate)
        probing = EmbeddedBackend(s, 0.001, clock=lambda: T0)  # "scraped" very densely
        got = probing.increase_range("request_total", None, times, step, ("deployment",), rate)
        assert got == want
        s.close()


def two_counters(a, b, start, extra):
    """A proxy's scrape: two inbound counters (the second only when ``extra``: a
    series that comes and goes changes the record's schema) and its start time."""
    text = (f"# TYPE request counter\nrequest_total{{direction=\"inbound\",code=\"200\"}} {a}\n"
            + (f"request_total{{direction=\"inbound\",code=\"500\"}} {b}\n" if extra else "")
            + f"# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {start}\n")
    return parse(text)


_EVENT = st.tuples(st.integers(5, 1500), st.integers(0, 40),
                   st.sampled_from(["scrape"] * 6 + ["restart", "late", "reopen", "toggle"]))


def as_series(times, vectors):
    """``Queries.series``'s points from one vector per time."""
    out = {}
    for t, vec in zip(times, vectors, strict=True):
        for k, v in vec.items():
            out.setdefault(k, []).append((t, v))
    return out


@given(st.lists(_EVENT, min_size=4, max_size=40), st.sampled_from([30, 60, 180, 600]),
       st.booleans(), st.integers(0, 40), st.sampled_from([0.5, 1, 1, 2]),
       st.sampled_from([2 * 3600, 2 * 3600, 600]))
@example([(5, 3, "scrape"), (900, 2, "scrape"), (5, 2, "scrape"), (1200, 1, "scrape")] * 3,
         180, False, 3, 1, 7200)  # a proxy appearing inside a window: counted from its first
@example([(210, 2, "scrape")] * 60, 600, True, 0, 1, 7200)  # every window counts
@example([(30, 5, "scrape")] * 30, 600, False, 0, 0.5, 600)  # an end a chunk before a start
@example([(g, a, "scrape") for g, a in zip(  # edges of both tiers at one time
    [672, 645, 1475, 19, 1278, 855, 1404, 1148, 1478, 354, 544, 1028, 744, 955, 235, 910,
     1181, 979, 999, 1165, 774, 609, 170, 1398, 942, 436, 837, 680, 1492, 844],
    [16, 21, 16, 33, 21, 28, 5, 38, 22, 15, 7, 25, 37, 33, 24, 32, 19, 10, 33, 39, 1, 0, 38,
     25, 9, 8, 30, 12, 32, 39], strict=True)], 600, True, 21, 2, 7200)
@settings(max_examples=60, deadline=None)
def test_range_queries_from_columns_equal_those_from_records(events, step, rate, appear,
                                                             wide, raw):
    """Range queries read the store's columns (hours as one chunk), the records of the
    open step and, for edges older than the raw data, the history's records; the
    answers, as vectors and as ``Queries.series``'s points (groups in order), are
    those of the records alone, whatever happens: gaps longer than a step or an hour,
    restarts, a series that comes and goes, a scrape stamped inside a step already
    closed for its idle proxy, a proxy that appears late, reopening the store, raw
    data expiring (after 2 h, or 10 minutes: inside the open hour, whose columns are
    kept per step), windows shorter or longer than the step."""
    import tempfile
    cfg = StoreConfig(raw_retention=raw, history_retention=4 * 3600, history_step=60,
                      compact_every=60)
    with tempfile.TemporaryDirectory() as d:
        s = Store(d, cfg)
        web, api, db = POD, workload("ns", "api"), workload("ns2", "db")
        now, total, start, before, extra = T0, [0, 0], 1.0, T0, False
        for i, (gap, add, what) in enumerate(events):
            now += gap
            if what == "restart":
                total, start = [0, 0], start + 1
            elif what == "reopen":
                s.close()
                s = Store(d, cfg)
            elif what == "toggle":
                extra = not extra
            total = [total[0] + add, total[1] + add // 2]
            s.ingest(web, now, two_counters(*total, start, extra))
            if what == "late" and gap > 300:
                # api idle for minutes while web went on: its step was closed for it
                s.ingest(api, before + 1, two_counters(add, 0, 1.0, False))
            before = now
            s.ingest(api, now - 3, two_counters(2 * total[0], 0, 1.0, extra))
            if i >= appear:
                s.ingest(db, now - 7, two_counters(3 * i, i, 1.0, True))
        end = math.ceil(now / step) * step
        times = [end - i * step for i in range(min(120, int(3 * 3600 / step)), -1, -1)]
        for by in ((), ("deployment",), ("code",), ("namespace", "code")):
            records = EmbeddedBackend(s, 10.0, clock=lambda: now, columns=False)
            want = records.increase_range("request_total", None, times, wide * step, by, rate)
            columns = EmbeddedBackend(s, 10.0, clock=lambda: now)
            got = columns.increase_range("request_total", None, times, wide * step, by, rate)
            assert got == want
            points = columns.increase_series("request_total", None, times, wide * step, by,
                                             rate)
            assert list(points.items()) == list(as_series(times, want).items())
        s.close()


def test_a_window_from_the_history_counts_a_proxy_from_its_first_record(tmp_path):
    """A range's first window can start before the raw data (in the history) and end
    in it: a proxy with no history record at or before its start counts from its
    first one, and when that is the window's last record too, the window has an
    increase of 0 and no rate; the columns answer as the records do, also when that
    window ends in an hour before the next window's start."""
    cfg = StoreConfig(raw_retention=4500, history_retention=4 * 3600, history_step=60,
                      compact_every=60)
    web, db = POD, workload("ns", "db")
    hour = math.ceil(T0 / 3600) * 3600 + 3600  # T0 + 6400
    now = T0 + 30 * 360 + 7
    for alone in (True, False):
        s = Store(tmp_path / str(alone), cfg)
        for k in range(361):  # three hours every 30 s
            s.ingest(web, T0 + 30 * k, counter(5 * k))
            t = T0 + 30 * k + 7  # db from T0 + 6427, alone in the first window or not
            if t == T0 + 6427 or t > T0 + 6427 and (t > T0 + 6900 or not alone):
                s.ingest(db, t, counter(3 * k))
        assert s.now == now and s.raw_floor() == T0 + 6307
        # windows of 10 minutes every 10 minutes, the first from T0 + 6250; and of 5
        # minutes, the first from T0 + 6050 (it ends before the hour, the second starts
        # after it)
        for window, first in ((600, T0 + 6850), (300, T0 + 6350)):
            times = [first + 600 * i for i in range(6)]
            assert times[0] - window < s.raw_floor() < times[0]
            assert window == 600 or times[0] < hour < times[1] - window
            for rate in (False, True):
                want = EmbeddedBackend(s, 10.0, clock=lambda: now, columns=False
                                       ).increase_range("request_total", None, times, window,
                                                        ("deployment",), rate)
                got = EmbeddedBackend(s, 10.0, clock=lambda: now).increase_range(
                    "request_total", None, times, window, ("deployment",), rate)
                assert got == want
                assert want[0].get(("web",), 0) > 0
                if window == 300:
                    continue
                if alone:
                    assert want[0].get(("db",)) == (None if rate else 0.0)
                else:
                    assert want[0].get(("db",), 0) > 0
        s.close()


def test_closed_hours_are_one_chunk_older_stores_get_columns_and_retention_drops_them(
        tmp_path):
    cfg = StoreConfig(raw_retention=3 * 3600, history_retention=6 * 3600, history_step=600,
                      compact_every=60)
    s = Store(tmp_path, cfg)
    mesh = Mesh(s, [SyntheticProxy(POD, [workload("ns", "emoji")])], start=T0, interval=30)
    mesh.run(scrapes=4 * 120 + 50, requests_per_series=2)  # four hours and 25 minutes

    def chunks():
        return [k for (k,) in s.db.execute("SELECT step FROM columns WHERE series=0 "
                                           "ORDER BY step")]
    ks = chunks()
    last_hour = math.floor(mesh.now / 3600) * 3600
    # whole hours closed are one chunk each, the steps of the open hour one each
    assert all(k % 3600 == 0 for k in ks if k <= last_hour)
    assert [k for k in ks if k > last_hour] == [
        k for k in range(int(last_hour) + 600, int(mesh.now), 600) if k < mesh.now - 30]
    # retention: no chunk wholly older than the raw data
    assert min(ks) > mesh.now - 3 * 3600 - 30 and len(ks) <= 3 + 6
    b = EmbeddedBackend(s, 10.0, clock=lambda: mesh.now)
    times = [mesh.now - 60 * i for i in range(150, -1, -1)]
    want = b.increase_range("response_total", {"direction": "inbound"}, times, 60,
                            ("deployment",), rate=True)
    assert sum(sum(v.values()) for v in want) > 0
    # a store written before columns existed gets them when opened
    s.db.execute("DELETE FROM columns")
    s.db.execute("DELETE FROM meta WHERE key='columns'")
    s.close()
    s = Store(tmp_path, cfg)
    assert chunks() == ks
    b = EmbeddedBackend(s, 10.0, clock=lambda: mesh.now)
    assert b.increase_range("response_total", {"direction": "inbound"}, times, 60,
                            ("deployment",), rate=True) == want
    s.close()
