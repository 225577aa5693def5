"""The tap API: find the pods of a resource, tap each pod's proxy, merge the events.

``POST /api/v1/tap`` with a ``TapIn`` body streams NDJSON; ``GET /api/v1/tap/events``
takes the same fields as query parameters and streams server-sent events (the
dashboard). Both need the operator token; ``reveal`` (secret headers shown) also
needs the reveal token, a second secret in ``$SHOAL_HOME/reveal-token`` sent as
``X-Shoal-Reveal``, so that the operator token can be shared without it.

Lines of a stream, in order:
  {"type": "started", "pods": [...], "recorder_bytes": {pod: N}}
  {"type": "req" | "rsp" | "end", ...}   the proxy's event plus ``namespace``, ``pod``
                                          (the tapped pod), ``src_labels``/``dst_labels``
                                          as workload labels and ``route_labels``
  {"type": "stats", "dropped": N}         every second: events dropped so far
  {"type": "error", "pod": ..., "error": ...}  a pod's tap could not start or ended

``--to`` is applied by each tapped proxy to its outbound requests, on the destination
labels discovery gave it: the requests a resource sends to another, seen from the
sender (as Linkerd does), with no need to tap the destination too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from shoal import profiles as profile_model
from shoal.viz.errors import UnknownResource
from shoal.viz.queries import Kind, resource_kind

from .config import identity_name
from .errors import ControlError, Forbidden, InvalidRequest, NotFound
from .plane import ControlPlane
from .registry import Pod
from .state import Home, atomic_write

log = logging.getLogger("shoal.tap")

QUEUE_MAX = 10_000        # merged events waiting for a slow caller; more are dropped
START_TIMEOUT = 5.0       # seconds for every pod's tap to start
FOLLOW_INTERVAL = 1.0     # seconds between looks for new pods of the tapped resource
TAPPABLE = ("namespace", "deployment", "replicaset", "pod", "service")
_DST = {"namespace": "dst_namespace", "deployment": "dst_deployment", "pod": "dst_pod",
        "service": "dst_service", "pod_template_hash": "dst_pod_template_hash",
        "serviceaccount": "dst_serviceaccount"}


#: the reveal token, when the caller asks for secret headers
Reveal = Annotated[str | None, Header(alias="x-shoal-reveal")]


class BadGateway(ControlError):
    status = 502


class TapIn(BaseModel):
    """A tap request, as ``shoal tap`` and the dashboard send it."""

    resource: str = Field(max_length=300, description="TYPE/NAME, or TYPE for all")
    namespace: str = Field("default", max_length=63)
    to_resource: str = Field("", max_length=300)
    to_namespace: str = Field("", max_length=63)
    method: str = Field("", max_length=32)
    path: str = Field("", max_length=2048, description="path prefix")
    path_regex: str = Field("", max_length=2048)
    authority: str = Field("", max_length=300)
    scheme: str = Field("", max_length=16)
    max_rps: float = 100.0
    headers: bool = True
    reveal: bool = False
    failures: bool = False
    since: float = 0.0


# -- the request: resources -> pods and a proxy filter --------------------------------

def parse_resource(text: str) -> tuple[Kind, str]:
    """``deploy/web`` -> (deployment, "web"); ``deploy`` -> (deployment, "")."""
    word, _, name = text.strip().partition("/")
    if not word and not name:
        raise InvalidRequest("resource is required, as TYPE/NAME")
    try:
        kind = resource_kind(word)
    except UnknownResource as e:
        raise InvalidRequest(str(e)) from None
    if kind.name not in TAPPABLE:
        raise InvalidRequest(f"resource type {kind.name} cannot be tapped; use one of "
                             + ", ".join(TAPPABLE))
    return kind, name


def pods_of(plane: ControlPlane, kind: Kind, name: str, namespace: str) -> list[Pod]:
    """The running pods of a resource that have a tap listener."""
    def wanted(p: Pod) -> bool:
        if kind.name == "namespace":
            return p.namespace == (name or namespace)
        if p.namespace != namespace:
            return False
        if not name:
            return True
        if kind.name == "deployment":
            return p.deployment == name
        if kind.name == "replicaset":
            return p.replicaset == name
        if kind.name == "pod":
            return p.name == name
        svc = plane.registry.service(namespace, name)
        return svc is not None and p.deployment == svc["deployment"]

    return sorted((p for p in plane.registry.pods.values()
                   if wanted(p) and p.tap and p.status == "Running"), key=lambda p: p.name)


def dst_filter(kind: Kind, name: str, namespace: str) -> dict[str, str]:
    """The destination labels an outbound request to ``--to`` carries."""
    if kind.name == "namespace":
        return {"dst_namespace": name or namespace}
    out = {"dst_namespace": namespace}
    if not name:
        return out
    if kind.name == "replicaset":
        deploy, _, h = name.rpartition("-")
        if not deploy:
            raise InvalidRequest(f"replica set name {name!r} is not DEPLOYMENT-HASH")
        return {**out, "dst_deployment": deploy, "dst_pod_template_hash": h}
    return {**out, _DST[kind.name]: name}


def proxy_filter(body: TapIn) -> dict[str, Any]:
    flt: dict[str, Any] = {k: v for k, v in (
        ("method", body.method.upper()), ("path_prefix", body.path),
        ("path_regex", body.path_regex), ("authority", body.authority),
        ("scheme", body.scheme.lower())) if v}
    if body.path_regex:
        import re
        try:
            re.compile(body.path_regex)
        except re.error as e:
            raise InvalidRequest(f"invalid path regex: {e}") from None
    if body.to_resource:
        kind, name = parse_resource(body.to_resource)
        flt["direction"] = "outbound"
        flt["dst_labels"] = dst_filter(kind, name, body.to_namespace or body.namespace)
    return flt


def check(body: TapIn) -> None:
    if not 0 <= body.max_rps <= 100_000:
        raise InvalidRequest("max_rps must be between 0 and 100000")
    if not 0 <= body.since <= 86_400:
        raise InvalidRequest("since must be between 0 and 86400 seconds")
    if body.path and not body.path.startswith("/"):
        raise InvalidRequest("path must start with /")


# -- events: the pod's view -> workload labels ----------------------------------------

def pod_labels(pod: Pod) -> dict[str, str]:
    return {"namespace": pod.namespace, "deployment": pod.deployment, "pod": pod.name,
            "pod_template_hash": pod.pod_template_hash, "serviceaccount": pod.serviceaccount}


def peer_labels(dst_labels: dict[str, Any]) -> dict[str, str]:
    """The proxy's ``dst_*`` metric labels as plain workload labels."""
    out = {}
    for k, v in dst_labels.items():
        if k.startswith("dst_") and isinstance(v, str):
            out[k[4:]] = v
    return out


class Names:
    """What the control plane adds to a proxy's event: the service-profile route of a
    request, as the proxies match them, and the workload of an inbound caller."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.parsed: dict[tuple[str, str], tuple[object, profile_model.Profile | None]] = {}

    def route(self, ev: dict[str, Any]) -> dict[str, str]:
        host = str(ev.get("authority", "")).rpartition(":")[0] or str(ev.get("authority"))
        parts = host.split(".")
        if len(parts) < 2:
            return {}
        key = (parts[1], parts[0])
        doc = self.plane.destination.profiles.get(key)
        if doc is None:
            return {}
        cached = self.parsed.get(key)
        if cached is None or cached[0] is not doc:  # parsed once per profile version
            try:
                cached = (doc, profile_model.parse(doc))
            except (profile_model.ProfileError, ValueError):
                cached = (doc, None)
            self.parsed[key] = cached
        profile = cached[1]
        if profile is None:
            return {}
        route = profile.route_for(str(ev.get("method", "")), str(ev.get("path", "")))
        return {"route": route.name if route is not None else "[DEFAULT]"}

    def caller(self, labels: dict[str, Any]) -> dict[str, str]:
        """An inbound request's source as workload labels, from what the proxy learnt
        of its mTLS peer (``shoal.proxy.identity.peer_workload``): the whole workload
        of the pod its certificate names when that pod is registered under the same
        identity, else the identity's namespace and service account; {} in plaintext.

        On one machine every caller's address is 127.0.0.1, so this is how ``top``
        names a meshed source as Linkerd does from its pod IP.
        """
        out = {k: v for k, v in labels.items()
               if k in ("namespace", "serviceaccount", "pod") and isinstance(v, str)}
        pod = self.plane.registry.pods.get((out.get("namespace", ""), out.get("pod", "")))
        if pod is not None and pod.serviceaccount == out.get("serviceaccount"):
            return pod_labels(pod)
        out.pop("pod", None)  # not a pod this control plane knows
        return out


def enrich(ev: dict[str, Any], pod: Pod, names: Names) -> dict[str, Any]:
    ev["namespace"], ev["pod"] = pod.namespace, pod.name
    mine = pod_labels(pod)
    if ev.get("direction") == "outbound":
        ev["src_labels"] = mine
        ev["dst_labels"] = peer_labels(ev.get("dst_labels") or {})
        if ev["dst_labels"].get("pod"):
            # The proxy reports its app's side of an outbound call; Linkerd shows the
            # hop to the destination. Discovery gave that pod an identity, and a proxy
            # always dials a peer with an identity over mTLS (its metrics say
            # tls="true" for it too).
            ev["tls"] = "true"
    else:
        ev["src_labels"] = names.caller(ev.get("src_labels") or {})
        ev["dst_labels"] = mine
    ev["route_labels"] = names.route(ev)
    return ev


# -- the session: one stream per pod, merged ------------------------------------------

def tap_target(pod: Pod) -> tuple[str, str]:
    """(URL, TLS server name) of a pod's tap stream: plaintext to a loopback listener
    (the proxy trusts its own host), otherwise mTLS, the proxy verified as the pod's
    identity and this control plane presenting its own (``PlaneIdentity``).

    >>> from shoal.control.registry import Pod
    >>> pod = Pod("emojivoto", "web-1", "web", "web-5f", "5f", "web", 0.0, tap="10.0.0.7:4190")
    >>> tap_target(pod)
    ('https://10.0.0.7:4190/tap', 'web.emojivoto.serviceaccount.identity.shoal.local')
    >>> tap_target(Pod("ns", "p", "d", "d-1", "1", "default", 0.0, tap="127.0.0.1:4190"))[1]
    ''
    """
    addr = str(pod.tap)
    host = addr.rpartition(":")[0].strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return f"http://{addr}/tap", ""
    return f"https://{addr}/tap", identity_name(pod.serviceaccount, pod.namespace)


class TapSession:
    """Taps every pod, merges their events into one queue; ``close()`` releases all.

    With ``follow`` (a function returning the resource's pods now), pods that appear
    later (a scale-up, a rollout) are tapped too, as soon as they are running, and so
    is a pod whose proxy came back on another tap address.
    """

    def __init__(self, pods: list[Pod], spec: dict[str, Any], names: Names,
                 follow: Callable[[], list[Pod]] | None = None,
                 tls: Callable[[], ssl.SSLContext] | None = None) -> None:
        self.pods = pods
        self.follow = follow
        self.tls = tls
        self.spec = spec
        self.names = names
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_MAX)
        self.upstream_dropped: dict[str, int] = {}
        self.dropped = 0
        self.recorder: dict[str, int] = {}
        self.started: dict[str, asyncio.Future[str]] = {}
        self.tapped: set[tuple[str, str]] = set()  # (pod, tap address) streams opened
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    async def start(self) -> None:
        """Start every pod's tap; fails only when none could start."""
        for pod in self.pods:
            self._tap(pod)
        try:
            done, _ = await asyncio.wait(self.started.values(), timeout=START_TIMEOUT)
        except BaseException:  # the caller went away while the taps started
            self.close()
            raise
        errors = [f.result() for f in done if f.result()]
        if len(errors) == len(self.pods):
            self.close()
            raise BadGateway(f"cannot tap any pod: {errors[0]}")
        if self.follow is not None:
            self._spawn(self._follow(), "tap: new pods")

    def _tap(self, pod: Pod) -> None:
        self.tapped.add((pod.name, pod.tap))
        self.started[pod.name] = asyncio.get_running_loop().create_future()
        self._spawn(self._pump(pod), f"tap {pod.namespace}/{pod.name}")

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _follow(self) -> None:
        assert self.follow is not None
        while not self.closed:
            await asyncio.sleep(FOLLOW_INTERVAL)
            for pod in self.follow():
                if (pod.name, pod.tap) not in self.tapped:
                    log.info("tap: following %s/%s at %s", pod.namespace, pod.name, pod.tap)
                    if pod.name not in self.started:
                        self.pods.append(pod)
                    self._tap(pod)

    def close(self) -> None:
        """Cancel every pump; each closes its own connection, so nothing here awaits
        (this also runs from a cancelled request)."""
        self.closed = True
        for task in list(self.tasks):
            task.cancel()

    async def _pump(self, pod: Pod) -> None:
        started = self.started[pod.name]
        try:
            url, server_name = tap_target(pod)
            verify: ssl.SSLContext | bool = True
            if server_name:
                if self.tls is None:
                    raise BadGateway(f"pod {pod.name}: its tap listener is on another host "
                                     "and this control plane has no certificate")
                verify = self.tls()
            async with httpx.AsyncClient(trust_env=False, verify=verify, timeout=httpx.Timeout(
                    5.0, read=None)) as client, client.stream(
                    "POST", url, json=self.spec,
                    extensions={"sni_hostname": server_name} if server_name else None) as r:
                if r.status_code != 200:
                    text = (await r.aread()).decode(errors="replace").strip()
                    raise BadGateway(f"pod {pod.name}: {text or r.status_code}")
                async for line in r.aiter_lines():
                    if line:
                        self._take(pod, json.loads(line), started)
            self._put({"type": "error", "pod": pod.name, "error": "tap stream ended"})
        except (httpx.HTTPError, BadGateway, ValueError) as e:
            message = e.message if isinstance(e, BadGateway) else \
                f"pod {pod.name}: {e.__class__.__name__} {e}".strip()
            if not started.done():
                started.set_result(message)
            self._put({"type": "error", "pod": pod.name, "error": message})
        finally:
            if not started.done():
                started.set_result("cancelled")

    def _take(self, pod: Pod, ev: dict[str, Any], started: asyncio.Future[str]) -> None:
        kind = ev.get("type")
        if kind == "started":
            self.recorder[pod.name] = int(ev.get("recorder_bytes") or 0)
            if not started.done():
                started.set_result("")
        elif kind == "stats":
            self.upstream_dropped[pod.name] = int(ev.get("dropped") or 0)
        elif kind in ("req", "rsp", "end"):
            self._put(enrich(ev, pod, self.names))

    def _put(self, ev: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(ev)
        except asyncio.QueueFull:
            self.dropped += 1

    def total_dropped(self) -> int:
        return self.dropped + sum(self.upstream_dropped.values())

    async def batches(self) -> AsyncIterator[list[dict[str, Any]]]:
        """The started line, then batches of events, and stats every second."""
        yield [{"type": "started", "pods": [p.name for p in self.pods],
                "recorder_bytes": dict(self.recorder)}]
        next_stats = time.monotonic() + 1.0
        while not self.closed:
            batch: list[dict[str, Any]] = []
            with contextlib.suppress(TimeoutError):
                batch.append(await asyncio.wait_for(
                    self.queue.get(), max(0.0, next_stats - time.monotonic())))
                while len(batch) < 500 and not self.queue.empty():
                    batch.append(self.queue.get_nowait())
            if time.monotonic() >= next_stats:
                batch.append({"type": "stats", "dropped": self.total_dropped()})
                next_stats = time.monotonic() + 1.0
            if batch:
                yield batch


# -- the routes ----------------------------------------------------------------------

def reveal_token(plane: ControlPlane) -> str:
    """The reveal token, created (0600) beside the operator token on first use."""
    path = Home(plane.config.home).root / "reveal-token"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        atomic_write(path, token.encode() + b"\n")
        return token


async def open_session(plane: ControlPlane, body: TapIn, reveal: str | None) -> TapSession:
    check(body)
    kind, name = parse_resource(body.resource)
    flt = proxy_filter(body)
    if body.reveal and not (reveal and secrets.compare_digest(reveal, reveal_token(plane))):
        raise Forbidden("revealing secret headers needs the reveal token "
                        "($SHOAL_HOME/reveal-token, sent as X-Shoal-Reveal)")
    pods = pods_of(plane, kind, name, body.namespace)
    if not pods:
        raise NotFound(f'no pods to tap for type="{kind.name}" name="{name}"')
    spec = {"filter": flt, "max_rps": body.max_rps / len(pods), "headers": body.headers,
            "reveal": body.reveal, "failures": body.failures, "since": body.since}
    own = plane.own_identity
    session = TapSession(pods, spec, Names(plane),
                         follow=lambda: pods_of(plane, kind, name, body.namespace),
                         tls=own.client_context if own is not None else None)
    await session.start()
    return session


def create_router(plane: ControlPlane, operator: Any) -> APIRouter:
    """``app.include_router(create_router(plane, operator))``; ``operator`` is the
    API's token dependency."""
    reveal_token(plane)
    plane.probes["tap"] = lambda: (True, "ready")
    router = APIRouter(dependencies=[Depends(operator)])

    @router.post("/api/v1/tap", response_class=StreamingResponse,
                 responses={200: {"content": {"application/x-ndjson": {}}}})
    async def tap(body: TapIn, request: Request,
                  x_shoal_reveal: Reveal = None) -> StreamingResponse:
        """NDJSON: a started line, tap events of every pod of the resource, stats."""
        session = await open_session(request.app.state.plane, body, x_shoal_reveal)

        async def lines() -> AsyncIterator[bytes]:
            try:
                async for batch in session.batches():
                    yield b"".join(json.dumps(e).encode() + b"\n" for e in batch)
            finally:
                session.close()

        return StreamingResponse(lines(), media_type="application/x-ndjson",
                                 headers={"cache-control": "no-store"},
                                 background=BackgroundTask(session.close))

    @router.get("/api/v1/tap/events", response_class=StreamingResponse,
                responses={200: {"content": {"text/event-stream": {}}}})
    async def tap_events(request: Request, query: Annotated[TapIn, Query()],
                         x_shoal_reveal: Reveal = None) -> StreamingResponse:
        """Server-sent events: the same stream, one ``data:`` per event."""
        session = await open_session(request.app.state.plane, query, x_shoal_reveal)

        async def events() -> AsyncIterator[bytes]:
            try:
                async for batch in session.batches():
                    yield b"".join(b"event: %s\ndata: %s\n\n" % (
                        str(e["type"]).encode(), json.dumps(e).encode()) for e in batch)
            finally:
                session.close()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store"},
                                 background=BackgroundTask(session.close))

    return router

