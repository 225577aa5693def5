"""ControlPlane: the live handles of one control plane, travelling together.

The API routes, the background tasks and the tests all reach the registry, the
identity service and the destination service through one ``ControlPlane``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shoal import __version__

from .config import ControlConfig
from .destination import Destination
from .identity import Identity
from .plane_identity import PlaneIdentity
from .registry import Registry
from .state import Home

#: name -> () -> (healthy, message); parts added later (metrics, tap, web) register here.
HealthProbe = Callable[[], tuple[bool, str]]
COMPONENTS = ("destination", "identity", "metrics", "tap", "web")


@dataclass
class ControlPlane:
    config: ControlConfig
    token: str
    registry: Registry
    identity: Identity
    destination: Destination
    started: float = field(default_factory=time.time)
    probes: dict[str, HealthProbe] = field(default_factory=dict)
    #: the control plane's own certificate (tap over mTLS), issued by ``open``
    own_identity: PlaneIdentity | None = None

    @classmethod
    def open(cls, config: ControlConfig) -> ControlPlane:
        """Load (or create) everything the control plane keeps in $SHOAL_HOME."""
        home = Home(config.home).ensure()
        registry = Registry(home.registry, stale_after=config.pod_stale_after)
        plane = cls(config=config, token=home.token(), registry=registry,
                    identity=Identity(config, home.identity),
                    destination=Destination(registry, config.watch_heartbeat))
        plane.own_identity = PlaneIdentity(plane.identity)
        plane.probes["destination"] = lambda: (True, f"{plane.destination.watchers} watchers")
        plane.probes["identity"] = plane._identity_health
        return plane

    def _identity_health(self) -> tuple[bool, str]:
        now = time.time()
        issuer = self.identity.authority.issuer
        if issuer.not_valid_after_utc.timestamp() < now:
            return False, "issuer certificate expired"
        if all(a.not_valid_after_utc.timestamp() < now for a in self.identity.authority.anchors):
            return False, "every trust anchor expired"
        return True, f"{len(self.identity.authority.anchors)} trust anchor(s)"

    def health(self) -> dict[str, Any]:
        components = []
        for name in sorted(set(COMPONENTS) | set(self.probes)):
            probe = self.probes.get(name)
            if probe is None:
                components.append({"name": name, "enabled": False, "healthy": False,
                                   "message": "not running in this control plane"})
                continue
            try:
                healthy, message = probe()
            except Exception as e:  # a broken probe is an unhealthy component, not a 500
                healthy, message = False, f"probe failed: {e}"
            components.append({"name": name, "enabled": True, "healthy": healthy,
                               "message": message})
        pods = self.registry.listing("pods")
        return {"version": __version__, "uptime": round(time.time() - self.started, 3),
                "healthy": all(c["healthy"] for c in components if c["enabled"]),
                "components": components,
                "pods": {"total": len(pods), "ready": sum(p["ready"] for p in pods)}}
