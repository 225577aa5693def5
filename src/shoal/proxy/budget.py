"""Retry budget, as Linkerd's: retries may add ``retry_ratio`` of the requests seen in
the last ``ttl`` seconds, plus ``min_retries_per_second`` regardless.

Counts are kept per whole second in a ring of ``ttl`` slots, so deposits expire
after ``ttl`` and the cost per request is one slot update.

>>> t = [0.0]
>>> b = RetryBudget(0.2, 0, 10.0, clock=lambda: t[0])
>>> for _ in range(10):
...     b.deposit()
>>> b.withdraw(), b.withdraw(), b.withdraw()
(True, True, False)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RetryBudget:
    def __init__(self, retry_ratio: float = 0.2, min_per_second: int = 10, ttl: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ratio = retry_ratio
        self.min_per_second = min_per_second
        self.slots = max(1, math.ceil(ttl))
        self.clock = clock
        self.requests = [0] * self.slots
        self.retries = [0] * self.slots
        self.second = int(clock())

    def _advance(self) -> int:
        now = int(self.clock())
        if now != self.second:
            for s in range(self.second + 1, min(now, self.second + self.slots) + 1):
                i = s % self.slots
                self.requests[i] = 0
                self.retries[i] = 0
            self.second = now
        return now % self.slots

    def deposit(self) -> None:
        """An original request was sent."""
        self.requests[self._advance()] += 1

    def withdraw(self) -> bool:
        """May one retry be sent now? Counts it if so."""
        i = self._advance()
        allowed = self.min_per_second * self.slots + self.ratio * sum(self.requests)
        if sum(self.retries) + 1 <= allowed:
            self.retries[i] += 1
            return True
        return False
