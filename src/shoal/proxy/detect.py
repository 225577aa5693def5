"""Protocol detection: read once, decide, replay what was read to the chosen handler.

Why detection favours availability: a connection whose first bytes are not HTTP is
forwarded as opaque TCP, and one that sends nothing within ``detect_timeout`` (a
server-speaks-first protocol) is forwarded as opaque TCP too, rather than refused.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from enum import Enum

from .runtime import Runtime
from .sides import Side
from .tls import client_hello_sni

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: Longest method token we wait for before deciding the bytes are not HTTP/1.
_MAX_METHOD = 24
#: Bytes read before giving up on a decision (a request line longer than this is
#: forwarded as opaque bytes).
MAX_DETECT_BYTES = 16 * 1024

_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class Kind(Enum):
    HTTP1 = "http1"
    HTTP2 = "http2"
    OPAQUE = "opaque"


def detect(buf: bytes) -> Kind | None:
    """The protocol of a connection that started with ``buf``; None: read more.

    >>> detect(b"GET / HTTP/1.1\\r\\n"), detect(H2_PREFACE), detect(b"\\x16\\x03\\x01")
    (<Kind.HTTP1: 'http1'>, <Kind.HTTP2: 'http2'>, <Kind.OPAQUE: 'opaque'>)
    >>> detect(b"GE"), detect(b"GET /pa"), detect(b"SET key value\\r\\n")
    (None, None, <Kind.OPAQUE: 'opaque'>)
    """
    n = len(buf)
    if n == 0:
        return None
    if n < 24:
        if H2_PREFACE.startswith(buf):
            return None
    elif buf.startswith(H2_PREFACE):
        return Kind.HTTP2
    # HTTP/1: a request line "TOKEN SP target SP HTTP/1.x" (a Redis "SET k v" is not).
    space = -1
    for i in range(min(n, _MAX_METHOD + 1)):
        c = buf[i]
        if c == 0x20:
            space = i
            break
        if c not in _TOKEN:
            return Kind.OPAQUE
    if space <= 0:
        return Kind.OPAQUE if space == 0 or n > _MAX_METHOD else None
    nl = buf.find(b"\n", space)
    if nl < 0:
        return None if n < MAX_DETECT_BYTES else Kind.OPAQUE
    line = buf[:nl].rstrip(b"\r")
    return Kind.HTTP1 if line[-8:] in (b"HTTP/1.1", b"HTTP/1.0") else Kind.OPAQUE


class Detect(asyncio.Protocol):
    """The first protocol of every accepted connection: picks the real one.

    ``secure`` marks the plaintext inside a terminated mTLS connection; ``counted``
    a tunnel whose connection was already counted (CONNECT). On the inbound side,
    a ClientHello naming this proxy's identity is terminated here and detection
    runs again inside; any other TLS is forwarded as opaque bytes.
    """

    def __init__(self, runtime: Runtime, side_factory: Callable[[], Side | None],
                 counted: bool = False, secure: bool = False) -> None:
        self.runtime = runtime
        self.side_factory = side_factory
        self.counted = counted
        self.secure = secure
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.side: Side | None = None
        self.started = time.monotonic()
        self.done = False

    # Tracked (for the sweeper and shutdown)
    def busy(self) -> bool:
        return False

    def close_idle(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def tick(self, now: float) -> None:
        if not self.done and now - self.started >= self.runtime.config.detect_timeout:
            self.decide(Kind.OPAQUE)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        assert self.transport is not None
        rt = self.runtime
        if (not self.counted and not self.secure
                and len(rt.connections) >= rt.config.max_connections):
            rt.connection_error("inbound", "connection_limit",
                                limit=rt.config.max_connections)
            self.done = True
            self.transport.abort()
            return
        side = self.side_factory()
        if side is None:
            self.done = True
            self.transport.close()
            return
        self.side = side
        rt.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        self.buf += data
        buf = self.buf
        if (buf[0] == 0x16 and not self.secure and self.side is not None
                and self.side.direction == "inbound" and self.runtime.credentials()):
            sni = client_hello_sni(buf)
            if sni is False and len(buf) < MAX_DETECT_BYTES:
                return  # the rest of the ClientHello
            creds = self.runtime.credentials()
            if creds is not None and sni == creds.name:
                self.terminate_tls(creds.server)
                return
            self.decide(Kind.OPAQUE)
            return
        kind = detect(buf)
        if kind is None and len(buf) >= MAX_DETECT_BYTES:
            kind = Kind.OPAQUE
        if kind is not None:
            self.decide(kind)

    def eof_received(self) -> bool | None:
        if not self.done:
            if self.buf:
                self.decide(Kind.OPAQUE, eof=True)
                return True
            self.done = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.runtime.connections.discard(self)
        if not self.done and self.side is not None:
            self.done = True
            if not self.counted:
                self.side.src_tcp.connection_opened()
            self.side.src_tcp.read_bytes += len(self.buf)
            self.side.src_tcp.connection_closed("")

    def decide(self, kind: Kind, eof: bool = False) -> None:
        """Plaintext decided: refuse it under strict mTLS, else hand it off."""
        rt, side = self.runtime, self.side
        assert side is not None and self.transport is not None
        if (side.direction == "inbound" and not self.secure
                and rt.config.mtls == "strict"):
            self.done = True
            rt.connections.discard(self)
            side.src_tcp.connection_opened()
            rt.connection_error("inbound", "plaintext_refused", peer=_peer(self.transport),
                                reason="mtls_strict")
            self.transport.abort()
            side.src_tcp.connection_closed("ECONNREFUSED")
            return
        self.handoff(kind, eof)

    def terminate_tls(self, ctx: ssl.SSLContext) -> None:
        from .sides import InboundSide
        from .tls import TlsServer

        self.done = True
        rt, transport = self.runtime, self.transport
        assert transport is not None
        rt.connections.discard(self)

        def ready(tls: TlsServer, peer_id: str) -> None:
            from .identity import peer_workload

            labels = {"tls": "true", "client_id": peer_id or "unknown"}
            caller = peer_workload(tls.get_extra_info("peercert"))
            inner = Detect(rt, lambda: InboundSide(rt, labels, caller), secure=True)
            tls.set_protocol(inner)
            inner.connection_made(tls)  # type: ignore[arg-type]

        def failed(reason: str) -> None:
            rt.connection_error("inbound", "tls_handshake_failed", peer=_peer(transport),
                                reason=reason)

        tls = TlsServer(ctx, ready, failed)
        transport.set_protocol(tls)
        tls.connection_made(transport)
        tls.data_received(self.buf)

    def handoff(self, kind: Kind, eof: bool = False) -> None:
        from .http1 import Http1Downstream
        from .tcp import TcpDownstream

        self.done = True
        rt, side, transport = self.runtime, self.side, self.transport
        assert side is not None and transport is not None
        rt.connections.discard(self)
        if not self.counted:
            side.src_tcp.connection_opened()
        conn_id = next(rt.conn_ids)
        proto: asyncio.Protocol
        if kind is Kind.HTTP1:
            proto = Http1Downstream(rt, side, conn_id)
        elif kind is Kind.HTTP2:
            from .http2 import H2Downstream

            proto = H2Downstream(rt, side, conn_id)
        else:
            proto = TcpDownstream(rt, side, conn_id)
        transport.set_protocol(proto)
        proto.connection_made(transport)
        if self.buf:
            proto.data_received(self.buf)
        if eof:
            proto.eof_received()


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if peer else ""
