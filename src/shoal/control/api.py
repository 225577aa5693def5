"""The control plane's HTTP API (FastAPI): resources, supervisor reports, identity,
destination watches and health. Every route needs a Bearer token: the operator token
from $SHOAL_HOME (or the dashboard's session cookie), or for the proxy routes a token
issued to a pod.

``create_app(ControlPlane.open(config))`` -> an ASGI app; ``/openapi.json`` describes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from shoal import __version__
from shoal.web.server import session_ok

from .errors import ControlError, Forbidden, NotFound, Unauthorized
from .guard import BodyLimit
from .models import CertifyIn, DeploymentIn, Kind, PodReport, RotateIn, ScaleIn, TokenIn
from .plane import ControlPlane
from .registry import DeploymentSpec
from .tap_api import create_router as tap_router

_bearer = HTTPBearer(auto_error=False, description="the operator token, or a proxy's token")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
Authority = Annotated[str, Query(min_length=1, max_length=253)]


def create_app(plane: ControlPlane) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_mark_stale(plane), name="mark-stale-pods")
        try:
            yield
        finally:
            task.cancel()

    app = FastAPI(title="shoal control plane", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.plane = plane
    app.add_middleware(BodyLimit, limit=plane.config.max_body)
    _errors(app)

    Operator = Depends(operator)
    app.include_router(tap_router(plane, operator))

    @app.get("/api/v1/health", dependencies=[Operator])
    async def health() -> dict[str, Any]:
        """Components (destination, identity, metrics, tap, web), version, pod counts."""
        return plane.health()

    @app.get("/api/v1/check", dependencies=[Operator])
    def check() -> list[dict[str, Any]]:
        """The categories of `shoal check --proxy -o json`, run by the control plane
        itself."""
        from .checks import run_checks
        from .metrics import Metrics
        from .metrics_api import scrape_targets

        answers = {"/api/v1/health": plane.health, "/api/v1/identity": plane.identity.status,
                   "/api/v1/pods": lambda: plane.registry.listing("pods"),
                   "/api/v1/metrics/targets": lambda: scrape_targets(Metrics.attach(plane))}
        return run_checks(lambda path: answers[path](), proxy=True)

    @app.post("/api/v1/deployments", dependencies=[Operator])
    async def apply_deployment(body: DeploymentIn) -> dict[str, Any]:
        """Create or update a deployment; ``drain`` lists the older replica sets with pods."""
        spec = DeploymentSpec(namespace=body.namespace, name=body.name,
                              command=tuple(body.command), port=body.port,
                              env=tuple(sorted(body.env.items())), replicas=body.replicas,
                              service_port=body.service_port,
                              service_account=body.service_account,
                              mtls=body.mtls or plane.config.mtls)
        dep, rs, old = plane.registry.apply(spec)
        return {"deployment": dep, "replicaset": rs, "drain": old}

    @app.post("/api/v1/namespaces/{namespace}/replicasets/{name}/scale",
              dependencies=[Operator])
    async def scale(namespace: str, name: str, body: ScaleIn) -> dict[str, Any]:
        return plane.registry.scale(namespace, name, body.replicas)

    @app.put("/api/v1/namespaces/{namespace}/pods/{name}", dependencies=[Operator])
    async def report_pod(namespace: str, name: str, body: PodReport) -> dict[str, Any]:
        """A supervisor's report on one of its pods (creates the pod the first time)."""
        fields = body.model_dump(exclude={"replicaset"})
        return plane.registry.report_pod(namespace, name, body.replicaset, fields).to_dict()

    @app.delete("/api/v1/namespaces/{namespace}/pods/{name}", dependencies=[Operator])
    async def delete_pod(namespace: str, name: str) -> dict[str, Any]:
        plane.registry.delete_pod(namespace, name)
        plane.identity.revoke_pod(namespace, name)
        return {"deleted": name}

    @app.post("/api/v1/identity/tokens", dependencies=[Operator])
    async def bootstrap_token(body: TokenIn) -> dict[str, Any]:
        """A one-time token for the proxy of a registered pod."""
        pod = plane.registry.pods.get((body.namespace, body.pod))
        if pod is None:
            raise NotFound(f"pod {body.pod} not found in namespace {body.namespace}")
        token = plane.identity.issue_token(body.namespace, pod.serviceaccount, pod.name)
        return {"token": token, "identity": pod.to_dict()["identity"]}

    @app.post("/api/v1/identity/certify")
    async def certify(body: CertifyIn, request: Request, creds: Credentials) -> dict[str, Any]:
        """CSR + one-time token -> certificate, chain, trust anchors, expiry, renew token."""
        caller = proxy(request, creds)
        record = plane.identity.proxy_of(body.token)
        if caller is not None and record is not None and (
                caller["namespace"], caller["pod"]) != (record["namespace"], record["pod"]):
            raise Forbidden("this token belongs to another pod")
        return plane.identity.certify(body.csr, body.token)

    @app.get("/api/v1/identity/trust-anchors", dependencies=[Depends(proxy)])
    async def trust_anchors() -> dict[str, Any]:
        """The anchors a proxy should trust now; after a rotation there are several."""
        return {"trust_anchors": plane.identity.authority.bundle()}

    @app.get("/api/v1/identity", dependencies=[Operator])
    async def identity_status() -> dict[str, Any]:
        return plane.identity.status()

    @app.post("/api/v1/identity/rotate", dependencies=[Operator])
    async def rotate(body: RotateIn) -> dict[str, Any]:
        """Add a trust anchor (both served during the overlap), or ``finish`` the rotation."""
        return plane.identity.finish_rotation() if body.finish else plane.identity.rotate()

    @app.get("/api/v1/destination", dependencies=[Depends(proxy)])
    async def destination(authority: Authority) -> dict[str, Any]:
        """One snapshot of an authority's endpoints and profile."""
        return plane.destination.snapshot(authority)

    @app.get("/api/v1/destination/watch", dependencies=[Depends(proxy)],
             response_class=StreamingResponse,
             responses={200: {"content": {"application/x-ndjson": {}}}})
    async def watch(authority: Authority) -> StreamingResponse:
        """NDJSON: a full snapshot now and on every change; ``{}`` as heartbeat."""
        return StreamingResponse(plane.destination.watch(authority),
                                 media_type="application/x-ndjson",
                                 headers={"cache-control": "no-store"})

    from .metrics_api import router as metrics_router  # stat, edges, routes, profiles
    app.include_router(metrics_router)

    # last: the generic listing must not shadow the routes above
    @app.get("/api/v1/{kind}", dependencies=[Operator])
    async def list_resources(kind: Kind, namespace: Annotated[
            str | None, Query(max_length=63)] = None) -> list[dict[str, Any]]:
        """Resources of one kind, in one namespace or (no ``namespace``) all of them."""
        return plane.registry.listing(kind.value, namespace)

    from shoal.web.server import install as install_dashboard  # last: its pages catch all
    install_dashboard(app, plane, operator, plane.config.dashboard_hosts)
    return app


def operator(request: Request, creds: Credentials) -> None:
    """Dependency: the operator token, or a dashboard session cookie. Other parts'
    routers use it as ``APIRouter(dependencies=[Depends(operator)])`` and read
    ``request.app.state.plane``."""
    plane: ControlPlane = request.app.state.plane
    if creds is None and session_ok(request):
        # SameSite=Strict keeps other sites' forms out; a script's write must say
        # where it comes from (the guard has checked that Origin is this host)
        if request.method not in ("GET", "HEAD") and "origin" not in request.headers:
            raise Forbidden("a dashboard session's writes need an Origin header")
        return
    if not secrets.compare_digest(_token(creds), plane.token):
        raise Unauthorized("wrong token")


def proxy(request: Request, creds: Credentials) -> dict[str, Any] | None:
    """Dependency: the operator token or a token issued to a pod (its record, or None)."""
    plane: ControlPlane = request.app.state.plane
    token = _token(creds)
    if secrets.compare_digest(token, plane.token):
        return None
    record = plane.identity.proxy_of(token)
    if record is None:
        raise Unauthorized("wrong token")
    return record


def _token(creds: HTTPAuthorizationCredentials | None) -> str:
    if creds is None or not creds.credentials:
        raise Unauthorized("missing token; send Authorization: Bearer <token>")
    return creds.credentials


async def _mark_stale(plane: ControlPlane) -> None:
    while True:
        await asyncio.sleep(min(2.0, plane.config.pod_stale_after / 4))
        plane.registry.mark_stale()


def _errors(app: FastAPI) -> None:
    @app.exception_handler(ControlError)
    async def control_error(request: Request, exc: ControlError) -> JSONResponse:
        headers = {"www-authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": exc.message}, exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        message = f"invalid request: {where}: {first.get('msg', 'invalid')}".lower()
        detail = json.loads(json.dumps(errors, default=str))
        return JSONResponse({"error": message, "detail": detail}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail).lower()}, exc.status_code,
                            headers=getattr(exc, "headers", None))
