"""CLI rendering against golden files (regenerate with SHOAL_UPDATE_GOLDEN=1)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shoal.cli import get, render

GOLDEN = Path(__file__).parent.parent / "golden"
NOW = 1_800_000_000.0


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("SHOAL_UPDATE_GOLDEN"):
        path.write_text(text + "\n")
    assert text + "\n" == path.read_text(), f"{name} differs; SHOAL_UPDATE_GOLDEN=1 to accept"


def pod(name, ns="emojivoto", rs="emoji-5f7c8d9b4", ready=2, status="Running", restarts=0,
        age=42.0, n=0):
    return {"name": name, "namespace": ns, "deployment": rs.rsplit("-", 1)[0], "replicaset": rs,
            "status": status, "ready": ready == 2, "containers_ready": ready, "containers": 2,
            "restarts": restarts, "created": NOW - age, "app_port": 40000 + n,
            "inbound": f"127.0.0.1:{41000 + n}", "outbound": f"127.0.0.1:{42000 + n}",
            "admin": f"127.0.0.1:{43000 + n}", "tap": f"127.0.0.1:{44000 + n}"}


PODS = [pod("emoji-5f7c8d9b4-x2k9q", n=1),
        pod("emoji-5f7c8d9b4-b7c4z", ready=1, restarts=3, status="CrashLoopBackOff", n=2,
            age=400),
        pod("web-7d9c6bfb8-q2w4z", rs="web-7d9c6bfb8", age=3 * 3600 + 65, n=3),
        pod("vote-bot-66c2j8f4c-kk2lm", ns="vote", rs="vote-bot-66c2j8f4c", ready=0,
            status="Pending", age=1, n=4)]
DEPLOYS = [{"namespace": "emojivoto", "name": "emoji", "replicas": 2,
            "replicaset": "emoji-5f7c8d9b4", "created": NOW - 500},
           {"namespace": "emojivoto", "name": "web", "replicas": 1,
            "replicaset": "web-7d9c6bfb8", "created": NOW - 3 * 86400}]
RSS = [{"namespace": "emojivoto", "name": "emoji-5f7c8d9b4", "replicas": 2, "created": NOW - 400},
       {"namespace": "emojivoto", "name": "emoji-9x8b7c6d5", "replicas": 0, "created": NOW - 900},
       {"namespace": "emojivoto", "name": "web-7d9c6bfb8", "replicas": 1, "created": NOW - 20000}]
SVCS = [{"namespace": "emojivoto", "name": "emoji", "port": 8080, "created": NOW - 500},
        {"namespace": "emojivoto", "name": "web", "port": 80, "created": NOW - 86400 * 40}]
NSS = [{"name": "emojivoto", "created": NOW - 500}, {"name": "vote", "created": NOW - 1}]


@pytest.mark.parametrize("seconds,text", [
    (0, "0s"), (119, "119s"), (120, "2m"), (125, "2m5s"), (600, "10m"), (3 * 3600 - 1, "179m"),
    (3 * 3600 + 60, "3h1m"), (8 * 3600, "8h"), (47 * 3600, "47h"), (2 * 86400 + 3600, "2d1h"),
    (10 * 86400, "10d"), (800 * 86400, "2y70d"), (-5, "0s")])
def test_age_like_kubectl(seconds, text):
    assert render.age(seconds) == text


def test_get_pods():
    ns = [p for p in PODS if p["namespace"] == "emojivoto"]
    golden("get_pods.golden", get.render("pods", ns, [], NOW, False, None))
    golden("get_pods_all.golden", get.render("pods", PODS, [], NOW, True, None))
    golden("get_pods_wide.golden", get.render("pods", ns, [], NOW, False, "wide"))
    golden("get_pods_json.golden", get.render("pods", PODS[:1], [], NOW, False, "json"))


def test_get_other_kinds():
    golden("get_deploy.golden", get.render("deployments", DEPLOYS, PODS, NOW, False, None))
    golden("get_rs.golden", get.render("replicasets", RSS, PODS, NOW, False, None))
    golden("get_svc.golden", get.render("services", SVCS, [], NOW, False, None))
    golden("get_ns.golden", get.render("namespaces", NSS, [], NOW, False, None))
    assert get.render("pods", [], [], NOW, False, None) == ""


CHECKS_OK = [
    {"categoryName": "shoal-control-plane", "checks": [
        {"description": "control plane is running", "result": "success", "error": ""},
        {"description": "can query the control plane API", "result": "success", "error": ""}]},
    {"categoryName": "shoal-identity", "checks": [
        {"description": "trust anchors are valid for at least 60 days", "result": "warning",
         "error": "trust anchor CN=root-1.identity.shoal.local expires in 12 days"}]}]
CHECKS_FAIL = CHECKS_OK + [
    {"categoryName": "shoal-data-plane", "checks": [
        {"description": "data plane proxies are ready (2 registered)", "result": "error",
         "error": "not ready: emojivoto/emoji-5f7c8d9b4-b7c4z (CrashLoopBackOff)"}]}]


def test_check_output():
    golden("check_ok.golden", render.checks(CHECKS_OK))
    golden("check_fail.golden", render.checks(CHECKS_FAIL))
    golden("check_fail_json.golden", render.checks_json(CHECKS_FAIL))
