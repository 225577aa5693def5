"""The live handles every listener shares: config, metrics, tap, resolver, pools."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from .config import ProxyConfig, format_addr
from .destination import Resolver

if TYPE_CHECKING:  # cryptography is loaded only when a control plane is configured
    from .identity import Credentials, Identity
from .metrics import ProxyMetrics, TcpStats, TrafficStats
from .pool import Pools
from .tap import TapHub

log = logging.getLogger("shoal.proxy")

LOG_BURST = 20
MAX_UNROUTED = 1000

PLAINTEXT_INBOUND = {"tls": "no_identity", "no_tls_reason": "no_tls_from_remote"}


class Tracked(Protocol):
    """A downstream connection the runtime can drain on shutdown."""

    def busy(self) -> bool: ...
    def close_idle(self) -> None: ...
    def abort(self) -> None: ...


class Runtime:
    """Shared by every connection of one proxy process."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.metrics = ProxyMetrics()
        self.tap = TapHub(config.tap_redact, record_bytes=config.tap_record_bytes)
        self.metrics.tap_subscriptions = lambda: len(self.tap.subs)
        self.resolver = Resolver(self.metrics, config.destinations)
        self.pools = Pools(config.pool_max_idle)
        self.conn_ids = itertools.count(1)
        self.connections: set[Tracked] = set()
        self.draining = False
        self.ready = asyncio.Event()
        #: set when a control plane is configured (see server.ProxyServer.start)
        self.identity: Identity | None = None
        #: the route table of this workload's own service (inbound route metrics)
        self.inbound_routes: Any = None
        self.stopping = asyncio.Event()
        # Inbound counters per TLS label set, built once per set.
        app = format_addr(config.app) if config.app else ""
        self.app_target_addr = app
        self._unrouted: set[str] = set()
        self._log_window = 0.0
        self._log_count = 0
        self._log_suppressed = 0
        self._inbound: dict[tuple[tuple[str, str], ...], tuple[TrafficStats, TcpStats, TcpStats]] = {}

    def inbound_stats(self, tls: dict[str, str]) -> tuple[TrafficStats, TcpStats, TcpStats]:
        """(traffic, accepted-side tcp, app-side tcp) counters for inbound with ``tls``."""
        key = tuple(tls.items())
        s = self._inbound.get(key)
        if s is None:
            base = {"direction": "inbound", "target_addr": self.app_target_addr, **tls}
            s = self._inbound[key] = (
                self.metrics.traffic_stats(base),
                self.metrics.tcp_stats(dict(base, peer="src")),
                self.metrics.tcp_stats(dict(base, peer="dst")),
            )
        return s

    def credentials(self) -> Credentials | None:
        """The current TLS credentials, or None before the first certificate."""
        return self.identity.current if self.identity is not None else None

    def no_route_stats(self, authority: str) -> TrafficStats:
        """Counters for outbound requests whose authority resolved to nothing.

        Authorities come from clients: past ``MAX_UNROUTED`` distinct ones they are
        counted together as ``<other>``, so a hostile client cannot grow /metrics."""
        if authority not in self._unrouted:
            if len(self._unrouted) >= MAX_UNROUTED:
                authority = "<other>"
            else:
                self._unrouted.add(authority)
        return self.metrics.traffic_stats({"direction": "outbound", "authority": authority,
                                           "target_addr": "", "tls": "no_identity",
                                           "no_tls_reason": "not_provided_by_service_discovery"})

    def outbound_src_tcp(self, target_addr: str) -> TcpStats:
        return self.metrics.tcp_stats({"direction": "outbound", "peer": "src",
                                       "target_addr": target_addr, "tls": "no_identity",
                                       "no_tls_reason": "loopback"})

    def connection_error(self, direction: str, error: str, **fields: object) -> None:
        """Count and log one connection-level error (one line, structured).

        Logging is limited to ``LOG_BURST`` lines a second so that a flood of bad
        connections cannot flood the log; the metric counts every one.
        """
        self.metrics.error(direction, error)
        now = time.monotonic()
        if now - self._log_window >= 1.0:
            if self._log_suppressed:
                log.warning("connection errors suppressed count=%d", self._log_suppressed)
            self._log_window, self._log_count, self._log_suppressed = now, 0, 0
        self._log_count += 1
        if self._log_count > LOG_BURST:
            self._log_suppressed += 1
            return
        extra = " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        log.warning("connection error direction=%s error=%s %s", direction, error, extra)


def _quote(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text
