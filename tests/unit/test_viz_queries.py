"""Golden-metric queries over the embedded store, on synthetic proxies."""

import math
from array import array
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.viz.embedded import EmbeddedBackend, _Edges
from shoal.viz.errors import BadSelector, QueryError, UnknownResource, WindowTooShort
from shoal.viz.queries import Queries, bucket_quantile, resource_kind
from shoal.viz.series import group_key
from shoal.viz.store import Record, SeriesInfo, Store
from shoal.viz.synthetic import Mesh, SyntheticProxy, workload

NS = "emojivoto"


@pytest.fixture
def mesh(tmp_path):
    web, emoji, voting = (workload(NS, n) for n in ("web", "emoji", "voting"))
    web2 = workload(NS, "web", 1)
    other = workload("other", "client")
    proxies = [
        SyntheticProxy(web, [emoji, voting], [], codes=(200, 200, 200, 500), seed=1),
        SyntheticProxy(web2, [emoji], [], codes=(200,), seed=2),
        SyntheticProxy(emoji, [], [web], codes=(200, 404), seed=3),
        SyntheticProxy(voting, [], [web], tls=False, codes=(200, 500), seed=4),
        SyntheticProxy(other, [emoji], [], tls=False, seed=5),
    ]
    m = Mesh(Store(tmp_path), proxies)
    m.run(scrapes=13, requests_per_series=10)  # 10 requests per label set per 10 s
    m.now -= m.interval  # "now" is the last scrape
    return m


def queries(mesh):
    return Queries(EmbeddedBackend(mesh.store, 10.0, clock=lambda: mesh.now))


def by_name(rows):
    return {r.name: r for r in rows}


def test_stat_deployments_is_their_inbound_view(mesh):
    rows = by_name(queries(mesh).stat("deploy", NS, window="1m"))
    assert set(rows) == {"web", "emoji", "voting"}
    emoji, voting, web = rows["emoji"], rows["voting"], rows["web"]
    # each inbound label set serves 1 rps; success: 404 is a success, 500 a failure
    assert emoji.rps == pytest.approx(1.0) and emoji.success == 1.0
    assert emoji.requests == 60
    assert 0.3 < voting.success < 0.7
    assert emoji.meshed_pods == 1 and web.meshed_pods == 2
    assert emoji.tcp_open_connections == 1 and emoji.tcp_read_bytes_rate == pytest.approx(200)
    assert 5 < emoji.latency_ms_p50 < emoji.latency_ms_p95 <= emoji.latency_ms_p99
    # web receives nothing: a row with no traffic
    assert web.success is None and web.rps is None and web.latency_ms_p50 is None
    assert web.to_json()["namespace"] == NS


def test_stat_to_is_the_callers_outbound_view(mesh):
    q = queries(mesh)
    rows = by_name(q.stat("deploy", NS, window="1m", to="deploy/emoji"))
    assert set(rows) == {"web"}
    assert rows["web"].rps == pytest.approx(2.0)  # two web pods call emoji
    pods = by_name(q.stat("po", NS, window="1m", to="svc/emoji"))
    assert set(pods) == {"web-5f7c8d9b4-p0000", "web-5f7c8d9b4-p0001"}
    assert pods["web-5f7c8d9b4-p0001"].success == 1.0


def test_stat_from_gives_one_row_per_destination(mesh):
    rows = by_name(queries(mesh).stat("deploy", NS, window="1m", from_="deploy/web"))
    assert set(rows) == {"emoji", "voting"}
    assert rows["emoji"].rps == pytest.approx(2.0) and rows["voting"].rps == pytest.approx(1.0)
    assert rows["emoji"].meshed_pods is None


def test_services_are_seen_from_their_callers_in_every_namespace(mesh):
    q = queries(mesh)
    rows = by_name(q.stat("svc", NS, window="1m"))
    assert rows["emoji"].rps == pytest.approx(3.0)  # web x2 and other/client
    only_web = by_name(q.stat("svc", NS, window="1m", from_="deploy/web"))
    assert only_web["emoji"].rps == pytest.approx(2.0)


def test_namespaces_replicasets_pods_and_all_namespaces(mesh):
    q = queries(mesh)
    assert [r.name for r in q.stat("ns", window="1m")] == [NS, "other"]
    assert [r.name for r in q.stat("rs", NS, window="1m")] == [
        "emoji-5f7c8d9b4", "voting-5f7c8d9b4", "web-5f7c8d9b4"]
    assert [r.name for r in q.stat("rs", NS, "emoji-5f7c8d9b4", window="1m")] == [
        "emoji-5f7c8d9b4"]
    assert {(r.namespace, r.name) for r in q.stat("deploy", window="1m")} >= {
        ("other", "client"), (NS, "web")}
    [one] = q.stat("po", NS, "emoji-5f7c8d9b4-p0000", window="1m")
    assert one.requests == 60


def test_edges_show_mtls_or_the_reason(mesh):
    edges = {(e.src, e.dst): e for e in queries(mesh).edges("deploy", NS)}
    assert set(edges) == {("web", "emoji"), ("web", "voting"), ("client", "emoji")}
    secured = edges[("web", "emoji")]
    assert secured.secured and secured.server_id.startswith("emoji.emojivoto.")
    assert secured.client_id == "web.emojivoto.serviceaccount.identity.shoal.local"
    plain = edges[("client", "emoji")]
    assert not plain.secured and plain.no_tls_reason == "not_provided_by_service_discovery"
    assert plain.src_namespace == "other"


def test_series_for_history_charts(mesh):
    q = queries(mesh)
    s = q.series("response_total", {"direction": "inbound"}, start=mesh.now - 60,
                 end=mesh.now, step=30, by=("deployment",))
    assert [round(v, 6) for _, v in s[("emoji",)]] == [1.0, 1.0, 1.0]
    p = q.series("response_latency_ms_bucket", {"deployment": "emoji"}, start=mesh.now - 60,
                 end=mesh.now, step=60, fn="histogram_quantile", q=0.5)
    assert all(v is not None for _, v in p[()])
    points = q.stat_series("deploy", NS, "emoji", start=mesh.now - 60, end=mesh.now, step=30)
    assert len(points) == 3 and points[-1]["rps_by_tls"] == {"true": pytest.approx(1.0)}
    assert points[-1]["success"] == 1.0 and points[-1]["latency_ms_p99"]


def test_bad_queries_raise_value_errors_with_the_reason(mesh):
    q = queries(mesh)
    with pytest.raises(UnknownResource, match="unknown resource type 'widgets'"):
        q.stat("widgets", NS)
    with pytest.raises(WindowTooShort):
        q.stat("deploy", NS, window="5s")
    with pytest.raises(QueryError, match="mutually exclusive"):
        q.stat("deploy", NS, to="deploy/a", from_="deploy/b")
    with pytest.raises(UnknownResource, match="TYPE/NAME"):
        q.stat("deploy", NS, to="emoji")
    with pytest.raises(BadSelector):
        q.stat("deploy", NS, match='{namespace=~"("}')
    with pytest.raises(UnknownResource):
        q.edges("svc", NS)
    with pytest.raises(ValueError):
        q.series("response_total", start=mesh.now, end=mesh.now - 60, step=30)
    assert resource_kind("DEPLOY").name == "deployment"


def test_selectors_filter_rows(mesh):
    rows = queries(mesh).stat("deploy", NS, window="1m", match='{deployment=~"emo.*"}')
    assert [r.name for r in rows] == ["emoji"]


def test_bucket_quantile_interpolates_like_prometheus():
    inf = float("inf")
    b = [(1.0, 0), (2.0, 2), (4.0, 6), (inf, 8)]
    assert bucket_quantile(0.5, b) == 3.0
    assert bucket_quantile(0.99, b) == 4.0  # in +Inf: the highest finite bound
    assert bucket_quantile(0.5, [(1.0, 0), (inf, 0)]) is None
    assert bucket_quantile(0.5, [(1.0, 3)]) is None


class InstantOnly:
    """A backend with the instant primitives only, as a Prometheus one may be."""

    def __init__(self, backend):
        self._backend = backend

    def __getattr__(self, name):
        if name in ("increase_range", "gauge_range"):
            raise AttributeError(name)
        return getattr(self._backend, name)


def test_range_queries_agree_with_instant_primitives(mesh):
    fast = queries(mesh)
    slow = Queries(InstantOnly(fast.backend))
    args = dict(start=mesh.now - 60, end=mesh.now, step=20)
    assert fast.stat_series("deploy", NS, "emoji", **args) == slow.stat_series(
        "deploy", NS, "emoji", **args)
    assert fast.series("tcp_open_connections", {}, fn="gauge", by=("deployment",),
                       **args) == slow.series("tcp_open_connections", {}, fn="gauge",
                                              by=("deployment",), **args)


def _reference_sums(ss, rec, by):
    """Per group, summed one value at a time; None when one is absent or NaN."""
    out = {}
    for s in ss:
        x = rec.get(s.id)
        if x is None or x != x:
            return None
        k = group_key(s.labels, by)
        out[k] = out.get(k, 0.0) + x
    return out


@given(st.lists(st.one_of(st.floats(0, 1e12), st.just(math.nan)), min_size=4, max_size=4),
       st.integers(1, 4), st.sampled_from([(), ("dst",), ("code",), ("dst", "code")]))
def test_edges_pick_and_sum_what_one_value_at_a_time_would(vals, n_hot, by):
    """``_Edges`` reads a record's values in one pick when they are all hot: the same
    values and group sums as reading them one by one, also for a series in the
    buckets' part, a series the record lacks, and NaN."""
    ss = [SeriesInfo(i, 1, "response_total", {"dst": f"d{i % 2}", "code": str(200 + i // 2)},
                     True, False) for i in range(5)]
    pos = {0: 0, 1: 1, 2: 2, 3: 3}  # series 4 is in no record
    rec = Record(10.0, pos, n_hot, array("d", vals[:n_hot]), lambda ts: None)
    rec._cold = array("d", vals[n_hot:])  # the buckets' part, as if loaded
    for subset in (ss[:4], ss[:2], ss[2:4], ss):
        edges = _Edges(subset, {(0, 10.0): rec}, by)
        assert list(edges.read((0, 10.0))) == pytest.approx(
            [rec.get(s.id) for s in subset], nan_ok=True)
        _, [sums], _ = edges.chain()
        assert (sums if sums is None else dict(zip(edges.gkeys, sums, strict=True))) == \
            _reference_sums(subset, rec, by)


@given(st.lists(st.lists(st.one_of(st.floats(0, 100), st.just(math.nan)), min_size=3,
                         max_size=3), min_size=2, max_size=8),
       st.lists(st.booleans(), min_size=8, max_size=8),
       st.sampled_from([(), ("dst",)]))
def test_a_window_is_a_difference_of_sums_only_when_every_counter_grew(rows, lacks, by):
    """``_Edges.chain`` lets a window from record i to j be the difference of two sums
    when ``bad[i] == bad[j]``: then every series has a value (not NaN) at both ends,
    none went down, and the sums' difference is the sum of the series' increases."""
    ss = [SeriesInfo(i, 1, "response_total", {"dst": f"d{i % 2}"}, True, False)
          for i in range(3)]
    recs = {}
    for n, vals in enumerate(rows):
        pos = {0: 0, 1: 1} if lacks[n] else {0: 0, 1: 1, 2: 2}  # series 2 absent
        recs[(0, 10.0 * n)] = Record(10.0 * n, pos, 3, array("d", vals), lambda ts: None)
    edges = _Edges(ss, recs, by)
    at, sums, bad = edges.chain()
    for a in recs:
        for b in recs:
            i, j = at[a], at[b]
            if i >= j or bad[i] != bad[j]:
                continue
            va, vb = edges.read(a), edges.read(b)
            assert all(x is not None and x == x for x in (*va, *vb))
            assert all(y >= x for x, y in zip(va, vb, strict=True))
            diff = {}
            for k, x, y in zip(edges.keys, va, vb, strict=True):
                diff[k] = diff.get(k, 0.0) + y - x
            assert dict(zip(edges.gkeys, [y - x for x, y in zip(sums[i], sums[j],
                                                               strict=True)],
                            strict=True)) == pytest.approx(diff)


@given(st.lists(st.lists(st.one_of(st.integers(-1, 5).map(float), st.just(math.nan)),
                         min_size=3, max_size=3), min_size=2, max_size=6),
       st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=6),
       st.booleans(), st.sampled_from([(), ("dst",)]))
def test_columns_give_each_window_the_per_series_increase(steps, pairs, rate, by):
    """``_Edges.columns``, the all-windows-at-once path of range queries, gives what
    summing each series' increase window by window gives, and declines (None) when a
    series went down or is NaN between two records."""
    ss = [SeriesInfo(i, 1, "response_total", {"dst": f"d{i % 2}"}, True, False)
          for i in range(3)]
    pos = {0: 0, 1: 1, 2: 2}
    vals = [[0.0, 0.0, 0.0]]
    for step in steps:  # running totals of the steps (-1 is a counter going down)
        vals.append([v + x if x == x else math.nan for v, x in zip(vals[-1], step,
                                                                       strict=True)])
    recs = {(0, 10.0 * n): Record(10.0 * n, pos, 3, array("d", v), lambda ts: None)
            for n, v in enumerate(vals)}
    plan = [((0, 10.0 * min(a, b)), (0, 10.0 * max(a, b))) for a, b in pairs
            if min(a, b) != max(a, b) and max(a, b) < len(vals)]
    got = _Edges(ss, recs, by).columns([*plan, (None, None)], rate)  # + a window without data
    grew = all(y >= x for a, b in pairwise(vals) for x, y in zip(a, b, strict=True))
    if not plan or not grew:
        assert got is None
        return
    assert got is not None
    counted, cols = got
    assert counted == list(range(len(plan)))
    for w, (begin, end) in enumerate(plan):
        want: dict = {}
        for s, x, y in zip(ss, vals[int(begin[1] / 10)], vals[int(end[1] / 10)], strict=True):
            k = group_key(s.labels, by)
            want[k] = want.get(k, 0.0) + (y - x) / ((end[1] - begin[1]) if rate else 1.0)
        assert {k: col[w] for k, col in cols.items()} == pytest.approx(want)
