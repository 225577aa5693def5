"""A real Prometheus server (Debian's package) scrapes the proxy; PromQL agrees."""

from __future__ import annotations

import shutil
import socket
import subprocess

import httpx
import pytest

from tests.support import metric, wait_for

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="prometheus is installed by `make test`")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(base: str, promql: str) -> list[dict]:
    r = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5)
    r.raise_for_status()
    return r.json()["data"]["result"]


def scalar(base: str, promql: str) -> float | None:
    res = query(base, promql)
    return float(res[0]["value"][1]) if res else None


def test_prometheus_scrapes_proxy_and_promql_counts_failures(app, start_proxy, tmp_path):
    _, addr = app
    p = start_proxy("--app", addr)
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: shoal-proxy
    static_configs:
      - targets: ["{p.addr['admin']}"]
        labels: {{namespace: test, deployment: app, pod: app-0}}
""")
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=p.url("inbound")) as c:
            c.get("/status/503")  # creates the failure series
            wait_for(lambda: _up(base) and scalar(
                base, 'sum(response_total{direction="inbound",classification="failure"})') == 1,
                timeout=30, what="first scrape of the failure series")
            for _ in range(9):
                assert c.get("/status/503").status_code == 503
            for _ in range(20):
                assert c.get("/").status_code == 200
        m = p.metrics()
        assert metric(m, "response_total", direction="inbound", classification="failure") == 10
        wait_for(lambda: scalar(base, 'sum(response_total{direction="inbound",'
                                      'classification="failure"})') == 10,
                 timeout=30, what="prometheus sees all failures")
        # Enough samples after the burst that increase()'s edge extrapolation is small.
        wait_for(lambda: (scalar(base, 'sum(count_over_time(response_total{direction='
                                       '"inbound",classification="failure"}[1m]))') or 0) >= 8,
                 timeout=30, what="eight samples of the failure series")
        # Linkerd's query shape. increase() cannot see the sample that created a
        # series, and it extrapolates to the window's edges: 9 seen, some slack above.
        inc = scalar(base, 'sum(increase(response_total{direction="inbound",'
                           'classification="failure"}[1m]))')
        assert inc is not None and 9 <= inc <= 12, inc
        # Workload labels attached at scrape time, buckets usable by histogram_quantile.
        res = query(base, 'sum(response_total{namespace="test",deployment="app"}) by (pod)')
        assert res and res[0]["metric"]["pod"] == "app-0"
        p99 = scalar(base, 'histogram_quantile(0.99, sum(rate(response_latency_ms_bucket'
                           '{direction="inbound"}[1m])) by (le))')
        assert p99 is not None and 0 < p99 <= 1000
    finally:
        prom.terminate()
        prom.wait(10)


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
