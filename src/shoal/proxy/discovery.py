"""Discovery: one watch per service on the control plane, applied to its Target.

Each answer is a full snapshot (endpoints with identity and labels, the service
profile), so applying the latest one is always right. When the control plane goes
away the Target keeps its last endpoints and the watch reconnects with back-off:
the proxy keeps routing with what it knew.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .config import ConfigError, parse_addr
from .controlclient import ControlClient, ControlError
from .destination import Endpoint, Resolver, Target, service_labels
from .routes import table_for

log = logging.getLogger("shoal.proxy.discovery")

_DST = {"namespace": "dst_namespace", "deployment": "dst_deployment", "pod": "dst_pod",
        "pod_template_hash": "dst_pod_template_hash", "serviceaccount": "dst_serviceaccount"}


def dst_labels(authority: str, labels: dict[str, str]) -> dict[str, str]:
    out = service_labels(authority)
    for k, v in labels.items():
        if k in _DST and isinstance(v, str):
            out[_DST[k]] = v
    return out


class Discovery:
    def __init__(self, resolver: Resolver, client: ControlClient, max_watches: int = 1000):
        self.resolver = resolver
        self.client = client
        self.targets: dict[str, Target] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.max_watches = max_watches
        self.connected = False
        #: (own service name, runtime): that service's profile gives inbound routes
        self.inbound: tuple[str, Any] | None = None

    def watch(self, name: str) -> Target | None:
        """The Target for a normalised ``name:port``, watched from now on."""
        t = self.targets.get(name)
        if t is not None:
            return t
        if len(self.targets) >= self.max_watches:
            log.warning("too many watched services; not watching name=%s", name)
            return None
        t = self.targets[name] = Target(name, [])
        t.pending = asyncio.get_running_loop().create_future()
        self.tasks[name] = asyncio.get_running_loop().create_task(
            self._run(name, t), name=f"discovery-{name}")
        return t

    def apply(self, target: Target, snap: dict[str, Any]) -> None:
        old = {ep.addr: ep for ep in target.endpoints}
        endpoints: list[Endpoint] = []
        for e in snap.get("endpoints") or []:
            try:
                addr = parse_addr(str(e["addr"]))
            except (KeyError, ConfigError):
                continue
            identity = e.get("identity") or None
            ep = old.get(addr)
            if ep is None or ep.identity != identity:
                ep = self.resolver.endpoint(target.authority, addr,
                                            dst_labels(target.authority, e.get("labels") or {}),
                                            identity if e.get("meshed", True) else None)
            endpoints.append(ep)
        target.endpoints = endpoints
        target.profile = snap.get("profile")
        target.routes = table_for(target.profile, self.resolver.metrics, "outbound",
                                  target.routes)
        if self.inbound is not None and self.inbound[0] == target.authority:
            rt = self.inbound[1]
            rt.inbound_routes = table_for(target.profile, self.resolver.metrics, "inbound",
                                          rt.inbound_routes)
        target.exists = bool(snap.get("exists", True))
        if target.pending is not None and not target.pending.done():
            target.pending.set_result(None)

    async def _run(self, name: str, target: Target) -> None:
        backoff = 0.2
        while True:
            try:
                async for snap in self.client.stream("/api/v1/destination/watch",
                                                     {"authority": name}):
                    self.connected = True
                    backoff = 0.2
                    if snap:  # {} is a heartbeat
                        self.apply(target, snap)
            except ControlError as e:
                self.connected = False
                if e.status in (401, 403):
                    log.warning("discovery refused name=%s status=%d", name, e.status)
                # Keep the last endpoints; answer waiting requests with what we have.
                if target.pending is not None and not target.pending.done():
                    target.exists = False
                    target.pending.set_result(None)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()
