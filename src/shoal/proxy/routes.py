"""Per-route behaviour from a service profile: matching, counters, timeouts, retries.

A ``RouteTable`` is built once per profile a discovery answer carries; the data
path asks it for a route per request only when the target has a profile.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from shoal.profiles import DEFAULT_ROUTE, Profile, ProfileError, Route, parse

from .balance import p2c
from .budget import RetryBudget
from .destination import Endpoint, Target
from .metrics import ProxyMetrics, RouteStats

log = logging.getLogger("shoal.proxy.routes")

#: Request bodies up to this size are kept so a retryable request can be replayed.
MAX_REPLAY: Final = 64 * 1024
MAX_ATTEMPTS: Final = 3


class RouteTable:
    def __init__(self, profile: Profile, metrics: ProxyMetrics, direction: str) -> None:
        self.profile = profile
        self.budget = RetryBudget(profile.retry_budget.retry_ratio,
                                  profile.retry_budget.min_retries_per_second,
                                  profile.retry_budget.ttl)

        def stats(name: str) -> RouteStats:
            labels = {"direction": direction, "dst": profile.name}
            if name != DEFAULT_ROUTE:
                labels["rt_route"] = name
            return metrics.route_stats(labels)

        self.routes = [(r, stats(r.name)) for r in profile.routes]
        self.default = stats(DEFAULT_ROUTE)

    def match(self, method: bytes, path: bytes) -> tuple[Route | None, RouteStats]:
        m = method.decode("latin-1")
        p = path.decode("latin-1").split("?", 1)[0]
        for route, stats in self.routes:
            if route.condition.matches(m, p):
                return route, stats
        return None, self.default


def retry_endpoint(target: Target | None, tried: Endpoint) -> Endpoint:
    """Where a retry goes: the balancer's pick among the target's other endpoints, or
    ``tried`` again when it has no other (a retry may still outlast a blip)."""
    others = [e for e in target.endpoints if e is not tried] if target is not None else []
    if not others:
        return tried
    ep = p2c(others, time.monotonic())
    return ep if isinstance(ep, Endpoint) else tried


def table_for(profile: object, metrics: ProxyMetrics, direction: str,
              old: RouteTable | None = None) -> RouteTable | None:
    """A route table for discovery's profile document (None: no profile, or invalid)."""
    if not isinstance(profile, dict):
        return None
    if old is not None and old.profile.source == profile:
        return old
    try:
        return RouteTable(parse(profile), metrics, direction)
    except ProfileError as e:
        log.warning("ignoring invalid service profile error=%s", str(e).replace(" ", "_"))
        return None
