"""`shoal check`'s categories over a fake API: what each data-plane check says about
pods that are ready or not, certified or not, scraped, failing or not scraped yet."""

from __future__ import annotations

import time
from typing import Any

import pytest

from shoal.control.checks import run_checks

YEAR = 365 * 86400.0


def pod(name: str, namespace: str = "shop", ready: bool = True) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "ready": ready,
            "status": "Running" if ready else "Pending"}


def target(key: str, ok: bool | None = True, error: str | None = None) -> dict[str, Any]:
    return {"target": key, "last_ok": time.time() if ok else None, "last_error": error,
            "healthy": bool(ok) and error is None}


class Api:
    """Answers run_checks' GETs like the control plane; fields are set per test."""

    def __init__(self) -> None:
        now = time.time()
        cert = {"subject": "CN=x", "not_after": now + 10 * YEAR, "not_before": now}
        self.pods = [pod("cart-1"), pod("cart-2"), pod("web-1", "front")]
        self.certified = ["shop/cart-1", "shop/cart-2", "front/web-1"]
        self.targets = [target("shop/cart-1"), target("shop/cart-2"), target("front/web-1")]
        self.backend = "embedded"
        self.answers = {
            "/api/v1/health": lambda: {"version": "1", "components": []},
            "/api/v1/identity": lambda: {
                "trust_anchors": [cert], "issuer": cert,
                "certificates": [{"pod": p, "expiry": now + 86400} for p in self.certified]},
            "/api/v1/pods": lambda: self.pods,
            "/api/v1/namespaces": lambda: [{"name": "shop"}, {"name": "front"}],
            "/api/v1/metrics/targets": lambda: {
                "backend": self.backend, "scrape_interval": 10.0, "targets": self.targets},
        }

    def get(self, path: str) -> Any:
        return self.answers[path]()

    def data_plane(self, **kw: Any) -> list[tuple[str, str, str]]:
        cats = {c["categoryName"]: c for c in run_checks(self.get, "1", **kw)}
        return [(c["description"], c["result"], c["error"])
                for c in cats["shoal-data-plane"]["checks"]]


def test_without_proxy_only_readiness_is_checked():
    api = Api()
    api.targets = []
    assert api.data_plane() == [("data plane proxies are ready (3 registered)", "success", "")]


def test_a_healthy_namespace_passes_every_check():
    assert [r for _, r, _ in Api().data_plane(proxy=True, namespace="shop")] == ["success"] * 4


@pytest.mark.parametrize("change, check, result, error", [
    (lambda api: setattr(api, "certified", ["shop/cart-1"]),
     "data plane proxies hold certificates", "warning", "shop/cart-2"),
    (lambda api: setattr(api, "targets", [target("shop/cart-1"),
                                          target("shop/cart-2", error="timed out")]),
     "data plane proxy metrics are scraped", "error", "shop/cart-2: timed out"),
    (lambda api: setattr(api, "targets", [target("shop/cart-1")]),
     "data plane proxy metrics are scraped", "error", "not scraped yet (every 10s"),
    (lambda api: setattr(api, "targets", [target("shop/cart-1"), target("shop/cart-2", None)]),
     "data plane proxy metrics are scraped", "error", "shop/cart-2"),
])
def test_each_check_names_the_pods_it_faults(change, check, result, error):
    api = Api()
    change(api)
    got = {d: (r, e) for d, r, e in api.data_plane(proxy=True, namespace="shop")}
    assert got[check][0] == result and error in got[check][1], got


def test_scope_prometheus_and_a_missing_namespace():
    api = Api()
    api.targets = [target("shop/cart-1"), target("shop/cart-2")]  # front/web-1 not yet
    assert all(r == "success" for _, r, _ in api.data_plane(proxy=True, namespace="shop"))
    assert ("data plane proxy metrics are scraped", "error") in [
        (d, r) for d, r, _ in api.data_plane(proxy=True)]
    api.backend = "prometheus"  # Prometheus scrapes them; its targets page tells
    assert all(r == "success" for _, r, _ in api.data_plane(proxy=True))
    assert api.data_plane(proxy=True, namespace="nope") == [
        ("data plane namespace exists", "error", "the namespace nope does not exist")]
    api.pods[0]["ready"] = False  # a category stops at its first error
    assert [r for _, r, _ in api.data_plane(proxy=True, namespace="shop")] == [
        "success", "error"]
