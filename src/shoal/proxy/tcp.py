"""Opaque TCP: bytes both ways until either side closes, half-close respected."""

from __future__ import annotations

import asyncio
import errno as errno_mod
import ssl

from .destination import Endpoint
from .metrics import TcpStats
from .runtime import Runtime
from .sides import Side


def errno_name(exc: BaseException | None) -> str:
    """``""`` for a clean close, else the errno's symbolic name (``ECONNRESET``)."""
    if exc is None:
        return ""
    code = getattr(exc, "errno", None)
    if isinstance(code, int):
        return errno_mod.errorcode.get(code, str(code))
    if isinstance(exc, TimeoutError):
        return "ETIMEDOUT"
    return "EIO"


def connect_error(exc: BaseException) -> str:
    """The ``error`` label for a failed upstream connect."""
    if isinstance(exc, ConnectionRefusedError):
        return "connect_refused"
    if isinstance(exc, TimeoutError):
        return "connect_timeout"
    return "connect_error"


class _Pipe(asyncio.Protocol):
    """One side of a byte pipe; ``peer`` is the other side's transport."""

    def __init__(self, stats: TcpStats) -> None:
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.peer: _Pipe | None = None
        self.pending: list[bytes] = []
        self.eof = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.stats.read_bytes += len(data)
        peer = self.peer
        if peer is None or peer.transport is None:
            self.pending.append(data)
            return
        peer.write(data)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.stats.write_bytes += len(data)
        self.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.closed:
            if peer.transport.can_write_eof():
                peer.transport.write_eof()
            if peer.eof:  # both directions done
                peer.transport.close()
                return False
        return True

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.stats.connection_closed(errno_name(exc))
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.closed:
            if exc is None:
                peer.transport.close()
            else:
                peer.transport.abort()


class TcpDownstream(_Pipe):
    """The accepted side: connects to the side's endpoint, then pipes."""

    def __init__(self, runtime: Runtime, side: Side, conn_id: int) -> None:
        super().__init__(side.src_tcp)
        self.runtime = runtime
        self.side = side
        self.conn_id = conn_id
        self.task: asyncio.Task[None] | None = None

    # Tracked
    def busy(self) -> bool:
        return not self.closed

    def close_idle(self) -> None:
        pass  # an opaque stream is never idle as far as we can tell; it drains or is aborted

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def tick(self, now: float) -> None:
        pass

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.runtime.connections.add(self)
        authority = self.side.fixed_authority() or ""
        ep = self.side.endpoint(authority) if (authority or self.side.direction == "inbound") \
            else None
        assert self.transport is not None
        if ep is None:
            self.runtime.connection_error(self.side.direction, "no_route", proto="opaque")
            self.transport.close()
            return
        self.transport.pause_reading()
        self.task = asyncio.get_running_loop().create_task(
            self._connect(ep), name=f"tcp-connect-{self.conn_id}")

    async def _connect(self, ep: Endpoint) -> None:
        loop = asyncio.get_running_loop()
        up = _Pipe(ep.tcp)
        creds = self.runtime.credentials() if ep.identity else None
        try:
            if creds is not None:  # a meshed peer: opaque bytes ride mTLS too
                coro = loop.create_connection(lambda: up, ep.addr[0], ep.addr[1],
                                              ssl=creds.client, server_hostname=ep.identity)
            else:
                coro = loop.create_connection(lambda: up, ep.addr[0], ep.addr[1])
            await asyncio.wait_for(coro, self.runtime.config.connect_timeout)
        except (OSError, TimeoutError, ssl.SSLError) as e:
            self.runtime.connection_error(self.side.direction, "connect_failed",
                                          target=ep.target_addr, reason=errno_name(e))
            if self.transport is not None:
                self.transport.close()
            return
        ep.tcp.connection_opened()
        if self.closed:
            assert up.transport is not None
            up.transport.close()
            return
        up.peer, self.peer = self, up
        for chunk in self.pending:
            up.write(chunk)
        self.pending.clear()
        if self.eof:
            assert up.transport is not None
            up.transport.write_eof()
        # a server that speaks first (SMTP, MySQL...) may have greeted before the
        # pipe was joined: what it sent waits in ``up.pending``
        for chunk in up.pending:
            self.write(chunk)
        up.pending.clear()
        assert self.transport is not None
        if up.closed:  # and already gone
            self.transport.close()
            return
        if up.eof and self.transport.can_write_eof():
            self.transport.write_eof()
        self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.runtime.connections.discard(self)
        super().connection_lost(exc)
        if self.task is not None and not self.task.done():
            self.task.cancel()
