"""The Prometheus backend sends Linkerd's PromQL shapes and reads the answers back."""

from __future__ import annotations

import json

import httpx
import pytest

from shoal.viz.errors import WindowTooShort
from shoal.viz.prometheus import PrometheusBackend, PrometheusUnavailable, file_sd, scrape_config
from shoal.viz.queries import Queries
from shoal.viz.scrape import Target


def backend(answer):
    sent: list[tuple[str, str]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        q = request.url.params["query"]
        sent.append((q, request.url.params["time"]))
        return httpx.Response(200, json={"status": "success", "data": {
            "resultType": "vector", "result": answer(q)}})
    b = PrometheusBackend("http://prom:9090", 10.0, clock=lambda: 1000.0,
                          transport=httpx.MockTransport(handle))
    return b, sent


def test_linkerd_query_shapes():
    b, sent = backend(lambda q: [{"metric": {"deployment": "web", "classification": "success"},
                                  "value": [1000, "12"]}])
    assert b.increase("response_total", {"direction": "inbound", "namespace": 'a"b'}, "1m",
                      ("deployment", "classification")) == {("web", "success"): 12.0}
    sel = 'response_total{direction="inbound",namespace="a\\"b"}'
    assert sent[-1] == (f'sum((({sel} - {sel} offset 60s) unless resets({sel}[60s]) > 0) or '
                        f'(increase({sel}[60s]) and resets({sel}[60s]) > 0) or '
                        f'(({sel} + 0) unless ({sel} offset 60s + 0))) '
                        'by (deployment, classification)', "1000.000")
    b.histogram_quantile(0.95, "response_latency_ms_bucket", {"direction": "inbound"}, "10m",
                         ("deployment",))
    assert sent[-1][0] == ('histogram_quantile(0.95, sum(increase(response_latency_ms_bucket'
                           '{direction="inbound"}[600s])) by (le, deployment))')
    b.gauge("tcp_open_connections", None, "1m", ())
    assert sent[-1][0] == "sum(last_over_time(tcp_open_connections[60s]))"
    with pytest.raises(WindowTooShort):
        b.rate("response_total", None, "5s")


def test_stat_from_prometheus_answers():
    def answer(q: str):
        if q.startswith("sum(((response_total"):
            return [{"metric": {"namespace": "ns", "deployment": "web",
                                "classification": c}, "value": [0, v]}
                    for c, v in (("success", "30"), ("failure", "10"))]
        if q.startswith("sum(rate(response_total"):
            return [{"metric": {"namespace": "ns", "deployment": "web"}, "value": [0, "0.5"]}]
        if q.startswith("histogram_quantile"):
            return [{"metric": {"namespace": "ns", "deployment": "web"}, "value": [0, "7.5"]}]
        return []
    b, _ = backend(answer)
    rows = Queries(b).stat("deploy", "ns")
    assert [(r.name, r.success, r.rps, r.latency_ms_p99) for r in rows] == [
        ("web", 0.75, 0.5, 7.5)]


def test_unreachable_prometheus_is_reported():
    def down(request):
        raise httpx.ConnectError("refused")
    b = PrometheusBackend("http://prom:9090", transport=httpx.MockTransport(down))
    with pytest.raises(PrometheusUnavailable):
        b.increase("response_total")
    assert "cannot reach prometheus" in b.last_error


def test_file_sd_and_scrape_config():
    groups = file_sd([Target("127.0.0.1:4191", {"namespace": "ns", "deployment": "web",
                                                "pod": "web-1", "pod_template_hash": "h",
                                                "serviceaccount": "default"})])
    assert groups == [{"targets": ["127.0.0.1:4191"], "labels": {
        "namespace": "ns", "deployment": "web", "pod": "web-1", "pod_template_hash": "h",
        "serviceaccount": "default"}}]
    text = scrape_config("/x/targets.json", 1.0)
    assert "scrape_interval: 1s" in text and json.dumps("/x/targets.json") in text
