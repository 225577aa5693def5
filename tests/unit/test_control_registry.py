"""Registry, names and destination snapshots: pure, no sockets."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.control.destination import Destination
from shoal.control.errors import Conflict, InvalidRequest, NotFound
from shoal.control.names import SAFE_ALPHABET, check_name, parse_authority, pod_name, template_hash
from shoal.control.registry import DeploymentSpec, Registry


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def spec(**kw):
    base = {"namespace": "emojivoto", "name": "emoji", "command": ("python", "emoji.py"),
            "port": 8080, "replicas": 2}
    return DeploymentSpec(**{**base, **kw})


def report(reg, rs, suffix="abcde", **fields):
    base = {"status": "Running", "ready": True, "containers_ready": 2,
            "inbound": f"127.0.0.1:{4000 + len(reg.pods)}", "app_port": 5000}
    return reg.report_pod("emojivoto", f"{rs}-{suffix}", rs, {**base, **fields})


def test_template_hash_is_stable_and_changes_with_the_spec():
    h = template_hash(["python", "a.py"], {"A": "1"}, 8080)
    assert h == template_hash(["python", "a.py"], {"A": "1"}, 8080)
    assert re.fullmatch(f"[{SAFE_ALPHABET}]{{9}}", h)
    assert h != template_hash(["python", "b.py"], {"A": "1"}, 8080)
    assert h != template_hash(["python", "a.py"], {"A": "2"}, 8080)
    assert h != template_hash(["python", "a.py"], {"A": "1"}, 8081)
    # replicas are not part of the template
    assert spec(replicas=1).hash == spec(replicas=3).hash


def test_pod_names_are_kubernetes_shaped():
    name = pod_name("emoji-5f7c8d9b4")
    assert re.fullmatch(r"emoji-5f7c8d9b4-[a-z0-9]{5}", name)
    assert len({pod_name("x") for _ in range(50)}) > 45


@pytest.mark.parametrize("bad", ["", "Emoji", "-emoji", "emoji-", "emo_ji", "a" * 64, "é"])
def test_bad_names_are_refused_with_a_reason(bad):
    with pytest.raises(InvalidRequest, match="namespace"):
        check_name(bad, "namespace")


@given(st.text(max_size=80))
def test_check_name_accepts_exactly_dns_labels(text):
    ok = bool(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", text)) and len(text) <= 63
    try:
        check_name(text, "name")
    except InvalidRequest:
        assert not ok
    else:
        assert ok


def test_parse_authority():
    assert parse_authority("emoji.emojivoto:8080") == ("emoji", "emojivoto", 8080)
    assert parse_authority("EMOJI.emojivoto.svc.cluster.local:8080") == ("emoji", "emojivoto", 8080)
    assert parse_authority("emoji.emojivoto") == ("emoji", "emojivoto", 80)
    for bad in ("emoji:8080", "127.0.0.1:80", "a.b.c:1", "emoji.emojivoto:x", "e.n:0"):
        assert parse_authority(bad) is None


def test_apply_creates_every_resource():
    reg = Registry(clock=Clock())
    dep, rs, drain = reg.apply(spec())
    assert drain == []
    assert rs["name"] == f"emoji-{spec().hash}" and rs["replicas"] == 2
    assert dep["replicaset"] == rs["name"]
    assert [n["name"] for n in reg.listing("namespaces")] == ["emojivoto"]
    assert [s["name"] for s in reg.listing("serviceaccounts", "emojivoto")] == ["default"]
    svc = reg.service("emojivoto", "emoji")
    assert svc["port"] == 8080 and svc["deployment"] == "emoji"
    _, _, _ = reg.apply(spec(service_port=80))
    assert reg.service("emojivoto", "emoji")["port"] == 80


def test_rolling_update_keeps_both_replica_sets():
    reg = Registry(clock=Clock())
    _, old, _ = reg.apply(spec())
    report(reg, old["name"])
    _, new, drain = reg.apply(spec(env=(("COLOR", "blue"),)))
    assert new["name"] != old["name"] and drain == [old["name"]]
    sets = {r["name"]: r["replicas"] for r in reg.listing("replicasets", "emojivoto")}
    assert sets == {old["name"]: 0, new["name"]: 2}
    reg.delete_pod("emojivoto", f"{old['name']}-abcde")
    _, again, drain = reg.apply(spec(env=(("COLOR", "blue"),)))
    assert again["name"] == new["name"] and drain == []
    assert len(reg.listing("replicasets")) == 2  # the old one stays listed with 0 pods


def test_pods_must_belong_to_their_replica_set():
    reg = Registry(clock=Clock())
    _, rs, _ = reg.apply(spec())
    with pytest.raises(NotFound):
        reg.report_pod("emojivoto", "emoji-zzz-abcde", "emoji-zzz", {"status": "Running"})
    with pytest.raises(InvalidRequest):
        reg.report_pod("emojivoto", "other-abcde", rs["name"], {"status": "Running"})
    with pytest.raises(InvalidRequest):
        reg.report_pod("emojivoto", f"{rs['name']}-abcde", rs["name"], {"status": "Sleeping"})
    assert reg.pods == {}


def test_a_service_name_cannot_be_taken_twice():
    reg = Registry(clock=Clock())
    reg.apply(spec())
    reg.data["services"][("emojivoto", "emoji")]["deployment"] = "someone-else"
    with pytest.raises(Conflict):
        reg.apply(spec())


def test_silent_pods_become_unknown_and_leave_endpoints():
    clock = Clock()
    reg = Registry(clock=clock, stale_after=20)
    dest = Destination(reg)
    _, rs, _ = reg.apply(spec())
    report(reg, rs["name"], "aaaaa")
    clock.now += 15
    report(reg, rs["name"], "bbbbb")
    clock.now += 10
    assert reg.mark_stale() == [f"{rs['name']}-aaaaa"]
    snap = dest.snapshot("emoji.emojivoto:8080")
    assert [e["labels"]["pod"] for e in snap["endpoints"]] == [f"{rs['name']}-bbbbb"]


def test_destination_snapshot_shape():
    reg = Registry(clock=Clock())
    dest = Destination(reg)
    _, rs, _ = reg.apply(spec())
    report(reg, rs["name"], "aaaaa", inbound="127.0.0.1:4001")
    report(reg, rs["name"], "bbbbb", ready=False)
    snap = dest.snapshot("emoji.emojivoto:8080")
    assert snap == {"authority": "emoji.emojivoto:8080", "exists": True, "profile": None,
                    "endpoints": [{
                        "addr": "127.0.0.1:4001",
                        "identity": "default.emojivoto.serviceaccount.identity.shoal.local",
                        "labels": {"namespace": "emojivoto", "deployment": "emoji",
                                   "pod": f"{rs['name']}-aaaaa",
                                   "pod_template_hash": rs["pod_template_hash"],
                                   "serviceaccount": "default"},
                        "meshed": True}]}
    for unknown in ("emoji.emojivoto:9999", "web.emojivoto:8080", "nonsense"):
        snap = dest.snapshot(unknown)
        assert snap["exists"] is False and snap["endpoints"] == []


def test_registry_survives_a_restart(tmp_path):
    path = tmp_path / "registry.json"
    reg = Registry(path, clock=Clock())
    _, rs, _ = reg.apply(spec())
    report(reg, rs["name"])
    again = Registry(path, clock=Clock())
    assert again.listing("pods") == reg.listing("pods")
    assert again.listing("deployments") == reg.listing("deployments")
    assert again.snapshot() == reg.snapshot()
