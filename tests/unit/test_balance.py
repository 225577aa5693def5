"""Power of two choices over peak-EWMA: pure, with a fake clock."""

from __future__ import annotations

import random
from collections import Counter

from shoal.proxy.balance import FAILFAST_AFTER, Load, p2c


class Ep:
    def __init__(self, name: str) -> None:
        self.name = name
        self.load = Load()


def test_slow_endpoint_is_avoided_then_tried_again_as_its_estimate_decays():
    a, b = Ep("a"), Ep("b")
    t = 100.0
    a.load.observe(1.0, t)
    b.load.observe(50.0, t)  # one slow answer
    assert p2c([a, b], t) is a
    # a keeps answering in 1 ms; b gets no traffic and so no new samples
    picks = Counter()
    for _ in range(600):
        t += 0.1
        ep = p2c([a, b], t)
        picks[ep.name] += 1
        ep.load.observe(1.0 if ep is a else 1.0, t)
    assert picks["b"] > 0  # b's old peak decayed and it was tried again
    assert picks["a"] > picks["b"] / 10


def test_equal_endpoints_share_the_load():
    eps = [Ep("a"), Ep("b"), Ep("c")]
    rng = random.Random(1)
    picks, t = Counter(), 0.0
    for _ in range(3000):
        t += 0.001
        ep = p2c(eps, t, rng)
        picks[ep.name] += 1
        ep.load.inflight += 1
        ep.load.observe(2.0, t)
        ep.load.inflight -= 1
    assert all(n > 500 for n in picks.values()), picks


def test_in_flight_requests_raise_the_cost():
    a, b = Ep("a"), Ep("b")
    a.load.observe(1.0, 1.0)
    b.load.observe(1.0, 1.0)
    a.load.inflight = 5
    assert p2c([a, b], 1.0) is b


def test_failfast_and_probe_back():
    a, b = Ep("a"), Ep("b")
    for _ in range(FAILFAST_AFTER):
        a.load.failed(10.0)
    assert not a.load.available(10.0)
    assert all(p2c([a, b], 10.1) is b for _ in range(20))
    assert a.load.available(10.0 + 31)  # its back-off ended: eligible again
    a.load.failfast_until = 20.0
    b.load.failfast_until = 20.0
    assert p2c([a, b], 10.5) in (a, b)  # all in failfast: still try one
    assert p2c([], 0.0) is None
