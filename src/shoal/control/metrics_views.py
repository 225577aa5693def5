"""What the metrics API answers, built from the queries and the registry.

The queries know the traffic; the registry knows the resources. A ``stat`` row
exists for every resource of the type in scope (MESHED, pod STATUS, ``-`` without
traffic) and for every resource that had traffic in the window; ``--to``/``--from``
rows exist only with traffic, as Linkerd's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shoal.viz.errors import BadSelector, QueryError, UnknownResource
from shoal.viz.queries import Kind, Queries, Ref, resource_kind
from shoal.viz.routes import routes as route_rows
from shoal.viz.series import Matcher

from .profile_store import ProfileStore
from .registry import Registry

STAT_TYPES = ("namespace", "deployment", "replicaset", "pod", "service")
#: ``all`` expands to these, in this order
ALL_TYPES = ("deployment", "replicaset", "pod", "service")


def stat_kind(word: str) -> Kind:
    kind = resource_kind(word)
    if kind.name not in STAT_TYPES:
        raise UnknownResource(f"stat does not support {kind.name}: use one of ns, deploy, "
                              "rs, po, svc, all")
    return kind


def selector(text: str | None) -> list[Matcher]:
    """A label selector as kubectl writes it: ``deployment=web,pod!=web-1``."""
    out: list[Matcher] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        for op in ("!=", "==", "="):
            key, sep, value = part.partition(op)
            if sep:
                break
        else:
            raise BadSelector(f"malformed selector {part!r}: expected key=value or key!=value")
        key, value = key.strip(), value.strip()
        if not key or not key.replace("_", "a").replace("-", "a").isalnum():
            raise BadSelector(f"malformed selector {part!r}: bad label name {key!r}")
        out.append(Matcher(key.replace("-", "_"), value, "!=" if op == "!=" else "="))
    return out


# -- the registry's side ------------------------------------------------------------------


def _pods(registry: Registry, kind: str, namespace: str, name: str) -> list[Any]:
    # a snapshot: the event loop may change the registry while a worker thread reads it
    pods = [p for p in list(registry.pods.values()) if p.status != "Terminating"]
    if kind == "namespace":
        return [p for p in pods if p.namespace == name]
    pods = [p for p in pods if p.namespace == namespace]
    if kind == "deployment":
        return [p for p in pods if p.deployment == name]
    if kind == "replicaset":
        return [p for p in pods if p.replicaset == name]
    if kind == "pod":
        return [p for p in pods if p.name == name]
    if kind == "service":
        svc = registry.service(namespace, name)
        return [p for p in pods if svc is not None and p.deployment == svc["deployment"]]
    return []


def meshed(registry: Registry, kind: str, namespace: str, name: str) -> tuple[int, int]:
    """(pods with a running proxy, pods) of one resource."""
    pods = _pods(registry, kind, namespace, name)
    return sum(1 for p in pods if p.admin and p.status == "Running"), len(pods)


def resources(registry: Registry, kind: str, namespace: str | None) -> list[tuple[str, str]]:
    """(namespace, name) of the resources of ``kind`` the registry knows."""
    listing = {"namespace": "namespaces", "deployment": "deployments",
               "replicaset": "replicasets", "pod": "pods", "service": "services"}[kind]
    if kind == "namespace":
        return [(i["name"], i["name"]) for i in registry.listing(listing)
                if namespace is None or i["name"] == namespace]
    return [(i["namespace"], i["name"]) for i in registry.listing(listing, namespace)]


def services_of(registry: Registry, ref: Ref, namespace: str) -> list[tuple[str, str]]:
    """The services (name, namespace) whose pods include the resource ``ref``."""
    kind = ref.kind.name
    if kind == "service":
        return [(ref.name, namespace)]
    if kind == "namespace":
        return [(n, ns) for ns, n in resources(registry, "service", ref.name)]
    deployments: set[str] = set()
    if kind == "deployment":
        deployments.add(ref.name)
    elif kind == "replicaset":
        deployments.add(ref.name.rpartition("-")[0])
    elif kind == "pod":
        deployments |= {p.deployment for p in _pods(registry, "pod", namespace, ref.name)}
    else:
        raise UnknownResource(f"routes does not support {kind}: use deploy, rs, po, svc or ns")
    return [(s["name"], ns) for (ns, _), s in list(registry.data["services"].items())
            if ns == namespace and s.get("deployment") in deployments]


def workload_matchers(registry: Registry, ref: Ref, namespace: str) -> list[Matcher]:
    """Matchers selecting the proxies of ``ref`` by their workload labels."""
    if ref.kind.name == "service":
        svc = registry.service(namespace, ref.name)
        if svc is None:
            return [Matcher("namespace", namespace), Matcher("deployment", ref.name)]
        return [Matcher("namespace", namespace), Matcher("deployment", svc["deployment"])]
    if ref.kind.name == "namespace":
        return [Matcher("namespace", ref.name)]
    if ref.kind.name not in ("deployment", "replicaset", "pod"):
        raise UnknownResource(f"routes does not support {ref.kind.name}: use deploy, rs, po, "
                              "svc or ns")
    return [Matcher("namespace", namespace), *ref.kind.name_matchers(ref.name)]


# -- answers ------------------------------------------------------------------------------


def stat(queries: Queries, registry: Registry, resource: str, *, namespace: str | None,
         name: str | None = None, window: str = "1m", to: str | None = None,
         from_: str | None = None, to_namespace: str | None = None,
         from_namespace: str | None = None, labels: str | None = None,
         unmeshed: bool = False) -> list[dict[str, Any]]:
    """``-o json`` rows of ``stat``: DESIGN.md's fields plus ``meshed`` (and pods' ``status``)."""
    if "/" in resource:
        resource, _, slash_name = resource.partition("/")
        if name and name != slash_name:
            raise QueryError(f"two names given: {slash_name!r} and {name!r}")
        name = slash_name or None
    if resource.strip().lower() == "all":
        if name:
            raise QueryError("a name cannot be given with all")
        return [row for kind in ALL_TYPES
                for row in stat(queries, registry, kind, namespace=namespace, window=window,
                                to=to, from_=from_, to_namespace=to_namespace,
                                from_namespace=from_namespace, labels=labels,
                                unmeshed=unmeshed)]
    kind = stat_kind(resource)
    if to is not None and from_ is not None:
        raise QueryError("--to and --from flags are mutually exclusive")
    if to_namespace and to is None:
        raise QueryError("--to-namespace requires --to")
    if from_namespace and from_ is None:
        raise QueryError("--from-namespace requires --from")
    to_ref = Ref.parse(to, to_namespace or namespace or "default") if to else None
    from_ref = Ref.parse(from_, from_namespace or namespace or "default") if from_ else None
    if kind.name == "namespace":
        namespace = None  # namespaces are listed whatever -n says, as Linkerd does
    rows = queries.stat(kind.name, namespace, name, window, to_ref, from_ref,
                        match=selector(labels) or None)
    by_key = {(r.namespace, r.name): r for r in rows}
    keys = list(by_key)
    if to_ref is None and from_ref is None and not labels:
        for key in resources(registry, kind.name, namespace):
            if (name is None or key[1] == name) and key not in by_key:
                keys.append(key)
    out = []
    for ns, n in sorted(keys):
        r = by_key.get((ns, n))
        row: dict[str, Any] = {
            "namespace": ns, "kind": kind.name, "name": n, "success": None, "rps": None,
            "latency_ms_p50": None, "latency_ms_p95": None, "latency_ms_p99": None,
            "tcp_open_connections": None, "tcp_read_bytes_rate": None,
            "tcp_write_bytes_rate": None}
        if r is not None:
            j = r.to_json()
            row.update({k: j[k] for k in row if k not in ("namespace", "kind", "name")})
            if not r.requests:
                row["rps"] = row["success"] = None
        mesh, total = meshed(registry, kind.name, ns, n)
        if total == 0 and r is not None and r.meshed_pods:
            mesh = total = r.meshed_pods
        row["meshed"] = f"{mesh}/{total}"
        if kind.name == "pod":
            pod = registry.pods.get((ns, n))
            row["status"] = pod.status if pod is not None else "Terminated"
        if mesh == 0 and not unmeshed and r is None:
            continue
        if (to_ref or from_ref) and (r is None or not (r.requests or r.tcp_open_connections)):
            continue  # the callers' views show traffic only
        out.append(row)
    return out


def edges(queries: Queries, resource: str, namespace: str | None,
          window: str = "1m") -> list[dict[str, Any]]:
    return [e.to_json() for e in queries.edges(resource, namespace, window)]


def routes(queries: Queries, registry: Registry, profiles: ProfileStore, resource: str, *,
           namespace: str, window: str = "1m", to: str | None = None,
           to_namespace: str | None = None) -> list[dict[str, Any]]:
    ref = Ref.parse(resource, namespace)
    names = {k: [r.name for r in p.routes] for k, p in profiles.profiles.items()}
    by_service = {(svc, ns): v for (ns, svc), v in names.items()}
    src = workload_matchers(registry, ref, namespace)
    if to is None:
        services = services_of(registry, ref, namespace)
        rows = route_rows(queries.backend, src, "inbound", by_service, window,
                          services=services)
    else:
        to_ref = Ref.parse(to, to_namespace or namespace)
        services = services_of(registry, to_ref, to_ref.namespace or namespace)
        rows = route_rows(queries.backend, src, "outbound", by_service, window,
                          services=services)
    return [r.to_json() for r in rows]


def overview(registry: Registry) -> list[dict[str, Any]]:
    """Per namespace: pods, meshed pods, deployments and services (the dashboard's list)."""
    out = []
    for ns, _ in resources(registry, "namespace", None):
        mesh, total = meshed(registry, "namespace", ns, ns)
        out.append({"namespace": ns, "pods": total, "meshed": mesh,
                    "deployments": len(resources(registry, "deployment", ns)),
                    "services": len(resources(registry, "service", ns))})
    return out


def split_resources(words: Sequence[str]) -> list[tuple[str, str | None]]:
    """``["deploy/web", "po/x"]`` or ``["deploy", "web", "emoji"]`` -> (type, name) pairs."""
    if not words:
        raise UnknownResource("a resource type is required, e.g. deploy or deploy/web")
    if "/" not in words[0]:
        if any("/" in w for w in words[1:]):
            raise QueryError("use either TYPE NAME... or TYPE/NAME..., not both")
        return [(words[0], None)] if len(words) == 1 else [(words[0], n) for n in words[1:]]
    out: list[tuple[str, str | None]] = []
    for w in words:
        t, sep, n = w.partition("/")
        if not sep or not n:
            raise QueryError(f"expected TYPE/NAME, got {w!r}")
        out.append((t, n))
    return out

