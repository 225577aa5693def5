"""How tap events reach many subscribers cheaply: identical taps share a match and a
rate limit, every event view is one shared dict encoded once, batches are bounded."""

from __future__ import annotations

import json

from shoal.proxy.tap import REDACTED, TapFilter, TapHub, json_line
from tests.support import tap_request

ARGS = dict(conn_id=1, direction="inbound", src="a:1", dst="b:2", tls="no_identity",
            method="GET", scheme="http", authority="web:80", path="/api")


def request(hub: TapHub, stream: int, headers=(("authorization", "secret"),)):
    ex = tap_request(hub, stream=stream, headers=list(headers), **ARGS)
    if ex is not None:
        ex.response(200, [("content-type", "text/plain")], 100)
        ex.end(duration_us=5, response_bytes=10)
    return ex


def test_identical_taps_admit_the_same_requests_and_count_their_own_drops():
    hub = TapHub()
    a = hub.subscribe(TapFilter(path_prefix="/api"), max_rps=2)
    b = hub.subscribe(TapFilter(path_prefix="/api"), max_rps=2)
    other = hub.subscribe(TapFilter(path_prefix="/other"), max_rps=2)
    assert len(hub.groups) == 2 and a.group is b.group
    for i in range(10):
        request(hub, i)
    ids_a = [e["id"] for e in a.drain()]
    assert ids_a == [e["id"] for e in b.drain()] and len(ids_a) == 2 * 3
    assert a.limited == b.limited == 8 and a.dropped == 8
    assert other.drain() == [] and other.dropped == 0  # not its path: not a drop
    # a tap that joins later counts only what it missed itself
    c = hub.subscribe(TapFilter(path_prefix="/api"), max_rps=2)
    request(hub, 11)
    assert c.limited == 1 and a.limited == 9
    for sub in (a, b, c, other):
        hub.unsubscribe(sub)
    assert hub.groups == {} and not hub.active


def test_one_shared_dict_per_view_of_an_event_encoded_once():
    hub = TapHub()
    subs = [hub.subscribe(TapFilter(), max_rps=0) for _ in range(3)]
    bare = hub.subscribe(TapFilter(), max_rps=0, headers=False)
    revealed = hub.subscribe(TapFilter(), max_rps=0, reveal=True)
    request(hub, 1)
    queues = [list(s.events) for s in subs]
    assert all(q[0] is queues[0][0] for q in queues)  # the same object, not copies
    req = queues[0][0]
    assert dict(req["headers"]) == {"authorization": REDACTED}
    assert "headers" not in bare.events[0]
    assert dict(revealed.events[0]["headers"]) == {"authorization": "secret"}
    line = json_line(req)
    assert json_line(req) is line and json.loads(line) == req
    assert subs[1].drain_lines() == subs[2].drain_lines()
    assert b"secret" not in subs[0].drain_lines() and b"secret" in revealed.drain_lines()


def test_a_backlog_is_drained_in_bounded_batches():
    hub = TapHub()
    sub = hub.subscribe(TapFilter(), max_rps=0)
    for i in range(50):
        request(hub, i)
    assert len(sub.events) == 150
    first = sub.drain_lines(64)
    assert first.count(b"\n") == 64 and len(sub.events) == 86
    assert json.loads(first.split(b"\n")[0])["id"] == "1:0"  # oldest first
    assert sub.drain_lines(64).count(b"\n") == 64
    assert sub.drain_lines(64).count(b"\n") == 22 and not sub.events
    assert not sub.wake.is_set()


def test_a_full_queue_drops_and_counts_never_grows():
    hub = TapHub()
    sub = hub.subscribe(TapFilter(), max_rps=0, queue_max=10)
    for i in range(20):
        request(hub, i)
    assert len(sub.events) == 10 and sub.lost == 50 and sub.dropped == 50
