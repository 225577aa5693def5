"""Per-route golden metrics from the proxies' ``route_*`` series, on any ``Backend``.

A row per route of the service profile, in the profile's order, then ``[DEFAULT]``
(requests that matched no route: the series without ``rt_route``), then any other
route seen in the window (a profile changed since). Without ``to`` the rows are the
resource's inbound view of its own profile; with ``to`` they are the resource's
outbound view of the callee's profile, with both the effective numbers (what the
app saw) and the actual ones (every attempt on the wire, retries included).

>>> import tempfile
>>> from shoal.viz.store import Store
>>> from shoal.viz.embedded import EmbeddedBackend
>>> b = EmbeddedBackend(Store(tempfile.mkdtemp()), clock=lambda: 1000.0)
>>> [r.route for r in routes(b, [Matcher("namespace", "ns")], "inbound",
...                          {("web", "ns"): ["GET /"]}, "1m", services=[("web", "ns")])]
['GET /', '[DEFAULT]']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from shoal.profiles import DEFAULT_ROUTE

from .queries import QUANTILES, Backend, Key
from .series import Matcher

#: (service, namespace) -> route names in profile order
ProfileRoutes = Mapping[tuple[str, str], Sequence[str]]


@dataclass
class RouteRow:
    route: str
    service: str
    namespace: str
    #: the profile's name as the proxies label it (``dst``)
    dst: str = ""
    success: float | None = None
    rps: float | None = None
    latency_ms_p50: float | None = None
    latency_ms_p95: float | None = None
    latency_ms_p99: float | None = None
    actual_success: float | None = None
    actual_rps: float | None = None
    requests: float = 0.0

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def service_of(dst: str) -> tuple[str, str]:
    """``todoui.web.svc.cluster.local`` -> ("todoui", "web"); ``a.b:80`` -> ("a", "b")."""
    host = dst.split(":")[0]
    for suffix in (".svc.cluster.local", ".cluster.local"):
        if host.endswith(suffix):
            host = host[: -len(suffix)]
    parts = host.split(".")
    return parts[0], parts[1] if len(parts) > 1 else ""


def routes(backend: Backend, match: Sequence[Matcher], direction: str,
           profiles: ProfileRoutes, window: str | float = "1m", at: float | None = None,
           services: Sequence[tuple[str, str]] | None = None) -> list[RouteRow]:
    """Route rows for the series selected by ``match`` in ``direction``.

    ``services`` restricts the rows to those profiles (service, namespace); None
    keeps every profile the selected proxies reported, plus those in ``profiles``
    that ``services`` names.
    """
    w = backend.window(window, at)
    span, at = w.seconds, w.end
    m = [*match, Matcher("direction", direction)]
    by = ("dst", "rt_route")
    rows: dict[Key, RouteRow] = {}
    wanted = None if services is None else set(services)

    def row(k: Key) -> RouteRow | None:
        svc, ns = service_of(k[0])
        if wanted is not None and (svc, ns) not in wanted:
            return None
        r = rows.get((svc, ns, k[1] or DEFAULT_ROUTE))
        if r is None:
            r = rows[(svc, ns, k[1] or DEFAULT_ROUTE)] = RouteRow(k[1] or DEFAULT_ROUTE, svc,
                                                                    ns, k[0])
        return r

    ok: dict[Key, float] = {}
    for k, v in backend.increase("route_response_total", m, span, (*by, "classification"),
                                 at).items():
        r = row(k[:2])
        if r is None:
            continue
        r.requests += v
        if k[2] != "failure":
            ok[(r.service, r.namespace, r.route)] = ok.get((r.service, r.namespace, r.route),
                                                           0.0) + v
    for k, v in backend.rate("route_response_total", m, span, by, at).items():
        r = row(k)
        if r is not None:
            r.rps = (r.rps or 0.0) + v
    actual_total: dict[Key, float] = {}
    actual_ok: dict[Key, float] = {}
    for k, v in backend.increase("route_actual_response_total", m, span,
                                 (*by, "classification"), at).items():
        r = row(k[:2])
        if r is None:
            continue
        rk = (r.service, r.namespace, r.route)
        actual_total[rk] = actual_total.get(rk, 0.0) + v
        if k[2] != "failure":
            actual_ok[rk] = actual_ok.get(rk, 0.0) + v
    for k, v in backend.rate("route_actual_response_total", m, span, by, at).items():
        r = row(k)
        if r is not None:
            r.actual_rps = (r.actual_rps or 0.0) + v
    for rk, r in rows.items():
        if r.requests > 0:
            r.success = ok.get(rk, 0.0) / r.requests
        else:
            r.rps = None
        if actual_total.get(rk, 0.0) > 0:
            r.actual_success = actual_ok.get(rk, 0.0) / actual_total[rk]
        else:
            r.actual_rps = None
    for k, qs in _quantiles(backend, m, span, by, at).items():
        r = row(k)
        if r is not None and r.requests > 0:
            r.latency_ms_p50, r.latency_ms_p95, r.latency_ms_p99 = qs
    # every route of the profiles in scope, with or without traffic, in profile order
    scope = set(wanted) if wanted is not None else {(r.service, r.namespace)
                                                     for r in rows.values()}
    out: list[RouteRow] = []
    for svc, ns in sorted(scope):
        names = list(profiles.get((svc, ns), ()))
        if not names and not any((s, n) == (svc, ns) for s, n, _ in rows):
            continue
        dst = next((r.dst for (s, n, _), r in rows.items() if (s, n) == (svc, ns)), "")
        for name in [*names, DEFAULT_ROUTE]:
            out.append(rows.pop((svc, ns, name), None) or RouteRow(name, svc, ns, dst))
        out += sorted((r for (s, n, _), r in list(rows.items()) if (s, n) == (svc, ns)),
                      key=lambda r: r.route)
    return out


def _quantiles(backend: Backend, m: list[Matcher], span: float, by: Sequence[str],
               at: float) -> dict[Key, list[float | None]]:
    """Route latency: the sketches when the backend keeps them, else the buckets."""
    if getattr(backend, "has_sketches", False):
        return backend.latency_quantiles(QUANTILES, [*m, Matcher("dst", "", "!=")], span, by,
                                         at)
    per_q = [backend.histogram_quantile(q, "route_response_latency_ms_bucket", m, span, by, at)
             for q in QUANTILES]
    keys: set[Key] = set().union(*per_q)
    return {k: [p.get(k) for p in per_q] for k in keys}
