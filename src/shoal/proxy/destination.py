"""Where an outbound request goes: authority -> Target -> Endpoint.

A ``Target`` is the logical service (``emoji.emojivoto:8080``) and its endpoints; an
``Endpoint`` is one address with the labels and counters of requests sent to it.
Targets are cached per authority so the data path does one dict lookup per request.
This module resolves from the static ``--destination`` map and IP literals; the
control plane's discovery feeds the same ``Resolver.update``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Iterable
from typing import Any

from .balance import Load, p2c
from .config import Addr, ConfigError, format_addr, parse_authority
from .metrics import ProxyMetrics, TcpStats, TrafficStats


class Endpoint:
    """One concrete address of a target, with its outbound counters."""

    __slots__ = ("addr", "labels", "identity", "stats", "tcp", "target_addr", "load")

    def __init__(self, addr: Addr, labels: dict[str, str], identity: str | None,
                 stats: TrafficStats, tcp: TcpStats) -> None:
        self.addr = addr
        self.labels = labels
        self.identity = identity
        self.stats = stats
        self.tcp = tcp
        self.target_addr = format_addr(addr)
        self.load = Load()


class Target:
    """A logical destination: a normalised authority and its endpoints."""

    __slots__ = ("authority", "endpoints", "pending", "profile", "exists", "routes")

    def __init__(self, authority: str, endpoints: list[Endpoint]) -> None:
        self.authority = authority
        self.endpoints = endpoints
        #: set while discovery has not answered yet; resolved on its first answer
        self.pending: asyncio.Future[None] | None = None
        self.profile: dict[str, Any] | None = None
        self.exists = True
        #: the profile's route table (shoal.proxy.routes.RouteTable), when it has one
        self.routes: Any = None

    def pick(self) -> Endpoint | None:
        eps = self.endpoints
        if len(eps) == 1:
            return eps[0]
        return p2c(eps, time.monotonic())  # type: ignore[return-value]


def service_labels(authority: str) -> dict[str, str]:
    """``emoji.emojivoto:8080`` -> dst_service/dst_namespace labels."""
    host = authority.rpartition(":")[0]
    parts = host.split(".")
    if len(parts) >= 2 and not _is_ip(host):
        return {"dst_namespace": parts[1], "dst_service": parts[0]}
    return {}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class Resolver:
    """Resolves authorities for the outbound side and caches the answer."""

    def __init__(self, metrics: ProxyMetrics, static: Iterable[tuple[str, Addr]] = (),
                 base_labels: dict[str, str] | None = None) -> None:
        self.metrics = metrics
        self.base_labels = base_labels or {}
        self.static: dict[str, Addr] = dict(static)
        self._cache: dict[str, Target | None] = {}
        #: set when a control plane is configured: ``watch(name) -> Target``
        self.discovery: Any = None
        #: "svc.ns" -> route table, from --profile files (static destinations)
        self.static_routes: dict[str, Any] = {}

    def resolve(self, authority: str) -> Target | None:
        """The target for a Host/:authority/CONNECT value, or None when unknown."""
        t = self._cache.get(authority)
        if t is not None or authority in self._cache:
            return t
        if len(self._cache) > 10_000:  # hostile clients must not grow this forever
            self._cache.clear()
        t = self._cache[authority] = self._lookup(authority)
        return t

    def _lookup(self, authority: str) -> Target | None:
        try:
            name = parse_authority(authority)
        except ConfigError:
            return None
        host, _, port = name.rpartition(":")
        addr = self.static.get(name)
        if addr is None:
            if not _is_ip(host):
                if self.discovery is not None:
                    return self.discovery.watch(name)  # type: ignore[no-any-return]
                return None  # never fall back to DNS by surprise
            addr = (host.strip("[]"), int(port))
        labels = service_labels(name)
        t = Target(name, [self.endpoint(name, addr, labels)])
        t.routes = self.static_routes.get(host)
        return t

    def endpoint(self, authority: str, addr: Addr, dst_labels: dict[str, str],
                 identity: str | None = None) -> Endpoint:
        target_addr = format_addr(addr)
        tls = ({"tls": "true", "server_id": identity} if identity else
               {"tls": "no_identity", "no_tls_reason": "not_provided_by_service_discovery"})
        base = dict(self.base_labels, direction="outbound", authority=authority,
                    target_addr=target_addr, **tls, **dst_labels)
        tcp = dict(self.base_labels, direction="outbound", peer="dst",
                   target_addr=target_addr, **tls, **dst_labels)
        return Endpoint(addr, dst_labels, identity, self.metrics.traffic_stats(base),
                        self.metrics.tcp_stats(tcp))

    def update(self, authority: str, target: Target | None) -> None:
        """Install discovery's answer for an authority (None removes it)."""
        self._cache[authority] = target
