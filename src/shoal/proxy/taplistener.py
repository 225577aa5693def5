"""The tap listener's door: plaintext from loopback, mTLS from the control plane.

One port serves both. Each accepted connection's first byte is peeked, not read
(``MSG_PEEK``): 0x16 opens a TLS handshake, which the event loop then runs natively
on the untouched socket (``connect_accepted_socket``); anything else is plaintext
HTTP. Who may tap is decided per request by ``refusal`` (the handler answers 403
with the reason): plaintext only from a loopback peer, TLS only with a certificate
of the mesh CA for the control plane's identity (``--tap-client-id``). A handshake
that fails (a certificate of another CA, a client that gives up) closes the
connection. Every refusal is one ``proxy_errors_total{direction="tap"}`` count and
one log line (rate-limited), and never disturbs other connections.

    listener = await TapListener.bind(rt, ("0.0.0.0", 4190), http_server.handle)
    listener.close()
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable

from .config import Addr
from .runtime import Runtime

log = logging.getLogger("shoal.proxy.tap")

TLS_HANDSHAKE = 0x16
#: seconds a new connection gets to send its first byte, then to finish TLS
FIRST_BYTE_TIMEOUT = 10.0
HANDSHAKE_TIMEOUT = 10.0
READ_LIMIT = 64 * 1024

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def refusal(loopback: bool, tls: bool, client_id: str, allowed_id: str) -> str:
    """Why this caller may not tap ("" when it may): the ``error`` label counted.

    >>> refusal(True, False, "", "cp"), refusal(False, False, "", "cp")
    ('', 'plaintext_refused')
    >>> refusal(False, True, "cp", "cp"), refusal(False, True, "web", "cp")
    ('', 'client_identity_refused')
    >>> refusal(True, True, "", "cp")
    'client_cert_missing'
    """
    if not tls:
        return "" if loopback else "plaintext_refused"
    if not client_id:
        return "client_cert_missing"
    return "" if client_id == allowed_id else "client_identity_refused"


class TapListener:
    """Accepts tap connections, sorts TLS from plaintext, hands streams to ``serve``."""

    def __init__(self, rt: Runtime, sock: socket.socket, serve: Serve) -> None:
        self.rt = rt
        self.sock = sock
        self.serve = serve
        self.sockets = [sock]
        self.pending: set[asyncio.Task[None]] = set()
        self._accepting: asyncio.Task[None] | None = None

    @classmethod
    async def bind(cls, rt: Runtime, addr: Addr, serve: Serve) -> TapListener:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(addr[0], addr[1], type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self = cls(rt, sock, serve)
        self._accepting = loop.create_task(self._accept(), name="tap-accept")
        return self

    def close(self) -> None:
        """Stop accepting and drop connections not yet handed over; served streams are
        the HTTP server's to close (``HttpServer.close_clients``)."""
        if self._accepting is not None:
            self._accepting.cancel()
            self._accepting = None
        for task in list(self.pending):
            task.cancel()
        self.sock.close()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(self.sock)
            except (ConnectionAbortedError, InterruptedError):
                continue
            except OSError as e:
                if e.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                # out of descriptors: let others finish rather than spin
                log.warning("tap listener cannot accept error=%s", errno.errorcode[e.errno])
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            task = loop.create_task(self._connection(conn, str(peer[0])),
                                    name=f"tap-connection {peer[0]}")
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)

    async def _connection(self, conn: socket.socket, peer: str) -> None:
        try:
            first = await _peek(conn)
        except (OSError, TimeoutError):
            first = b""
        if not first:
            conn.close()
            return
        ctx: ssl.SSLContext | None = None
        if first[0] == TLS_HANDSHAKE:
            creds = self.rt.credentials()
            ctx = creds.tap if creds is not None else None
            if ctx is None:  # no certificate (yet): nothing to answer TLS with
                self.rt.connection_error("tap", "tls_unavailable", peer=peer)
                conn.close()
                return
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=READ_LIMIT)
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=ctx,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT if ctx is not None else None)
        except (OSError, ssl.SSLError, TimeoutError) as e:
            # a certificate of another CA, a plaintext client that sent 0x16, a stall
            reason = getattr(e, "reason", None) or type(e).__name__
            self.rt.connection_error("tap", "tls_handshake_failed", peer=peer, reason=reason)
            conn.close()
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        # handed over: the HTTP server tracks (and on shutdown cancels) this task
        task = asyncio.current_task()
        if task is not None:
            self.pending.discard(task)
        await self.serve(reader, writer)


async def _peek(conn: socket.socket) -> bytes:
    """The first byte of ``conn``, left in the socket for whoever reads next."""
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(conn, ready)
    try:
        await asyncio.wait_for(readable, FIRST_BYTE_TIMEOUT)
    finally:
        loop.remove_reader(conn)
    return conn.recv(1, socket.MSG_PEEK)
