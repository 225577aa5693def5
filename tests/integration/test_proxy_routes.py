"""Service profiles on the client proxy: route metrics, timeouts, retries with a
budget, response classes — with real clients against uvicorn."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support import metric

PROFILE = """
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  name: todo.web.svc.cluster.local
  namespace: web
spec:
  routes:
  - name: GET /sleep
    condition: {method: GET, pathRegex: /sleep}
    timeout: 100ms
  - name: GET /status/5xx
    condition: {method: GET, pathRegex: "/status/50[0-9]"}
    isRetryable: true
  - name: teapot
    condition: {pathRegex: /status/418}
    responseClasses:
    - condition: {status: {min: 418, max: 418}}
      isFailure: true
  retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 0, ttl: 10s}
"""


@pytest.fixture
def routed(app, start_proxy, tmp_path):
    test_app, addr = app
    (tmp_path / "profile.yaml").write_text(PROFILE)
    p = start_proxy("--destination", f"todo.web:8080={addr}",
                    "--profile", str(tmp_path / "profile.yaml"))
    client = httpx.Client(proxy=p.url("outbound"), timeout=10)
    yield test_app, p, client
    client.close()


def test_route_timeout_answers_504_quickly(routed):
    test_app, p, c = routed
    t0 = time.monotonic()
    r = c.get("http://todo.web:8080/sleep?ms=3000")
    elapsed = time.monotonic() - t0
    assert r.status_code == 504
    assert "timed out" in r.text
    assert elapsed < 2.5  # not the app's 3 s (a bound, not a benchmark)
    m = p.metrics()
    assert metric(m, "route_response_total", rt_route="GET /sleep", status_code="504",
                  classification="failure", dst="todo.web.svc.cluster.local") == 1
    assert metric(m, "response_total", direction="outbound", error="timeout") == 1


def test_unmatched_requests_are_the_default_route(routed):
    _, p, c = routed
    assert c.get("http://todo.web:8080/").status_code == 200
    m = p.metrics()
    default = [lbl for (name, lbl), v in m.items()
               if name == "route_request_total" and "rt_route" not in dict(lbl)]
    assert default and m[("route_request_total", default[0])] == 1


def test_retryable_route_retries_within_budget(routed):
    test_app, p, c = routed
    for _ in range(10):
        assert c.get("http://todo.web:8080/status/503").status_code == 503
    m = p.metrics()
    route = {"rt_route": "GET /status/5xx"}
    effective = metric(m, "route_request_total", **route)
    actual = metric(m, "route_actual_request_total", **route)
    assert effective == 10
    # the budget allows retries of 20 % of the requests: 2 of 10, the rest are skipped
    assert actual == 12
    assert metric(m, "route_retryable_total", skipped="no_budget", **route) > 0
    assert len([r for r in test_app.requests if r["path"] == "/status/503"]) == actual


def test_response_class_makes_418_a_failure(routed):
    _, p, c = routed
    assert c.get("http://todo.web:8080/status/418").status_code == 418
    m = p.metrics()
    assert metric(m, "route_response_total", rt_route="teapot", classification="failure") == 1
    assert metric(m, "response_total", direction="outbound", status_code="418",
                  classification="failure") == 1


def test_invalid_profile_is_refused_with_the_field(start_proxy, tmp_path):
    import subprocess

    from tests.support import SHOAL

    bad = tmp_path / "bad.yaml"
    bad.write_text(PROFILE.replace("/sleep}", "/sle(ep}"))
    r = subprocess.run([SHOAL, "proxy", "--profile", str(bad)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0
    assert "spec.routes[0].condition.pathRegex" in r.stderr and "bad regex" in r.stderr


def test_inbound_route_metrics_from_own_service_profile(app, start_proxy, tmp_path):
    _, addr = app
    (tmp_path / "profile.yaml").write_text(PROFILE)
    p = start_proxy("--app", addr, "--service", "todo.web:8080",
                    "--profile", str(tmp_path / "profile.yaml"))
    with httpx.Client(base_url=p.url("inbound"), timeout=10) as c:
        assert c.get("/sleep?ms=300").status_code == 200  # no timeout on the server side
        assert c.get("/status/418").status_code == 418
    m = p.metrics()
    assert metric(m, "route_request_total", direction="inbound", rt_route="GET /sleep") == 1
    assert metric(m, "route_response_total", direction="inbound", rt_route="teapot",
                  classification="failure") == 1
