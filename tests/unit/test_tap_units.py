"""Tap in the proxy (flight recorder, failures-only, --to labels) and the control
plane's tap API refusing bad requests, both without sockets."""

from __future__ import annotations

import time
import warnings

import pytest

from shoal.control.api import create_app
from shoal.control.config import ControlConfig
from shoal.control.plane import ControlPlane
from shoal.control.tap_api import dst_filter, parse_resource
from shoal.proxy.tap import REDACTED, FlightRecorder, TapFilter, TapFilterError, TapHub
from tests.support import tap_request

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ARGS = dict(conn_id=1, direction="outbound", src="a:1", dst="b:2", tls="true", method="GET",
            scheme="http", authority="voting.emojivoto:8080")


def exchange(hub, stream, path="/", status=200, cls="success", headers=(), dst_labels=None):
    ex = tap_request(hub, stream=stream, path=path, headers=list(headers), dst_labels=dst_labels,
                     **ARGS)
    if ex is not None:
        ex.response(status, [], 100)
        ex.end(duration_us=5, response_bytes=1, classification=cls)
    return ex


def test_recorder_off_keeps_the_data_path_idle():
    hub = TapHub()
    assert hub.active is False and hub.recorder is None
    assert exchange(hub, 0) is None


def test_recorder_replays_recent_events_redacted_and_filtered():
    hub = TapHub(record_bytes=100_000)
    assert hub.active is True  # the recorder listens even with no subscriber
    exchange(hub, 0, path="/a", headers=[("Authorization", "Bearer s3cret")])
    exchange(hub, 1, path="/b")
    assert hub.recorder is not None and len(hub.recorder.ring) == 6
    sub = hub.subscribe(TapFilter(path_prefix="/a"), since=30, reveal=True)
    events = sub.drain()
    assert [e["type"] for e in events] == ["req", "rsp", "end"]
    assert all(e["replayed"] for e in events)
    assert dict(events[0]["headers"]) == {"Authorization": REDACTED}  # reveal or not
    assert hub.subscribe(TapFilter(), since=0).drain() == []  # no since, no replay
    hub.unsubscribe(sub)
    assert hub.active is True


def test_recorder_is_capped_in_bytes_and_by_age():
    rec = FlightRecorder(4_000)
    for i in range(100):
        rec.add({"type": "req", "ts": time.time() - 100 + i, "path": "/x" * 10})
    assert rec.bytes <= 4_000 and 0 < len(rec.ring) < 100
    assert all(e["ts"] >= time.time() - 5.5 for e in rec.since(time.time() - 5.5))
    assert len(rec.since(time.time() - 5.5)) <= 6


def test_failures_only_holds_back_until_end():
    hub = TapHub()
    sub = hub.subscribe(TapFilter(), max_rps=0, failures=True)
    ex = tap_request(hub, stream=0, path="/bad", headers=[], **ARGS)
    assert ex is not None
    ex.response(503, [], 100)
    assert sub.drain() == []  # not decided yet
    ex.end(duration_us=5, response_bytes=1, classification="failure")
    assert [e["type"] for e in sub.drain()] == ["req", "rsp", "end"]
    exchange(hub, 1, cls="success")
    assert sub.drain() == [] and not sub.held


def test_failures_only_forgets_old_requests_without_end(monkeypatch):
    import shoal.proxy.tap as tapmod

    monkeypatch.setattr(tapmod, "MAX_HELD", 3)
    hub = TapHub()
    sub = hub.subscribe(TapFilter(), max_rps=0, failures=True)
    for i in range(5):
        tap_request(hub, stream=i, path="/", headers=[], **ARGS)
    assert len(sub.held) == 3 and sub.dropped == 2


def test_dst_labels_filter_before_the_rate_limit():
    hub = TapHub()
    sub = hub.subscribe(TapFilter.parse({"dst_labels": {"dst_deployment": "voting"}}),
                        max_rps=1)
    for i in range(5):
        exchange(hub, i, dst_labels={"dst_deployment": "emoji"})
    assert sub.dropped == 0 and sub.drain() == []
    exchange(hub, 9, dst_labels={"dst_deployment": "voting", "dst_namespace": "x"})
    assert len(sub.drain()) == 3
    with pytest.raises(TapFilterError, match="dst_labels"):
        TapFilter.parse({"dst_labels": {"a": 1}})


def test_resources_and_to_filters():
    assert parse_resource("deploy/web")[0].name == "deployment"
    assert parse_resource("po")[1] == ""
    assert dst_filter(parse_resource("deploy/voting")[0], "voting", "emojivoto") == {
        "dst_namespace": "emojivoto", "dst_deployment": "voting"}
    assert dst_filter(parse_resource("rs/x")[0], "voting-5f7c8d9b4", "e") == {
        "dst_namespace": "e", "dst_deployment": "voting", "dst_pod_template_hash": "5f7c8d9b4"}
    assert dst_filter(parse_resource("ns/prod")[0], "prod", "default") == {
        "dst_namespace": "prod"}


@pytest.fixture
def client(tmp_path):
    plane = ControlPlane.open(ControlConfig(home=tmp_path))
    with TestClient(create_app(plane), base_url="http://127.0.0.1") as c:
        c.headers["authorization"] = f"Bearer {plane.token}"
        c.plane = plane  # type: ignore[attr-defined]
        yield c


@pytest.mark.parametrize("body,status,message", [
    ({"resource": "deploy/x", "namespace": "emojivoto"}, 404,
     'no pods to tap for type="deployment" name="x"'),
    ({"resource": "bogus/x"}, 400, "unknown resource type 'bogus'"),
    ({"resource": "sa/default"}, 400, "cannot be tapped"),
    ({"resource": "deploy/x", "path_regex": "(["}, 400, "invalid path regex"),
    ({"resource": "deploy/x", "to_resource": "nope/y"}, 400, "unknown resource type"),
    ({"resource": "deploy/x", "max_rps": -1}, 400, "max_rps"),
    ({"resource": "deploy/x", "path": "api"}, 400, "path must start with /"),
    ({"resource": "deploy/x", "since": 1e9}, 400, "since"),
    ({"resource": "deploy/x", "reveal": True}, 403, "reveal token"),
])
def test_tap_api_refuses_bad_requests(client, body, status, message):
    r = client.post("/api/v1/tap", json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    r = client.get("/api/v1/tap/events", params=body)
    assert r.status_code == status and message in r.json()["error"]


def test_tap_api_needs_the_token_and_makes_a_reveal_token(client, tmp_path):
    r = client.post("/api/v1/tap", json={"resource": "deploy/x"},
                    headers={"authorization": "Bearer wrong"})
    assert r.status_code == 401
    path = tmp_path / "reveal-token"
    assert path.stat().st_mode & 0o777 == 0o600 and len(path.read_text().strip()) > 20
    health = client.get("/api/v1/health").json()
    assert {c["name"]: c["enabled"] for c in health["components"]}["tap"] is True


def test_events_get_workload_labels_routes_and_the_hop_tls(tmp_path):
    from shoal.control.registry import Pod
    from shoal.control.tap_api import Names, enrich

    plane = ControlPlane.open(ControlConfig(home=tmp_path))
    plane.destination.set_profile("emojivoto", "voting", {
        "apiVersion": "linkerd.io/v1alpha2", "kind": "ServiceProfile",
        "metadata": {"name": "voting.emojivoto.svc.cluster.local", "namespace": "emojivoto"},
        "spec": {"routes": [{"name": "POST /vote", "condition": {
            "method": "POST", "pathRegex": "/vote/.*"}}]}})
    web = Pod(namespace="emojivoto", name="web-abc-1", deployment="web", replicaset="web-abc",
              pod_template_hash="abc", serviceaccount="web", created=0.0)
    names = Names(plane)
    out = enrich({"type": "req", "direction": "outbound", "tls": "no_identity",
                  "authority": "voting.emojivoto:8080", "method": "POST", "path": "/vote/x",
                  "dst_labels": {"dst_deployment": "voting", "dst_pod": "voting-1",
                                 "dst_namespace": "emojivoto"}}, web, names)
    assert out["src_labels"]["pod"] == "web-abc-1" and out["src_labels"]["deployment"] == "web"
    assert out["dst_labels"] == {"deployment": "voting", "pod": "voting-1",
                                 "namespace": "emojivoto"}
    assert out["route_labels"] == {"route": "POST /vote"} and out["tls"] == "true"
    other = enrich({"type": "req", "direction": "outbound", "tls": "no_identity",
                    "authority": "voting.emojivoto:8080", "method": "GET", "path": "/",
                    "dst_labels": {}}, web, names)
    assert other["route_labels"] == {"route": "[DEFAULT]"} and other["tls"] == "no_identity"
    inbound = enrich({"type": "req", "direction": "inbound", "tls": "true",
                      "authority": "web.emojivoto:80", "method": "GET", "path": "/"},
                     web, names)
    assert inbound["dst_labels"]["pod"] == "web-abc-1" and inbound["src_labels"] == {}
    assert inbound["route_labels"] == {}
    # an mTLS caller, as its certificate names it: its whole workload when the pod is
    # registered under that identity, else only what the identity says
    plane.registry.pods[("emojivoto", "web-abc-1")] = web
    ident = {"namespace": "emojivoto", "serviceaccount": "web"}
    assert names.caller({**ident, "pod": "web-abc-1"}) == {
        "namespace": "emojivoto", "deployment": "web", "pod": "web-abc-1",
        "pod_template_hash": "abc", "serviceaccount": "web"}
    assert names.caller({**ident, "pod": "web-gone-1"}) == ident
    stranger = {"namespace": "emojivoto", "serviceaccount": "other"}
    assert names.caller({**stranger, "pod": "web-abc-1"}) == stranger
