"""Pure parts of the proxy: detection, config, classification, sketch, metrics, tap."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from shoal.proxy import classify as classify_mod
from shoal.proxy.config import ConfigError, ProxyConfig, parse_addr, parse_authority
from shoal.proxy.detect import H2_PREFACE, Kind, detect
from shoal.proxy.latency import ALPHA, LatencySketch
from shoal.proxy.metrics import ProxyMetrics
from shoal.proxy.tap import REDACTED, TapFilter, TapFilterError, TapHub
from tests.support import tap_request


@pytest.mark.parametrize("module", ["shoal.proxy.detect", "shoal.proxy.config",
                                    "shoal.proxy.classify", "shoal.proxy.latency",
                                    "shoal.proxy.identity"])
def test_doctests(module):
    mod = importlib.import_module(module)
    if not mod.__file__.endswith(".py"):  # compiled (shoal.proxy.native): no docstrings to run
        source = Path(mod.__file__).with_name(module.rsplit(".", 1)[1] + ".py")
        spec = importlib.util.spec_from_file_location(f"{module}_source", source)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    result = doctest.testmod(mod)
    assert result.failed == 0 and result.attempted > 0


# -- detection ----------------------------------------------------------------

@pytest.mark.parametrize("data,kind", [
    (b"GET / HTTP/1.1\r\n", Kind.HTTP1),
    (b"CONNECT emoji.ns:8080 HTTP/1.1\r\n", Kind.HTTP1),
    (b"POST /x HTTP/1.0\n", Kind.HTTP1),
    (H2_PREFACE + b"\x00\x00", Kind.HTTP2),
    (b"\x16\x03\x01\x02\x00", Kind.OPAQUE),
    (b"SET key value\r\n", Kind.OPAQUE),
    (b" GET / HTTP/1.1\r\n", Kind.OPAQUE),
    (b"PING\r\n", Kind.OPAQUE),
])
def test_detect_decides(data, kind):
    assert detect(data) is kind


@pytest.mark.parametrize("partial", [b"G", b"GET", b"GET /long/path", b"PRI * HTTP/2.0\r\n"])
def test_detect_waits_for_more(partial):
    assert detect(partial) is None


@given(st.binary(max_size=200))
def test_detect_never_crashes_and_is_prefix_stable(data):
    kind = detect(data)
    if kind is not None:
        assert detect(data + b"more bytes") is kind


# -- config -------------------------------------------------------------------

def test_config_parses_flags():
    cfg = ProxyConfig.parse({"inbound": "127.0.0.1:4143", "app": "127.0.0.1:8080",
                             "destination": "emoji.emojivoto:8080=127.0.0.1:9000,"
                                            "web.emojivoto=[::1]:81",
                             "upstream": "emoji.emojivoto:8080=18080",
                             "header_timeout": "2.5", "tap_redact": "X-Api-Key"})
    assert cfg.inbound == ("127.0.0.1", 4143)
    assert dict(cfg.destinations) == {"emoji.emojivoto:8080": ("127.0.0.1", 9000),
                                      "web.emojivoto:80": ("::1", 81)}
    assert cfg.upstreams == (("emoji.emojivoto:8080", ("127.0.0.1", 18080)),)
    assert cfg.header_timeout == 2.5
    assert cfg.tap_redact == ("x-api-key",)


@pytest.mark.parametrize("env,message", [
    ({"inbound": "127.0.0.1:1"}, "needs --app"),
    ({"admin": "localhost"}, "HOST:PORT"),
    ({"admin": "h:99999"}, "out of range"),
    ({"destination": "a.b:80"}, "NAME:PORT=VALUE"),
    ({"header_timeout": "soon"}, "seconds"),
    ({"log_level": "loud"}, "log-level"),
])
def test_config_rejects_with_reason(env, message):
    with pytest.raises(ConfigError, match=message):
        ProxyConfig.parse(env)


def test_authority_normalisation():
    assert parse_authority("Emoji.EmojiVoto.svc.cluster.local:8080") == "emoji.emojivoto:8080"
    assert parse_authority("web.ns") == "web.ns:80"
    assert parse_authority("[::1]:80") == "[::1]:80"
    assert parse_addr("[::1]:80") == ("::1", 80)


# -- classification -----------------------------------------------------------

@pytest.mark.parametrize("status,grpc,error,expected", [
    (200, None, "", "success"), (404, None, "", "success"), (500, None, "", "failure"),
    (200, 0, "", "success"), (200, 5, "", "success"), (200, 2, "", "failure"),
    (200, 4, "", "failure"), (200, 7, "", "failure"), (200, 13, "", "failure"),
    (200, 14, "", "failure"), (200, 15, "", "failure"), (200, 16, "", "success"),
    (200, None, "stream_reset", "failure"),
])
def test_classification_matches_linkerd(status, grpc, error, expected):
    assert classify_mod.classify(status, grpc, error) == expected


# -- latency sketch -----------------------------------------------------------

@settings(max_examples=60)
@given(st.lists(st.floats(min_value=0.01, max_value=60_000), min_size=1, max_size=400),
       st.sampled_from([0.5, 0.9, 0.95, 0.99]))
def test_sketch_quantiles_within_relative_error(values, q):
    s = LatencySketch.of(values)
    exact = sorted(values)[int(q * (len(values) - 1))]
    got = s.quantile(q)
    assert got is not None
    assert abs(got - exact) <= ALPHA * exact * 1.0001


def test_sketch_merges_and_round_trips():
    a, b = LatencySketch.of([1, 2, 3]), LatencySketch.of([100, 200])
    a.merge(b)
    doc = a.to_json()
    c = LatencySketch.from_json(doc)
    assert c.count == 5 and c.bins == a.bins
    assert len(doc["hex64"]) == 16 * (max(a.bins) - min(a.bins) + 1)
    assert doc["lo"] == min(a.bins)
    sparse = {"zero": 0, "bins": {str(i): n for i, n in a.bins.items()}}  # older proxies
    assert LatencySketch.from_json(sparse).bins == a.bins
    listed = {"zero": 0, "lo": min(a.bins),
              "counts": [a.bins.get(i, 0) for i in range(min(a.bins), max(a.bins) + 1)]}
    assert LatencySketch.from_json(listed).bins == a.bins
    assert LatencySketch().to_json() == {"zero": 0, "lo": 0, "hex64": ""}
    for bad in ({"zero": "x", "bins": {}}, {"zero": 0, "lo": "1", "counts": [1]},
                {"zero": 0, "lo": 1, "counts": ["1"]}, {"zero": 0, "bins": []},
                {"zero": 0, "lo": 1, "hex64": "zz"}, {"zero": 0, "lo": 1, "hex64": "0100"},
                {"zero": 0, "lo": 1, "hex64": 5}):
        with pytest.raises(ValueError):
            LatencySketch.from_json(bad)


def test_sketch_beats_buckets_on_a_5001ms_p99():
    s = LatencySketch.of([5001.0] * 100)
    assert abs(s.quantile(0.99) - 5001) / 5001 < 0.01  # buckets would say 9750


# -- metrics exposition --------------------------------------------------------

def test_exposition_uses_linkerd_names_labels_and_buckets():
    m = ProxyMetrics()
    t = m.traffic_stats({"direction": "inbound", "target_addr": "127.0.0.1:8080",
                         "tls": "no_identity", "no_tls_reason": "no_tls_from_remote"})
    t.requests += 2
    t.observe_latency(200, 4.5)
    t.observe_latency(503, 1200)
    t.response_ended(200, "success")
    t.response_ended(503, "failure")
    g = m.traffic_stats({"direction": "outbound", "authority": "a.ns:80",
                         "target_addr": "1.2.3.4:80", "tls": "true", "server_id": "x"})
    g.response_ended(200, "failure", 14)
    c = m.tcp_stats({"direction": "inbound", "peer": "src", "target_addr": "t"})
    c.connection_opened()
    c.read_bytes += 10
    c.connection_closed("ECONNRESET")
    text = m.exposition().decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["response_latency_ms"].type == "histogram"
    buckets = [s.labels["le"] for s in fams["response_latency_ms"].samples
               if s.name.endswith("_bucket") and s.labels["status_code"] == "200"]
    assert buckets == ["1", "2", "3", "4", "5", "10", "20", "30", "40", "50", "100", "200",
                       "300", "400", "500", "1000", "2000", "3000", "4000", "5000", "10000",
                       "20000", "30000", "40000", "50000", "+Inf"]
    assert ('response_latency_ms_bucket{direction="inbound",le="5",no_tls_reason='
            '"no_tls_from_remote",status_code="200",target_addr="127.0.0.1:8080",'
            'tls="no_identity"} 1.0') in text
    assert ('response_total{authority="a.ns:80",classification="failure",direction='
            '"outbound",grpc_status="14",server_id="x",status_code="200",target_addr='
            '"1.2.3.4:80",tls="true"} 1.0') in text
    assert 'tcp_close_total{direction="inbound",errno="ECONNRESET",peer="src",target_addr="t"} 1.0' in text
    assert 'tcp_open_connections{direction="inbound",peer="src",target_addr="t"} 0.0' in text
    assert "request_total" in fams["request"].samples[0].name
    lat = m.latency_json()
    assert {s["labels"]["status_code"] for s in lat["series"]} == {"200", "503"}


def test_label_values_with_quotes_and_newlines_survive():
    m = ProxyMetrics()
    t = m.traffic_stats({"direction": "outbound", "authority": 'we"ird\nname\\x'})
    t.requests += 1
    fams = text_string_to_metric_families(m.exposition().decode())
    labels = [s.labels for f in fams for s in f.samples if s.name == "request_total"]
    assert labels[0]["authority"] == 'we"ird\nname\\x'


# -- tap --------------------------------------------------------------------

def test_tap_filters_and_rate_limit_and_redaction():
    hub = TapHub(["x-token"])
    assert hub.active is False
    sub = hub.subscribe(TapFilter(path_prefix="/api", method="get"), max_rps=2)
    assert hub.active is True
    args = dict(conn_id=1, direction="inbound", src="a", dst="b", tls="true",
                scheme="http", authority="web", headers=[("Authorization", "x"),
                                                         ("X-Token", "t"), ("Accept", "*")])
    assert tap_request(hub, stream=0, method="GET", path="/other", **args) is None
    ex = tap_request(hub, stream=1, method="GET", path="/api/x", **args)
    assert ex is not None
    ex.response(200, [("set-cookie", "s")], 10)
    ex.end(duration_us=5, response_bytes=3)
    events = sub.drain()
    assert [e["type"] for e in events] == ["req", "rsp", "end"]
    assert dict(events[0]["headers"]) == {"Authorization": REDACTED, "X-Token": REDACTED,
                                          "Accept": "*"}
    assert dict(events[1]["headers"]) == {"set-cookie": REDACTED}
    for i in range(10):  # the bucket holds 2 tokens: a burst of 10 drops most
        tap_request(hub, stream=2 + i, method="GET", path="/api", **args)
    assert sub.dropped >= 7
    hub.unsubscribe(sub)
    assert hub.active is False


def test_tap_reveal_and_bounded_queue():
    hub = TapHub()
    sub = hub.subscribe(TapFilter(), max_rps=0, reveal=True, queue_max=5)
    for i in range(10):
        tap_request(hub, conn_id=1, stream=i, direction="outbound", src="a", dst="b", tls="",
                    method="GET", scheme="http", authority="x", path="/",
                    headers=[("cookie", "c")])
    assert len(sub.events) == 5 and sub.dropped == 5
    assert sub.events[0]["headers"] == [["cookie", "c"]]


@pytest.mark.parametrize("spec,message", [
    ({"path_regex": "(["}, "regex"), ({"direction": "sideways"}, "direction"),
    ({"nope": "x"}, "unknown"), ({"method": 3}, "string"),
])
def test_tap_filter_errors(spec, message):
    with pytest.raises(TapFilterError, match=message):
        TapFilter.parse(spec)
