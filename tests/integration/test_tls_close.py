"""Closing an mTLS connection between proxies: the server side (``TlsServer`` over
memory BIOs) answers the client's close_notify at once, on real loopback sockets with
the event loop's own TLS client, so neither side holds the connection open."""

from __future__ import annotations

import asyncio

import uvloop

from shoal.proxy.tls import TlsServer
from tests.unit.test_proxy_identity import A, B, Issuer

# uvloop's client waits this long for the server's close_notify before it aborts; the
# waits below are far shorter, so a server that never answers fails them
CLIENT_SHUTDOWN_TIMEOUT = 30.0
WAIT = 5.0


class Echo(asyncio.Protocol):
    def __init__(self, transport: TlsServer, events: list[str]) -> None:
        self.transport, self.events = transport, events
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if data == b"bye":
            self.transport.close()
        else:
            self.transport.write(data.upper())

    def eof_received(self) -> None:
        self.events.append("eof")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(None)


class Client(asyncio.Protocol):
    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.got, self.lost = loop.create_future(), loop.create_future()

    def data_received(self, data: bytes) -> None:
        if not self.got.done():
            self.got.set_result(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def pair(events: list[str]) -> tuple[asyncio.Transport, Client, list[Echo]]:
    ca = Issuer(1)
    server_ctx, _ = ca.tls_contexts(B)
    _, client_ctx = ca.tls_contexts(A)
    inners: list[Echo] = []

    def ready(tls: TlsServer, peer: str) -> None:
        assert peer == A
        inners.append(Echo(tls, events))
        tls.set_protocol(inners[-1])

    def failed(reason: str) -> None:
        events.append(f"error {reason}")

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: TlsServer(server_ctx, ready, failed),
                                      "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, client = await loop.create_connection(
        Client, "127.0.0.1", port, ssl=client_ctx, server_hostname=B,
        ssl_shutdown_timeout=CLIENT_SHUTDOWN_TIMEOUT)
    transport.write(b"ping")
    assert await asyncio.wait_for(client.got, WAIT) == b"PING"
    return transport, client, inners


def test_client_close_is_answered_and_both_sides_let_go():
    async def main() -> list[str]:
        events: list[str] = []
        transport, client, inners = await pair(events)
        transport.close()
        await asyncio.wait_for(client.lost, WAIT)
        await asyncio.wait_for(inners[0].lost, WAIT)
        return events

    assert uvloop.run(main()) == ["eof", "lost"]


def test_server_close_reaches_the_client():
    async def main() -> list[str]:
        events: list[str] = []
        transport, client, inners = await pair(events)
        transport.write(b"bye")
        assert await asyncio.wait_for(client.lost, WAIT) is None
        await asyncio.wait_for(inners[0].lost, WAIT)
        return events

    assert uvloop.run(main()) == ["lost"]
