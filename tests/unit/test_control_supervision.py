"""Supervision pieces without processes: back-off, $(VAR) expansion, pod status."""

from __future__ import annotations

from types import SimpleNamespace

from shoal.control.process import Backoff
from shoal.control.replica import Replica, expand


def test_backoff_doubles_to_a_cap_and_resets_after_a_good_run():
    b = Backoff(first=0.5, cap=4, reset_after=30)
    assert [b.next(uptime=1) for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    assert b.next(uptime=31) == 0.5
    assert b.next(uptime=1) == 1


def test_expand_like_kubernetes():
    env = {"PORT": "8080", "NAME": "web"}
    assert expand("--port=$(PORT)", env) == "--port=8080"
    assert expand("$(NAME)-$(PORT)", env) == "web-8080"
    assert expand("$(MISSING)", env) == "$(MISSING)"
    assert expand("$$(PORT)", env) == "$(PORT)"
    assert expand("$PORT", env) == "$PORT"


def replica(**spec):
    base = {"replicaset": "web-abc", "host": "127.0.0.1", "advertise": None}
    sup = SimpleNamespace(spec=SimpleNamespace(**{**base, **spec}), changed=None)
    return Replica(sup, "web-abc-xxxxx", 5000)  # type: ignore[arg-type]


def test_pod_status_follows_the_containers():
    r = replica()
    assert r.report()["status"] == "Pending" and r.report()["ready"] is False
    r.started, r.proxy_ready, r.app_ready = True, True, False
    assert r.report()["status"] == "Running" and r.report()["containers_ready"] == 1
    r.app_ready = True
    assert r.report()["ready"] is True
    r.waiting = 4.0
    assert r.report()["status"] == "CrashLoopBackOff"
    r.terminating = True
    assert r.report()["status"] == "Terminating" and r.report()["ready"] is False


def test_advertised_inbound_address():
    bound = {"inbound": "0.0.0.0:4143", "admin": "0.0.0.0:4191", "outbound": "127.0.0.1:4140"}
    assert replica(host="0.0.0.0", advertise="10.0.0.5")._advertised(bound) == {
        "inbound": "10.0.0.5:4143", "admin": "10.0.0.5:4191", "outbound": "127.0.0.1:4140"}
    assert replica(host="10.0.0.7")._advertised(bound)["inbound"] == "10.0.0.7:4143"
    assert replica()._advertised(bound)["inbound"] == "0.0.0.0:4143"
