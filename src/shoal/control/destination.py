"""Destination: per authority, the endpoint set and the service profile, as watch streams.

A snapshot is always complete (never a delta), so a proxy that reconnects after a
control-plane restart converges by applying the first line it gets. Watchers wait
on one shared event that is replaced on every registry change; each recomputes its
snapshot and sends it only when it differs from the last one it sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from .config import identity_name
from .names import parse_authority
from .registry import Registry


class Destination:
    """``Destination(registry)``; ``snapshot("emoji.emojivoto:8080")``; ``watch(...)``."""

    def __init__(self, registry: Registry, heartbeat: float = 10.0) -> None:
        self.registry = registry
        self.heartbeat = heartbeat
        self.profiles: dict[tuple[str, str], dict[str, Any]] = {}
        self.watchers = 0
        self._changed = asyncio.Event()
        registry.listeners.append(self.notify)

    def notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def set_profile(self, namespace: str, service: str, profile: dict[str, Any] | None) -> None:
        if profile is None:
            self.profiles.pop((namespace, service), None)
        else:
            self.profiles[(namespace, service)] = profile
        self.notify()

    def snapshot(self, authority: str) -> dict[str, Any]:
        parsed = parse_authority(authority)
        out: dict[str, Any] = {"authority": authority, "endpoints": [], "profile": None}
        svc = self.registry.service(parsed[1], parsed[0]) if parsed else None
        if parsed is None or svc is None or svc["port"] != parsed[2]:
            out["exists"] = False
            return out
        name, namespace, _ = parsed
        out["exists"] = True
        out["profile"] = self.profiles.get((namespace, name))
        for pod in self.registry.pods_of(namespace, svc["deployment"]):
            if not (pod.ready and pod.inbound):
                continue
            out["endpoints"].append({
                "addr": pod.inbound,
                "identity": identity_name(pod.serviceaccount, namespace),
                "labels": {"namespace": namespace, "deployment": pod.deployment,
                           "pod": pod.name, "pod_template_hash": pod.pod_template_hash,
                           "serviceaccount": pod.serviceaccount},
                "meshed": True})
        out["endpoints"].sort(key=lambda e: e["addr"])
        return out

    async def watch(self, authority: str) -> AsyncIterator[bytes]:
        """NDJSON lines: a snapshot now, another on each change, ``{}`` when idle."""
        self.watchers += 1
        try:
            last: dict[str, Any] | None = None
            while True:
                event = self._changed
                snap = self.snapshot(authority)
                if snap != last:
                    last = snap
                    yield _line(snap)
                try:
                    await asyncio.wait_for(event.wait(), self.heartbeat)
                except TimeoutError:
                    yield b"{}\n"
        finally:
            self.watchers -= 1


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"
