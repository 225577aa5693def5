"""The opaque TCP pipe joins its two sides without losing what either sent first."""

import asyncio
import types

from shoal.proxy.destination import Endpoint
from shoal.proxy.metrics import TcpStats, TrafficStats
from shoal.proxy.tcp import TcpDownstream


class FakeTransport(asyncio.Transport):
    """The accepted connection's transport, recording what the proxy writes to it."""

    def __init__(self) -> None:
        super().__init__()
        self.out = b""
        self.eof = False
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out += data

    def write_eof(self) -> None:
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


def test_a_greeting_sent_before_the_pipe_is_joined_reaches_the_client():
    """A server that speaks first (SMTP, MySQL) may greet before the proxy's connect
    returns; the greeting must wait for the client, not be dropped."""

    async def main() -> tuple[bytes, bool]:
        async def greeter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"220 hello\r\n")
            writer.write_eof()
            await writer.drain()

        server = await asyncio.start_server(greeter, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()[:2]
        loop = asyncio.get_running_loop()
        connect = loop.create_connection

        async def slow_connect(*args, **kwargs):  # the greeting lands before we go on
            got = await connect(*args, **kwargs)
            await asyncio.sleep(0.3)
            return got

        loop.create_connection = slow_connect  # type: ignore[method-assign]
        ep = Endpoint(addr, {}, None, TrafficStats(()), TcpStats(()))
        side = types.SimpleNamespace(src_tcp=TcpStats(()), direction="inbound",
                                     fixed_authority=lambda: "", endpoint=lambda _a: ep)
        errors: list[tuple] = []
        rt = types.SimpleNamespace(
            connections=set(), credentials=lambda: None,
            config=types.SimpleNamespace(connect_timeout=10.0),
            connection_error=lambda *a, **k: errors.append((a, k)))
        down = TcpDownstream(rt, side, 1)  # type: ignore[arg-type]
        client = FakeTransport()
        down.connection_made(client)
        assert down.task is not None
        await down.task
        server.close()
        return client.out, client.eof

    out, eof = asyncio.run(main())
    assert out == b"220 hello\r\n"
    assert eof  # the server's half-close reached the client too
