"""Load balancing: power of two choices over peak-EWMA latency weighted by in-flight
requests (as Linkerd does), with failfast for endpoints that keep failing.

Pure and clock-injected so it can be tested without sockets.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Final, Protocol

#: Decay time of the latency average (s).
TAU: Final = 10.0
#: A new endpoint's assumed latency (ms), so it is tried but not flooded.
DEFAULT_RTT: Final = 1.0
FAILFAST_AFTER: Final = 3
FAILFAST_MIN, FAILFAST_MAX = 0.5, 30.0


class Load:
    """Per-endpoint balancer state."""

    __slots__ = ("ewma", "at", "inflight", "failures", "failfast_until", "backoff")

    def __init__(self) -> None:
        self.ewma = DEFAULT_RTT
        self.at = 0.0
        self.inflight = 0
        self.failures = 0
        self.failfast_until = 0.0
        self.backoff = FAILFAST_MIN

    def estimate(self, now: float) -> float:
        """The latency estimate, decayed for the time since the last sample: an endpoint
        that stopped being picked after one slow answer looks cheaper again with time
        (as Linkerd's PeakEwma decays when it reads the cost), so it is tried again."""
        if not self.at:
            return self.ewma
        return self.ewma * math.exp(-(now - self.at) / TAU)

    def cost(self, now: float) -> float:
        return self.estimate(now) * (self.inflight + 1)

    def observe(self, rtt_ms: float, now: float) -> None:
        """Peak-EWMA: a slower sample is taken at once, a faster one decays in."""
        current = self.estimate(now)
        if rtt_ms > current:
            self.ewma = rtt_ms
        else:
            w = math.exp(-(now - self.at) / TAU) if self.at else 0.0
            self.ewma = current * w + rtt_ms * (1.0 - w)
        self.at = now
        self.failures = 0
        self.backoff = FAILFAST_MIN

    def failed(self, now: float) -> None:
        self.failures += 1
        if self.failures >= FAILFAST_AFTER:
            self.failfast_until = now + self.backoff
            self.backoff = min(self.backoff * 2, FAILFAST_MAX)

    def available(self, now: float) -> bool:
        return self.failfast_until <= now


class HasLoad(Protocol):
    load: Load


def p2c(endpoints: Sequence[HasLoad], now: float, rng: random.Random = random._inst
        ) -> HasLoad | None:
    """Pick the cheaper of two random available endpoints (any, if none is available)."""
    n = len(endpoints)
    if n == 0:
        return None
    if n == 1:
        return endpoints[0]
    live = [e for e in endpoints if e.load.available(now)]
    if not live:
        live = list(endpoints)  # all in failfast: probe rather than refuse
    if len(live) == 1:
        return live[0]
    i = rng.randrange(len(live))
    j = rng.randrange(len(live) - 1)
    if j >= i:
        j += 1
    a, b = live[i], live[j]
    return a if a.load.cost(now) <= b.load.cost(now) else b
