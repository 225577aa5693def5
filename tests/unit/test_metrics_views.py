"""Argument shapes of stat/routes: resource words, selectors, the registry's rows."""

from __future__ import annotations

import pytest

from shoal.control.metrics_views import meshed, selector, split_resources, stat
from shoal.control.registry import DeploymentSpec, Registry
from shoal.viz.embedded import EmbeddedBackend
from shoal.viz.errors import BadSelector, QueryError
from shoal.viz.queries import Queries
from shoal.viz.store import Store


def test_resource_words_as_linkerd():
    assert split_resources(["deploy"]) == [("deploy", None)]
    assert split_resources(["deploy", "web", "emoji"]) == [("deploy", "web"), ("deploy", "emoji")]
    assert split_resources(["deploy/web", "po/x"]) == [("deploy", "web"), ("po", "x")]
    with pytest.raises(QueryError):
        split_resources(["deploy", "po/x"])
    with pytest.raises(QueryError):
        split_resources(["deploy/"])


def test_selectors_are_workload_label_matchers():
    ms = selector("deployment=web, pod!=web-1,pod-template-hash==abc")
    assert [str(m) for m in ms] == ['deployment="web"', 'pod!="web-1"',
                                    'pod_template_hash="abc"']
    assert selector(None) == [] and selector("") == []
    for bad in ("deployment", "a b=c", "=x"):
        with pytest.raises(BadSelector):
            selector(bad)


def test_idle_resources_are_listed_with_meshed_counts(tmp_path):
    reg = Registry()
    _, rs, _ = reg.apply(DeploymentSpec("shop", "cart", ("app",), 8080, replicas=2))
    reg.apply(DeploymentSpec("shop", "idle", ("app",), 8081, replicas=0))
    for i, admin in enumerate(("127.0.0.1:1", None)):
        reg.report_pod("shop", f"{rs['name']}-p{i}", rs["name"],
                       {"status": "Running", "ready": True, "admin": admin})
    assert meshed(reg, "deployment", "shop", "cart") == (1, 2)
    assert meshed(reg, "namespace", "shop", "shop") == (1, 2)
    q = Queries(EmbeddedBackend(Store(tmp_path), clock=lambda: 1000.0))
    rows = stat(q, reg, "deploy", namespace="shop")
    assert [(r["name"], r["meshed"], r["rps"]) for r in rows] == [("cart", "1/2", None)]
    rows = stat(q, reg, "deploy", namespace="shop", unmeshed=True)
    assert [r["name"] for r in rows] == ["cart", "idle"]
    pods = stat(q, reg, "po/" + rs["name"] + "-p0", namespace="shop")
    assert [(p["status"], p["meshed"]) for p in pods] == [("Running", "1/1")]
    assert [r["name"] for r in stat(q, reg, "ns", namespace="default")] == ["shop"]
    assert {r["kind"] for r in stat(q, reg, "all", namespace="shop")} == {
        "deployment", "replicaset", "pod", "service"}
