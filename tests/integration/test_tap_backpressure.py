"""A tap reader that stops reading never holds up the proxy: its events are dropped and
counted, and when it reads again its backlog is written in bounded batches."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from shoal.proxy import admin
from shoal.proxy.config import ProxyConfig
from shoal.proxy.server import ProxyServer
from shoal.proxy.tap import TapSubscription
from tests.support import tap_request

pytestmark = pytest.mark.timeout(120)

HEADERS = [("host", "web"), ("user-agent", "test"), ("x-request-id", "0123456789abcdef" * 4)]


def test_a_stalled_reader_gets_drops_and_a_bounded_catch_up(monkeypatch):
    import uvloop

    batches: list[int] = []
    original = TapSubscription.drain_lines

    def recorded(self: TapSubscription, most: int = 0) -> bytes:
        out = original(self, most)
        batches.append(out.count(b"\n"))
        return out

    monkeypatch.setattr(TapSubscription, "drain_lines", recorded)

    async def main() -> None:
        server = ProxyServer(ProxyConfig(outbound=None))
        await server.start()
        hub = server.rt.tap
        host, _, port = server.addresses["tap"].rpartition(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        body = json.dumps({"max_rps": 0}).encode()
        await loop.sock_sendall(sock, b"POST /tap HTTP/1.1\r\nhost: t\r\ncontent-length: %d"
                                      b"\r\n\r\n%s" % (len(body), body))
        got = b""
        while b"started" not in got:
            got += await loop.sock_recv(sock, 65536)
        (sub,) = hub.subs
        # the reader stops reading; the proxy goes on publishing 60 000 events
        for i in range(20_000):
            ex = tap_request(hub, conn_id=1, stream=i, direction="inbound", src="a:1", dst="b:2",
                             tls="no_identity", method="GET", scheme="http", authority="web",
                             path=f"/r/{i}", headers=HEADERS)
            assert ex is not None
            ex.response(200, HEADERS, 100)
            ex.end(duration_us=10, response_bytes=100)
            if i % 200 == 0:
                await asyncio.sleep(0)
        assert len(sub.events) <= sub.queue_max and sub.lost > 0
        lost = sub.lost
        # it reads again: the backlog arrives, in batches of TAP_BATCH events at most,
        # and a stats line reports what it missed
        seen = b""
        stats = None
        deadline = loop.time() + 30
        while stats is None and loop.time() < deadline:
            seen = seen[-65536:] + await loop.sock_recv(sock, 1 << 20)
            for line in seen.split(b"\r\n"):
                if line.startswith(b'{"type": "stats"'):
                    stats = json.loads(line)
        assert stats is not None and stats["dropped"] >= lost
        assert batches and max(batches) <= admin.TAP_BATCH, max(batches)
        sock.close()
        for _ in range(200):
            if not hub.subs:
                break
            await asyncio.sleep(0.01)
        assert not hub.subs and not hub.active
        server.shutdown()
        await server.drain()

    uvloop.run(main())
