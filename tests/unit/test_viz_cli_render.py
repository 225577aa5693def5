"""`stat`, `edges` and `routes` rendering against golden files
(regenerate with SHOAL_UPDATE_GOLDEN=1)."""

from __future__ import annotations

import json

from shoal.cli._viztables import (
    EdgesOptions,
    RoutesOptions,
    StatOptions,
    aligned,
    byte_rate,
    edges,
    ms,
    percent,
    reason,
    routes,
    rps,
    stat,
)
from tests.unit.test_control_render import golden


def row(name, kind="deployment", ns="emojivoto", success=1.0, rate=5.8, p=(1, 9.4, 10.2),
        tcp=12, read=2.0, write=1234.56, meshed="1/1", **extra):
    r = {"namespace": ns, "kind": kind, "name": name, "meshed": meshed, "success": success,
         "rps": rate, "latency_ms_p50": p[0], "latency_ms_p95": p[1], "latency_ms_p99": p[2],
         "tcp_open_connections": tcp, "tcp_read_bytes_rate": read,
         "tcp_write_bytes_rate": write}
    r.update(extra)
    return r


def idle(name, kind="deployment", ns="emojivoto", **extra):
    return row(name, kind, ns, None, None, (None, None, None), None, None, None, **extra)


DEPLOYS = [row("emoji", success=0.912345, rate=12.04, tcp=3),
           row("postgresdb", rate=0.3, p=(1, 1, 1), tcp=61),
           idle("vote-bot", meshed="0/1")]
PODS = [row("web-5f7c8d9b4-x2k9q", kind="pod", status="Running", success=1.0, rate=1.9,
            p=(2, 4, 5), tcp=0),
        idle("web-5f7c8d9b4-b7c4z", kind="pod", status="CrashLoopBackOff", meshed="0/1")]
EDGES = [{"src": "web", "dst": "emoji", "src_namespace": "emojivoto",
          "dst_namespace": "emojivoto", "secured": True, "no_tls_reason": "",
          "client_id": "web.emojivoto.serviceaccount.identity.shoal.local",
          "server_id": "emoji.emojivoto.serviceaccount.identity.shoal.local"},
         {"src": "vote-bot", "dst": "web", "src_namespace": "vote",
          "dst_namespace": "emojivoto", "secured": False,
          "no_tls_reason": "not_provided_by_service_discovery", "client_id": "",
          "server_id": ""}]


def route(name, success=1.0, rate=0.8, p=(7, 37, 40), actual=None, actual_rps=None):
    return {"route": name, "service": "todoui", "namespace": "todo",
            "dst": "todoui.todo.svc.cluster.local", "success": success, "rps": rate,
            "latency_ms_p50": p[0], "latency_ms_p95": p[1], "latency_ms_p99": p[2],
            "actual_success": actual, "actual_rps": actual_rps, "requests": 48.0}


ROUTES = [route("GET /", actual=0.9, actual_rps=0.9),
          route("GET /stress", None, None, (None, None, None)),
          route("POST /{id}", 0.5, 0.4, (9, 87, 98), 0.25, 0.8),
          route("[DEFAULT]", None, None, (None, None, None))]


def test_units_as_linkerd():
    assert [percent(1.0), percent(0.912345), percent(None)] == ["100.00%", "91.23%", "-"]
    assert [rps(5.84), rps(0.04), rps(None)] == ["5.8rps", "0.0rps", "-"]
    assert [ms(9.4), ms(0.5015), ms(None)] == ["9ms", "1ms", "-"]
    assert [byte_rate(2.0), byte_rate(None)] == ["2.0B/s", "-"]
    assert reason("not_provided_by_service_discovery") == "Not Provided By Service Discovery"


def test_alignment_names_left_numbers_right():
    assert aligned(["NAME", "RPS"], [["a", "10.0rps"], ["longer", "1.0rps"]]).splitlines() == [
        "NAME         RPS", "a        10.0rps", "longer    1.0rps"]


def test_stat_golden():
    golden("stat_deploy.golden", stat(DEPLOYS, StatOptions()))
    golden("stat_wide.golden", stat(DEPLOYS, StatOptions("wide")))
    golden("stat_all_namespaces.golden", stat(DEPLOYS, StatOptions(all_namespaces=True)))
    golden("stat_pods.golden", stat(PODS, StatOptions()))
    golden("stat_all.golden", stat(DEPLOYS + PODS, StatOptions()))
    golden("stat_json.golden", stat(DEPLOYS, StatOptions("json")))


def test_stat_json_has_the_design_fields():
    doc = json.loads(stat(PODS, StatOptions("json")))
    for key in ("namespace", "kind", "name", "success", "rps", "latency_ms_p50",
                "latency_ms_p95", "latency_ms_p99", "tcp_open_connections",
                "tcp_read_bytes_rate", "tcp_write_bytes_rate", "meshed", "status"):
        assert key in doc[0]
    assert doc[1]["success"] is None


def test_edges_golden():
    golden("edges_deploy.golden", edges(EDGES, EdgesOptions()))
    golden("edges_wide.golden", edges(EDGES, EdgesOptions("wide")))
    golden("edges_json.golden", edges(EDGES, EdgesOptions("json")))


def test_routes_golden():
    golden("routes_deploy.golden", routes(ROUTES, RoutesOptions()))
    golden("routes_to_wide.golden", routes(ROUTES, RoutesOptions("wide", to=True)))
    golden("routes_json.golden", routes(ROUTES, RoutesOptions("json")))
    text = routes(ROUTES, RoutesOptions())
    assert text.splitlines()[-1].split()[0] == "[DEFAULT]"
