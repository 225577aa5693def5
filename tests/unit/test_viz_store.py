"""The embedded store: persistence, counter resets, rollups, retention."""

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.proxy.latency import LatencySketch
from shoal.viz.embedded import EmbeddedBackend
from shoal.viz.exposition import parse
from shoal.viz.sketchrows import add_encoded
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


def test_sketch_deltas_and_rollups_sum_to_the_traffic_of_the_window(tmp_path):
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
    pieces = s._pieces(info.target, T0 + 5, T0 + 8985)
    assert len(pieces) <= 12 and {p[0] for p in pieces} == {0, 1, 2, 3}


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


@given(st.integers(0, 10**6), st.dictionaries(st.integers(-2000, 2000), st.integers(0, 2**31),
                                            max_size=50))
def test_stored_sketch_rows_decode_to_what_was_encoded(zero, bins):
    s = LatencySketch()
    add_encoded(s, encode_sketch(zero, {str(i): n for i, n in bins.items()}))
    want = {i: n for i, n in bins.items() if n}
    assert (s.zero, s.bins, s.count) == (zero, want, zero + sum(want.values()))


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


def test_remembered_rollup_merges_stay_right_while_scrapes_and_retention_go_on(tmp_path):
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
    assert checked > 30 and s._pieces_done  # the merges were remembered and reused


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
