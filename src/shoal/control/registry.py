"""The resources of the mesh, Kubernetes-shaped: namespaces, service accounts,
deployments, replica sets, pods and services.

The registry is plain synchronous state. Applying a deployment spec creates (or
reuses) the replica set whose ``pod_template_hash`` matches the spec; supervisors
report pods; every change bumps ``version`` and calls the listeners, and every
change worth keeping is written to disk atomically. Pods whose supervisor stops
reporting become ``Unknown`` and leave the endpoint sets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .config import CONTROL_PLANE_IDENTITY, identity_name
from .errors import Conflict, InvalidRequest, NotFound
from .names import MAX_NAME, check_name, template_hash
from .state import read_json, write_json

KINDS = ("namespaces", "serviceaccounts", "deployments", "replicasets", "services", "pods")
POD_STATUSES = ("Pending", "Running", "CrashLoopBackOff", "Terminating", "Unknown")


@dataclass(frozen=True)
class DeploymentSpec:
    """What ``shoal run`` asks for; everything but ``replicas`` and ``service_port``
    is part of the pod template and so of its hash."""

    namespace: str
    name: str
    command: tuple[str, ...]
    port: int
    env: tuple[tuple[str, str], ...] = ()
    replicas: int = 1
    service_port: int | None = None
    service_account: str = "default"
    mtls: str = "permissive"

    def __post_init__(self) -> None:
        check_name(self.namespace, "namespace")
        check_name(self.name, "name", MAX_NAME)
        check_name(self.service_account, "service account")
        if identity_name(self.service_account, self.namespace) == CONTROL_PLANE_IDENTITY:
            raise InvalidRequest(f"service account {self.service_account} in namespace "
                                 f"{self.namespace} is reserved for the control plane")
        if not self.command:
            raise InvalidRequest("command must not be empty")
        for port, what in ((self.port, "port"), (self.service_port or 1, "service port")):
            if not 0 < port <= 65535:
                raise InvalidRequest(f"{what} {port} is out of range")
        if not 0 <= self.replicas <= 100:
            raise InvalidRequest("replicas must be between 0 and 100")
        if self.mtls not in ("strict", "permissive"):
            raise InvalidRequest("mtls must be strict or permissive")

    @property
    def hash(self) -> str:
        return template_hash(self.command, dict(self.env), self.port,
                             self.service_account, self.mtls)


@dataclass
class Pod:
    namespace: str
    name: str
    deployment: str
    replicaset: str
    pod_template_hash: str
    serviceaccount: str
    created: float
    status: str = "Pending"
    ready: bool = False
    restarts: int = 0
    containers_ready: int = 0
    containers: int = 2
    app_port: int | None = None
    inbound: str | None = None
    outbound: str | None = None
    admin: str | None = None
    tap: str | None = None
    mtls: str = "permissive"
    last_seen: float = field(default=0.0, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("last_seen")
        d["identity"] = identity_name(self.serviceaccount, self.namespace)
        return d


Listener = Callable[[], None]


class Registry:
    """``Registry(path)``; ``apply(spec)``, ``report_pod(...)``, ``list("pods", "ns")``."""

    def __init__(self, path: Path | None = None, stale_after: float = 20.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.stale_after = stale_after
        self.clock = clock
        self.version = 0
        self.listeners: list[Listener] = []
        self.data: dict[str, dict[tuple[str, str], dict[str, Any]]] = {k: {} for k in KINDS}
        self.pods: dict[tuple[str, str], Pod] = {}
        if path is not None:
            self._load(read_json(path, {}))

    # -- persistence -------------------------------------------------------------
    def _load(self, raw: dict[str, Any]) -> None:
        now = self.clock()
        for kind in KINDS:
            for item in raw.get(kind, []):
                key = (item.get("namespace", ""), item["name"])
                if kind == "pods":
                    item.pop("identity", None)
                    # a pod from before a restart keeps its state until its supervisor
                    # had time to report again
                    self.pods[key] = Pod(**item, last_seen=now)
                else:
                    self.data[kind][key] = item

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        out = {k: list(v.values()) for k, v in self.data.items() if k != "pods"}
        out["pods"] = [p.to_dict() for p in self.pods.values()]
        return out

    def _changed(self, persist: bool = True) -> None:
        self.version += 1
        if persist and self.path is not None:
            write_json(self.path, self.snapshot())
        for listener in list(self.listeners):
            listener()

    # -- deployments -------------------------------------------------------------
    def _ensure(self, kind: str, namespace: str, name: str, **extra: Any) -> dict[str, Any]:
        key = (namespace, name)
        if key not in self.data[kind]:
            item = {"name": name, "created": self.clock(), **extra}
            if kind != "namespaces":
                item["namespace"] = namespace
            self.data[kind][key] = item
        return self.data[kind][key]

    def apply(self, spec: DeploymentSpec) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        """Create or update a deployment; returns (deployment, its current replica set,
        names of the older replica sets that still have pods to drain)."""
        ns, name, h = spec.namespace, spec.name, spec.hash
        svc = self.data["services"].get((ns, name))
        if svc is not None and svc["deployment"] != name:
            raise Conflict(f"service {name}.{ns} belongs to another deployment")
        self.data["namespaces"].setdefault(("", ns), {"name": ns, "created": self.clock()})
        self._ensure("serviceaccounts", ns, spec.service_account)
        rs_name = f"{name}-{h}"
        rs = self._ensure("replicasets", ns, rs_name, deployment=name, pod_template_hash=h,
                          replicas=0, spec={"command": list(spec.command),
                                            "env": dict(spec.env), "port": spec.port,
                                            "serviceaccount": spec.service_account,
                                            "mtls": spec.mtls})
        rs["replicas"] = spec.replicas
        old = []
        for (rns, rname), other in self.data["replicasets"].items():
            if rns == ns and other["deployment"] == name and rname != rs_name:
                other["replicas"] = 0
                if any(p.replicaset == rname for p in self.pods.values()):
                    old.append(rname)
        dep = self._ensure("deployments", ns, name)
        dep.update(replicas=spec.replicas, replicaset=rs_name, port=spec.port,
                   serviceaccount=spec.service_account, mtls=spec.mtls)
        svc = self._ensure("services", ns, name, deployment=name)
        svc.update(port=spec.service_port or spec.port, target_port=spec.port)
        self._changed()
        return dep, rs, old

    def scale(self, namespace: str, replicaset: str, replicas: int) -> dict[str, Any]:
        rs = self.get("replicasets", namespace, replicaset)
        if not 0 <= replicas <= 100:
            raise InvalidRequest("replicas must be between 0 and 100")
        rs["replicas"] = replicas
        self._changed()
        return rs

    # -- pods --------------------------------------------------------------------
    def report_pod(self, namespace: str, name: str, replicaset: str,
                   fields: dict[str, Any]) -> Pod:
        """Create or update a pod from its supervisor's report."""
        rs = self.get("replicasets", namespace, replicaset)
        if not name.startswith(replicaset + "-"):
            raise InvalidRequest(f"pod {name} does not belong to replica set {replicaset}")
        if fields.get("status", "Running") not in POD_STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(POD_STATUSES)}")
        key = (namespace, name)
        pod = self.pods.get(key)
        before = pod.to_dict() if pod else None
        if pod is None:
            spec = rs["spec"]
            pod = Pod(namespace=namespace, name=name, deployment=rs["deployment"],
                      replicaset=replicaset, pod_template_hash=rs["pod_template_hash"],
                      serviceaccount=spec["serviceaccount"], mtls=spec["mtls"],
                      created=self.clock())
            self.pods[key] = pod
        for k, v in fields.items():
            setattr(pod, k, v)
        pod.last_seen = self.clock()
        if pod.to_dict() != before:
            self._changed()
        return pod

    def delete_pod(self, namespace: str, name: str) -> None:
        if self.pods.pop((namespace, name), None) is None:
            raise NotFound(f"pod {name} not found in namespace {namespace}")
        self._changed()

    def mark_stale(self) -> list[str]:
        """Pods not reported within ``stale_after`` become Unknown and not ready."""
        now, gone = self.clock(), []
        for pod in self.pods.values():
            if pod.status != "Unknown" and now - pod.last_seen > self.stale_after:
                pod.status, pod.ready, pod.containers_ready = "Unknown", False, 0
                gone.append(pod.name)
        if gone:
            self._changed()
        return gone

    # -- reading -----------------------------------------------------------------
    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        item = self.data[kind].get(("" if kind == "namespaces" else namespace, name))
        if item is None:
            singular = kind[:-1].replace("replicaset", "replica set")
            where = f" in namespace {namespace}" if kind != "namespaces" else ""
            raise NotFound(f"{singular} {name} not found{where}")
        return item

    def listing(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Sorted by namespace then name; ``namespace=None`` means all namespaces."""
        if kind == "pods":
            items = [p.to_dict() for p in self.pods.values()]
        else:
            items = list(self.data[kind].values())
        if namespace is not None:
            items = [i for i in items if i.get("namespace", i["name"]) == namespace]
        return sorted(items, key=lambda i: (i.get("namespace", ""), i["name"]))

    def pods_of(self, namespace: str, deployment: str) -> list[Pod]:
        return sorted((p for p in self.pods.values()
                       if p.namespace == namespace and p.deployment == deployment),
                      key=lambda p: p.name)

    def service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.data["services"].get((namespace, name))
