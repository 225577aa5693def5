"""The health checks of a running mesh, shared by `shoal check` and the dashboard's
Run check button (``GET /api/v1/check``).

``run_checks(get)`` asks the API through ``get(path)`` (the CLI's HTTP client, or the
control plane answering itself) and returns Linkerd-style categories:
``[{"categoryName", "checks": [{"description", "result", "error"}]}]`` with result
``success``, ``warning`` or ``error``. A category stops at its first error, as later
checks depend on earlier ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

WARN_BEFORE = 60 * 86400  # warn this long before a certificate expires
Outcome = tuple[str, str] | None  # (result, message), None when the check passed
Check = tuple[str, Callable[[], Outcome]]


def run_category(name: str, checks: Sequence[Check]) -> dict[str, Any]:
    results = []
    for description, fn in checks:
        try:
            outcome = fn()
        except Exception as e:  # a check that breaks is a failed check, with its reason
            outcome = ("error", str(getattr(e, "message", e)))
        result, error = outcome or ("success", "")
        results.append({"description": description, "result": result, "error": error})
        if result == "error":
            break
    return {"categoryName": name, "checks": results}


def expiry(what: str, not_after: float, now: float) -> Outcome:
    left = not_after - now
    if left <= 0:
        return "error", f"{what} expired {time.strftime('%Y-%m-%d', time.gmtime(not_after))}"
    if left < WARN_BEFORE:
        return "warning", f"{what} expires in {left / 86400:.0f} days"
    return None


def run_checks(get: Callable[[str], Any], client_version: str | None = None,
               first: Sequence[Check] = (), proxy: bool = False,
               namespace: str | None = None) -> list[dict[str, Any]]:
    """Every category; ``first`` runs before the API is asked (the CLI's "is it
    running"), ``client_version`` adds the version-match check, ``proxy`` the
    data plane's own checks (`shoal check --proxy`, for ``namespace`` or all)."""
    now = time.time()
    box: dict[str, Any] = {}

    def reachable() -> Outcome:
        box["health"] = get("/api/v1/health")
        return None

    def healthy() -> Outcome:
        bad = [c for c in box["health"]["components"] if c["enabled"] and not c["healthy"]]
        if bad:
            return "error", "; ".join(f"{c['name']}: {c['message']}" for c in bad)
        return None

    def versions() -> Outcome:
        if box["health"]["version"] != client_version:
            return "warning", (f"control plane is {box['health']['version']}, "
                               f"cli is {client_version}")
        return None

    plane: list[Check] = [*first, ("can query the control plane API", reachable),
                          ("control plane components are healthy", healthy)]
    if client_version is not None:
        plane.append(("control plane and cli versions match", versions))
    categories = [run_category("shoal-control-plane", plane)]
    if "health" not in box:
        return categories

    ident = get("/api/v1/identity")

    def anchors_valid() -> Outcome:
        expired = [a for a in ident["trust_anchors"] if a["not_after"] < now]
        if len(expired) == len(ident["trust_anchors"]):
            return "error", "every trust anchor expired; run `shoal identity rotate`"
        return None

    def anchors_lasting() -> Outcome:
        for a in ident["trust_anchors"]:
            if (r := expiry(f"trust anchor {a['subject']}", a["not_after"], now)) is not None:
                return "warning", r[1]
        return None

    def issuer_valid() -> Outcome:
        return expiry("issuer certificate", ident["issuer"]["not_after"], now)

    def proxy_certs() -> Outcome:
        expired = [c["pod"] for c in ident["certificates"] if c["expiry"] < now]
        if expired:
            return "error", "expired proxy certificates: " + ", ".join(expired)
        return None

    categories.append(run_category("shoal-identity", [
        ("trust anchors are within their validity period", anchors_valid),
        ("trust anchors are valid for at least 60 days", anchors_lasting),
        ("issuer certificate is valid for at least 60 days", issuer_valid),
        ("proxy certificates are not expired", proxy_certs),
    ]))

    pods = [p for p in get("/api/v1/pods") if namespace in (None, p["namespace"])]
    names = [f"{p['namespace']}/{p['name']}" for p in pods]  # as certificates and scrapes

    def namespace_exists() -> Outcome:
        if not any(n["name"] == namespace for n in get("/api/v1/namespaces")):
            return "error", f"the namespace {namespace} does not exist"
        return None

    def proxies_ready() -> Outcome:
        waiting = [f"{p['namespace']}/{p['name']} ({p['status']})" for p in pods
                   if not p["ready"]]
        if waiting:
            return "error", "not ready: " + ", ".join(waiting)
        return None

    def proxies_certified() -> Outcome:
        issued = {c["pod"] for c in ident["certificates"]}
        missing = [name for name in names if name not in issued]
        if missing:  # started while the control plane was away: plaintext until restarted
            return "warning", ("no certificate, so no mTLS (restart the pod to get one): "
                               + ", ".join(missing))
        return None

    def proxies_scraped() -> Outcome:
        answer = get("/api/v1/metrics/targets")
        if answer["backend"] != "embedded":
            return None  # Prometheus scrapes them; its own targets page tells
        health = {t["target"]: t for t in answer["targets"]}
        failing, pending = [], []
        for name in names:
            h = health.get(name)
            if h is None or h["last_ok"] is None and h["last_error"] is None:
                pending.append(name)
            elif not h["healthy"]:
                failing.append(f"{name}: {h['last_error']}")
        if failing:
            return "error", "scrapes failing: " + "; ".join(failing)
        if pending:  # the first scrape comes within one scrape interval
            every = answer["scrape_interval"]
            return "error", (f"not scraped yet (every {every:g}s; --wait waits for it): "
                             + ", ".join(pending))
        return None

    data_plane: list[Check] = [
        (f"data plane proxies are ready ({len(pods)} registered)", proxies_ready)]
    if proxy:
        if namespace is not None:
            data_plane.insert(0, ("data plane namespace exists", namespace_exists))
        data_plane += [("data plane proxies hold certificates", proxies_certified),
                       ("data plane proxy metrics are scraped", proxies_scraped)]
    categories.append(run_category("shoal-data-plane", data_plane))
    return categories
