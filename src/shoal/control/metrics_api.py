"""The metrics and service-profile routes of the control-plane API (operator token).

    GET    /api/v1/stat        rows of `shoal stat` (DESIGN.md's `-o json` objects)
    GET    /api/v1/edges       who talks to whom, with mTLS state and identities
    GET    /api/v1/routes      per-route rows of a resource's (or its callee's) profile
    GET    /api/v1/stat/series history of one resource's stat (dashboard charts)
    GET    /api/v1/series      one query primitive over a range (dashboard charts)
    GET    /api/v1/overview    namespaces with pods and meshed pods
    GET    /api/v1/metrics/targets            per-proxy scrape health
    GET    /api/v1/metrics/prometheus-config  a scrape config for a real Prometheus
    POST   /api/v1/profiles                   apply profiles (all or nothing)
    GET    /api/v1/profiles[/{ns}/{svc}]      list, or one document
    DELETE /api/v1/profiles/{ns}/{svc}

A malformed window, range, selector or resource type is a 400 with the reason.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from shoal.viz.errors import QueryError
from shoal.viz.series import matchers
from shoal.viz.window import parse_duration

from . import metrics_views as views
from .api import operator
from .errors import InvalidRequest
from .metrics import Metrics
from .plane import ControlPlane

router = APIRouter(dependencies=[Depends(operator)], tags=["metrics"])

Word = Annotated[str, Query(min_length=1, max_length=253)]
Opt = Annotated[str | None, Query(max_length=253)]
Window = Annotated[str, Query(max_length=32, description="10s, 1m, 10m, 1h...")]
Selector = Annotated[str | None, Query(max_length=1024)]


def _metrics(request: Request) -> Metrics:
    plane: ControlPlane = request.app.state.plane
    return Metrics.attach(plane)


def _run(fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except QueryError as e:
        raise InvalidRequest(str(e)) from None
    except Exception as e:
        from shoal.viz.prometheus import PrometheusUnavailable

        if isinstance(e, PrometheusUnavailable):
            return JSONResponse({"error": str(e)}, 503)
        raise


@router.get("/api/v1/stat")
def stat(request: Request, resource: Word, namespace: Opt = None, name: Opt = None,
         window: Window = "1m", to: Opt = None, from_: Annotated[
             str | None, Query(alias="from", max_length=253)] = None,
         to_namespace: Opt = None, from_namespace: Opt = None, selector: Selector = None,
         unmeshed: bool = False) -> Any:
    """Golden metrics per resource; no ``namespace`` is every namespace."""
    m = _metrics(request)
    return _run(views.stat, m.queries, m.plane.registry, resource, namespace=namespace,
                name=name, window=window, to=to, from_=from_, to_namespace=to_namespace,
                from_namespace=from_namespace, labels=selector, unmeshed=unmeshed)


@router.get("/api/v1/edges")
def edges(request: Request, resource: Word, namespace: Opt = None,
          window: Window = "1m") -> Any:
    """Edges between resources seen in the window; ``secured`` when mTLS."""
    m = _metrics(request)
    return _run(views.edges, m.queries, resource, namespace, window)


@router.get("/api/v1/routes")
def routes(request: Request, resource: Word, namespace: Annotated[
        str, Query(min_length=1, max_length=63)] = "default", window: Window = "1m",
           to: Opt = None, to_namespace: Opt = None) -> Any:
    """Rows per profile route plus ``[DEFAULT]``; with ``to`` the outbound view, with
    effective and actual (retries included) success and rates."""
    m = _metrics(request)
    return _run(views.routes, m.queries, m.plane.registry, m.profiles, resource,
                namespace=namespace, window=window, to=to, to_namespace=to_namespace)


def _range(start: float | None, end: float | None, step: str | None,
           window: str | None, interval: float) -> tuple[float, float, float]:
    try:
        end = time.time() if end is None else end
        if start is None:
            start = end - parse_duration(window or "10m")
        step_s = parse_duration(step) if step else max(interval, (end - start) / 60)
    except QueryError as e:
        raise InvalidRequest(str(e)) from None
    return start, end, step_s


@router.get("/api/v1/stat/series")
def stat_series(request: Request, resource: Word, namespace: Annotated[
        str, Query(min_length=1, max_length=63)] = "default", start: float | None = None,
        end: float | None = None, step: Opt = None, window: Opt = None, to: Opt = None,
        from_: Annotated[str | None, Query(alias="from", max_length=253)] = None) -> Any:
    """The history of one resource (``TYPE/NAME``, or ``mesh`` for all of it): a stat
    row per step."""
    m = _metrics(request)
    a, b, s = _range(start, end, step, window, m.backend.scrape_interval)

    def run() -> Any:
        from shoal.viz.queries import Ref
        if resource == "mesh":
            return m.queries.stat_series("namespace", None, None, start=a, end=b, step=s)
        ref = Ref.parse(resource, namespace)
        return m.queries.stat_series(ref.kind.name, namespace, ref.name, start=a, end=b,
                                     step=s, to=to, from_=from_)
    return _run(run)


@router.get("/api/v1/series")
def series(request: Request, metric: Annotated[str, Query(
        min_length=1, max_length=200, pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")],
        selector: Selector = None, fn: Annotated[str, Query(
            pattern="^(rate|increase|gauge|histogram_quantile|latency_quantile)$")] = "rate",
        by: Annotated[str | None, Query(max_length=500)] = None,
        q: Annotated[float | None, Query(ge=0, le=1)] = None, start: float | None = None,
        end: float | None = None, step: Opt = None, window: Opt = None) -> Any:
    """``fn(metric{selector}[step])`` at each step: ``{"series": [{"labels", "points"}]}``."""
    m = _metrics(request)
    a, b, s = _range(start, end, step, window, m.backend.scrape_interval)
    labels = [x.strip() for x in (by or "").split(",") if x.strip()]

    def run() -> Any:
        ms = matchers(selector) if selector else []
        data = m.queries.series(metric, ms, start=a, end=b, step=s, fn=fn, by=labels, q=q)
        return {"step": s, "series": [{"labels": dict(zip(labels, k, strict=True)),
                                       "points": pts} for k, pts in sorted(data.items())]}
    return _run(run)


@router.get("/api/v1/overview")
def overview(request: Request) -> list[dict[str, Any]]:
    """Namespaces with their pod, meshed pod, deployment and service counts."""
    return views.overview(_metrics(request).plane.registry)


def scrape_targets(m: Metrics) -> dict[str, Any]:
    """The scrape health of every proxy, and which backend answers queries."""
    healthy, message = m.health()
    return {"backend": m.backend.name, "scrape_interval": m.config.scrape_interval,
            "healthy": healthy, "message": message, "targets": m.target_health(),
            "prometheus_targets_file": str(m.targets_file)}


@router.get("/api/v1/metrics/targets")
def targets(request: Request) -> dict[str, Any]:
    """The scrape health of every proxy, and which backend answers queries."""
    return scrape_targets(_metrics(request))


@router.get("/api/v1/metrics/prometheus-config")
def prometheus_config(request: Request) -> dict[str, Any]:
    """A prometheus.yml scraping the mesh through the ``file_sd`` targets file."""
    from shoal.viz.prometheus import scrape_config

    m = _metrics(request)
    m.write_targets()
    return {"targets_file": str(m.targets_file),
            "config": scrape_config(m.targets_file, m.config.scrape_interval)}


# -- profiles --------------------------------------------------------------------------


@router.post("/api/v1/profiles")
def apply_profiles(request: Request, body: Annotated[Any, Body(
        description="a ServiceProfile document, or a list of them")]) -> list[dict[str, Any]]:
    """Validate every document, then store and push them all (or none: 400 with the field)."""
    docs = body if isinstance(body, list) else [body]
    return _metrics(request).profiles.apply(docs)


@router.get("/api/v1/profiles")
def list_profiles(request: Request, namespace: Annotated[
        str | None, Query(max_length=63)] = None) -> list[dict[str, Any]]:
    return _metrics(request).profiles.listing(namespace)


@router.get("/api/v1/profiles/template", response_class=PlainTextResponse,
            responses={200: {"content": {"application/yaml": {}}}})
def profile_template(namespace: Annotated[str, Query(min_length=1, max_length=63)],
                     service: Annotated[str, Query(min_length=1, max_length=63)]) -> Any:
    """A starting ServiceProfile (YAML, as ``shoal profile --template``) to download."""
    import yaml

    from shoal.control.names import check_name
    from shoal.profiles import template

    check_name(namespace, "namespace")
    check_name(service, "service")
    text = yaml.safe_dump(template(service, namespace), sort_keys=False)
    return PlainTextResponse(text, media_type="application/yaml", headers={
        "content-disposition": f'attachment; filename="{service}.{namespace}.profile.yaml"'})


@router.get("/api/v1/profiles/{namespace}/{service}")
def get_profile(request: Request, namespace: str, service: str) -> dict[str, Any]:
    return _metrics(request).profiles.get(namespace, service).to_json()


@router.delete("/api/v1/profiles/{namespace}/{service}")
def delete_profile(request: Request, namespace: str, service: str) -> dict[str, Any]:
    return _metrics(request).profiles.delete(namespace, service)
