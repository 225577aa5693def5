"""HTTP/2 glue shared by both ends of a forwarded stream: h2 in, bytes out, flow control.

Theory of operation. A forwarded stream has two ``Outbox`` es, one per direction.
Bytes received on one connection (the *source*) are pushed into the outbox of the
other connection (the *destination*) and handed to the destination's h2 connection
only as far as its flow-control window allows. Only then are they acknowledged to the
source (``acknowledge_received_data``), which is what lets the source's sender send
more. So a slow receiver closes the sender's window instead of growing our buffers:
per stream we hold at most the window we granted. A destination whose transport is
paused (``pause_writing``) counts as a closed window, which stalls only the streams
writing to it, not every stream that shares their source connection.

Writes are batched: handlers mark the connections they produced frames for, and the
``Hub`` writes each marked connection once when the batch ends.
"""

from __future__ import annotations

import asyncio
import errno as errno_mod
from collections import deque
from typing import TYPE_CHECKING, Protocol

from h2.config import H2Configuration
from h2.connection import (
    ConnectionInputs,
    ConnectionState,
    H2Connection,
    H2ConnectionStateMachine,
)
from h2.exceptions import H2Error
from h2.settings import SettingCodes, Settings

if TYPE_CHECKING:
    from .metrics import TcpStats

#: Stream window we grant; at most this much is buffered per stream and direction.
STREAM_WINDOW = 256 << 10
#: Connection window we grant. Much larger than a stream's: a connection to an app
#: carries the streams of many clients, and a few slow clients (each stalling at most
#: a stream window) must not exhaust it for the others.
CONNECTION_WINDOW = 64 * STREAM_WINDOW
#: Bytes queued on a paused transport beyond which we stop reading its peer.
FLOOD_LIMIT = 4 << 20
#: Largest header block we accept, as h2's default.
MAX_HEADER_LIST = 1 << 16

Headers = list[tuple[bytes, bytes]]


class LingeringStateMachine(H2ConnectionStateMachine):
    """h2's connection state machine, except that a received GOAWAY does not close it.

    After GOAWAY the streams up to its last_stream_id are still answered (RFC 9113
    6.8), but h2 refuses every later frame, even in the same read as the GOAWAY.
    We stop opening streams ourselves when GOAWAY arrives.
    """

    _transitions = {
        **H2ConnectionStateMachine._transitions,
        (ConnectionState.IDLE, ConnectionInputs.RECV_GOAWAY): (None, ConnectionState.IDLE),
        (ConnectionState.CLIENT_OPEN, ConnectionInputs.RECV_GOAWAY):
            (None, ConnectionState.CLIENT_OPEN),
        (ConnectionState.SERVER_OPEN, ConnectionInputs.RECV_GOAWAY):
            (None, ConnectionState.SERVER_OPEN),
    }


def h2_connection(config: H2Configuration) -> H2Connection:
    conn = H2Connection(config)
    conn.state_machine = LingeringStateMachine()
    return conn


class OutboxOwner(Protocol):
    def outbox_ended(self, box: Outbox) -> None: ...


class Hub:
    """The connections with frames to write once the current batch of events is handled."""

    __slots__ = ("dirty",)

    def __init__(self) -> None:
        self.dirty: list[H2Peer] = []

    def flush(self) -> None:
        dirty = self.dirty
        while dirty:
            batch = dirty[:]
            dirty.clear()
            for peer in batch:
                peer.write_out()


class H2Peer(asyncio.Protocol):
    """One h2 connection and its transport; subclasses handle its events."""

    conn: H2Connection

    def __init__(self, hub: Hub, tcp: TcpStats) -> None:
        self.hub = hub
        self.tcp = tcp
        self.transport: asyncio.Transport | None = None
        self.paused = False          # our transport asked us to stop writing
        self.reading_paused = False
        self.closed = False
        self.marked = False
        # outboxes waiting for window or for resume_writing on this connection
        self.blocked: set[Outbox] = set()

    def start_h2(self, extra: dict[SettingCodes, int] | None = None,
                 max_header_list: int = MAX_HEADER_LIST) -> None:
        """Queue our preface and SETTINGS, granting the big windows."""
        conn = self.conn
        conn.local_settings = Settings(client=conn.config.client_side, initial_values={
            SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            SettingCodes.MAX_HEADER_LIST_SIZE: max_header_list,
            **(extra or {})})
        conn.decoder.max_header_list_size = max_header_list
        conn.initiate_connection()
        conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.mark()

    def mark(self) -> None:
        if not self.marked:
            self.marked = True
            self.hub.dirty.append(self)

    def write_out(self) -> None:
        self.marked = False
        data = self.conn.data_to_send()
        if data and not self.closed and self.transport is not None:
            self.tcp.write_bytes += len(data)
            self.transport.write(data)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
        self.retry_blocked()
        self.hub.flush()

    def check_flood(self) -> None:
        """Called after reading while our writes are paused.

        DATA stops at the flow-control windows, but h2 answers PING and SETTINGS by
        itself; a peer that sends those and never reads would grow our write buffer
        without bound. Stop reading it until it drains.
        """
        t = self.transport
        if t is not None and not self.reading_paused and t.get_write_buffer_size() > FLOOD_LIMIT:
            self.reading_paused = True
            t.pause_reading()

    def retry_blocked(self) -> None:
        """Window opened or transport drained: move buffered bytes on."""
        if self.blocked:
            boxes = list(self.blocked)
            self.blocked.clear()
            for box in boxes:
                box.flush()

    def reset(self, sid: int, code: int) -> None:
        """RST_STREAM ``sid`` unless it is already closed."""
        if self.closed:
            return
        try:
            self.conn.reset_stream(sid, code)
        except H2Error:
            return
        self.mark()


class Outbox:
    """Bytes on their way into stream ``sid`` of ``dst``, acknowledged to ``src`` when sent."""

    __slots__ = ("owner", "dst", "sid", "src", "src_sid", "chunks", "size", "sent",
                 "end", "trailers", "ended")

    def __init__(self, owner: OutboxOwner, dst: H2Peer | None = None, sid: int = 0,
                 src: H2Peer | None = None, src_sid: int = 0) -> None:
        self.owner = owner
        self.dst = dst
        self.sid = sid
        self.src = src
        self.src_sid = src_sid
        self.chunks: deque[bytes] = deque()
        self.size = 0          # bytes buffered, not yet acknowledged to src
        self.sent = 0          # bytes handed to dst so far
        self.end = False       # the source ended the stream (after chunks and trailers)
        self.trailers: Headers | None = None
        self.ended = False     # end of stream sent to dst, or discarded

    def push(self, data: bytes) -> None:
        if self.ended:
            self.ack(len(data))
            return
        self.chunks.append(data)
        self.size += len(data)
        if len(self.chunks) == 1:
            self.flush()

    def ack(self, n: int) -> None:
        src = self.src
        if src is not None and n and not src.closed:
            try:
                src.conn.acknowledge_received_data(n, self.src_sid)
            except H2Error:
                return
            src.mark()

    def flush(self) -> None:
        dst = self.dst
        if dst is None or self.ended:
            return
        if dst.paused or dst.closed:
            if not dst.closed:
                dst.blocked.add(self)
            return
        conn = dst.conn
        sid = self.sid
        chunks = self.chunks
        sent = 0
        try:
            while chunks:
                window = conn.local_flow_control_window(sid)
                if window <= 0:
                    dst.blocked.add(self)
                    break
                chunk = chunks[0]
                size = len(chunk)
                limit = min(window, conn.max_outbound_frame_size)
                if size <= limit:
                    chunks.popleft()
                    conn.send_data(sid, chunk)
                else:
                    conn.send_data(sid, chunk[:limit])
                    chunks[0] = chunk[limit:]
                    size = limit
                sent += size
            if not chunks and self.end:
                if self.trailers:
                    conn.send_headers(sid, self.trailers, end_stream=True)
                else:
                    conn.end_stream(sid)
                self.ended = True
        except H2Error:
            # the destination stream is gone (reset or closed): drop what is left
            self.size -= sent
            self.discard()
            dst.mark()
            self.owner.outbox_ended(self)
            return
        if sent:
            self.size -= sent
            self.sent += sent
            self.ack(sent)
            dst.mark()
        if self.ended:
            dst.mark()
            self.owner.outbox_ended(self)

    def discard(self) -> None:
        """Give up on this direction: acknowledge what is buffered so windows stay open."""
        self.ended = True
        self.chunks.clear()
        n, self.size = self.size, 0
        self.ack(n)
        if self.dst is not None:
            self.dst.blocked.discard(self)


def errno_name(exc: BaseException | None) -> str:
    """``""`` for a clean close, else the errno's symbolic name (``ECONNRESET``)."""
    if exc is None:
        return ""
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno_mod.errorcode.get(exc.errno, str(exc.errno))
    return "EIO"

