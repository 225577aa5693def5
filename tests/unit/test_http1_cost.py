"""The in-process HTTP/1 cost harness (bench/http1_cost.py) still drives a real exchange."""

from __future__ import annotations

import pytest
from bench import http1_cost


@pytest.mark.parametrize("request_kind", sorted(http1_cost.REQUESTS))
@pytest.mark.parametrize("response_kind", sorted(http1_cost.RESPONSES))
def test_harness_forwards_every_exchange(request_kind: str, response_kind: str) -> None:
    down, up, dt, ut = http1_cost.build()
    request = http1_cost.REQUESTS[request_kind]
    response = http1_cost.RESPONSES[response_kind]
    for _ in range(3):
        down.data_received(request)
        sent = ut.take()
        assert sent.startswith(request.split(b"\r\n", 1)[0] + b"\r\n")
        assert b"via: 1.1 shoal-bench-in" in sent
        up.data_received(response)
        got = dt.take()
        assert got.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"connection:" not in got.lower()  # hop-by-hop, never forwarded
    assert not dt.closed and not ut.closed
    assert http1_cost.run(5, request, response) >= 0.0


def test_harness_with_a_tap_open() -> None:
    assert http1_cost.run(5, http1_cost.REQUESTS["wrk"], http1_cost.RESPONSES["nginx"],
                          tap=True) >= 0.0
