"""Terminating mTLS on the inbound listener, after detection has read the ClientHello.

asyncio's ``start_tls`` cannot be handed bytes already read, so the server side of a
proxy-to-proxy connection runs ``ssl.SSLObject`` over memory BIOs: ``TlsServer`` is
the protocol of the raw connection and also the transport its inner protocol sees.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from collections.abc import Callable
from typing import Any


def client_hello_sni(buf: bytes) -> str | None | bool:
    """The SNI of a TLS ClientHello; None without SNI; False: need more bytes.

    >>> client_hello_sni(b"\\x16\\x03\\x01")
    False
    """
    if len(buf) < 5:
        return False
    length = struct.unpack_from("!H", buf, 3)[0]
    if len(buf) < 5 + length:
        return False
    try:
        p = 5
        if buf[p] != 1:
            return None
        p += 4 + 2 + 32
        p += 1 + buf[p]                                  # session id
        p += 2 + struct.unpack_from("!H", buf, p)[0]     # cipher suites
        p += 1 + buf[p]                                  # compression methods
        end = p + 2 + struct.unpack_from("!H", buf, p)[0]
        p += 2
        while p + 4 <= end:
            ext, size = struct.unpack_from("!HH", buf, p)
            p += 4
            if ext == 0:  # server_name
                q = p + 2
                if buf[q] == 0:
                    n = struct.unpack_from("!H", buf, q + 1)[0]
                    return buf[q + 3:q + 3 + n].decode("ascii", "replace")
            p += size
    except (IndexError, struct.error):
        return None
    return None


class TlsServer(asyncio.Protocol):
    """Raw side: decrypts into ``inner``; facade side: encrypts what ``inner`` writes."""

    def __init__(self, ctx: ssl.SSLContext, on_ready: Callable[[TlsServer, str], None],
                 on_error: Callable[[str], None]) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.sslobj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.on_ready = on_ready
        self.on_error = on_error
        self.raw: Any = None
        self.inner: asyncio.Protocol | None = None
        self.handshaken = False
        self.closing = False
        self.peer_closed = False  # the peer's close_notify was read
        self.peer_id = ""

    # -- raw connection ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = transport

    def data_received(self, data: bytes) -> None:
        self.incoming.write(data)
        if not self.handshaken:
            try:
                self.sslobj.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                return
            except (ssl.SSLError, OSError) as e:
                self._flush()
                self.on_error(getattr(e, "reason", None) or type(e).__name__)
                self.raw.close()
                return
            self.handshaken = True
            self._flush()
            from .identity import peer_identity

            self.peer_id = peer_identity(self.sslobj.getpeercert())
            self.on_ready(self, self.peer_id)
        self._read()

    def _read(self) -> None:
        while self.inner is not None:
            try:
                chunk = self.sslobj.read(16384)  # at most one TLS record's plaintext
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                chunk = b""
            except (ssl.SSLError, OSError) as e:
                self.on_error(getattr(e, "reason", None) or type(e).__name__)
                self.raw.abort()
                break
            if not chunk:
                # The peer's close_notify (CPython's read returns b"" for it): end the
                # inner stream and answer with ours, or the peer waits for it until
                # its shutdown timeout with the connection held open.
                if not self.peer_closed:
                    self.peer_closed = True
                    if self.inner.eof_received() is not True:
                        self.close()
                break
            self.inner.data_received(chunk)
            if not self.incoming.pending and not self.sslobj.pending():
                break  # all read: skip the SSLWantReadError another read would raise
        self._flush()

    def eof_received(self) -> bool | None:
        if self.inner is not None:
            return self.inner.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data and self.raw is not None and not self.raw.is_closing():
            self.raw.write(data)

    # -- transport facade for the inner protocol ---------------------------------

    def write(self, data: bytes) -> None:
        if self.closing:
            return
        self.sslobj.write(data)
        self._flush()

    def writelines(self, parts: list[bytes]) -> None:
        self.write(b"".join(parts))

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        try:
            self.sslobj.unwrap()
        except (ssl.SSLError, OSError):
            pass
        self._flush()
        self.raw.close()

    def abort(self) -> None:
        self.closing = True
        self.raw.abort()

    def is_closing(self) -> bool:
        return self.closing or self.raw.is_closing()

    def pause_reading(self) -> None:
        self.raw.pause_reading()

    def resume_reading(self) -> None:
        self.raw.resume_reading()

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS streams close with close_notify")

    def set_protocol(self, protocol: asyncio.Protocol) -> None:
        self.inner = protocol

    def get_protocol(self) -> asyncio.Protocol | None:
        return self.inner

    def get_write_buffer_size(self) -> int:
        return int(self.raw.get_write_buffer_size())

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peercert":
            return self.sslobj.getpeercert()
        if name == "ssl_object":
            return self.sslobj
        if name == "peer_identity":
            return self.peer_id
        return self.raw.get_extra_info(name, default)
