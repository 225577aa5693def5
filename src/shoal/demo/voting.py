"""voting: votes per emoji over gRPC, tallied in the ``kv`` server over raw TCP.

Voting for ``:doughnut:`` always fails (as in emojivoto), and about one ``Results``
call in five is slow, so success rate and p99 have something to say. kv is reached
by name through the proxy: a ``CONNECT kv.shoalvoto:6379`` tunnel opened on
``$HTTP_PROXY`` (without one, a plain connection to ``$KV_ADDR``).

Run it as ``python -m shoal.demo.voting`` (listens on ``$PORT``).
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from urllib.parse import urlsplit

KV_ADDR = os.environ.get("KV_ADDR", "kv.shoalvoto:6379")
FAILING = ":doughnut:"


class KvClient:
    """One long-lived line-protocol connection to kv, reopened after an error."""

    def __init__(self, addr: str, proxy: str | None) -> None:
        self.addr, self.proxy = addr, proxy
        self._lock = threading.Lock()
        self._file: socket.SocketIO | None = None
        self._sock: socket.socket | None = None

    def _connect(self) -> None:
        if self.proxy:
            u = urlsplit(self.proxy if "://" in self.proxy else f"http://{self.proxy}")
            sock = socket.create_connection((u.hostname, u.port or 80), timeout=5)
            sock.sendall(f"CONNECT {self.addr} HTTP/1.1\r\nHost: {self.addr}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(1)  # byte by byte: nothing after the head is consumed
                if not chunk:
                    raise OSError("proxy closed the CONNECT tunnel")
                head += chunk
            status = head.split(b"\r\n", 1)[0]
            if b" 200" not in status:
                sock.close()
                raise OSError(f"CONNECT {self.addr}: {status.decode(errors='replace')}")
        else:
            host, port = self.addr.rsplit(":", 1)
            sock = socket.create_connection((host, int(port)), timeout=5)
        self._sock = sock
        self._file = sock.makefile("rwb")  # type: ignore[assignment]

    def call(self, line: str) -> str:
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._file is None:
                        self._connect()
                    assert self._file is not None
                    self._file.write(line.encode() + b"\n")  # type: ignore[attr-defined]
                    self._file.flush()  # type: ignore[attr-defined]
                    got = self._file.readline()  # type: ignore[attr-defined]
                    if not got:
                        raise OSError("kv closed the connection")
                    return got.decode().rstrip("\n")
                except OSError:
                    self.close()
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = self._file = None


def serve(port: int) -> None:
    import grpc

    from shoal.demo.protos import load, serve

    pb2, pb2_grpc = load("voting")
    kv = KvClient(KV_ADDR, os.environ.get("http_proxy") or os.environ.get("HTTP_PROXY"))

    class VotingService(pb2_grpc.VotingServiceServicer):  # type: ignore[misc,name-defined]
        def Vote(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
            if request.shortcode == FAILING:
                context.abort(grpc.StatusCode.UNKNOWN, f"voting for {FAILING} is broken")
            try:
                kv.call(f"INCR {request.shortcode}")
            except OSError as e:
                context.abort(grpc.StatusCode.UNAVAILABLE, f"kv: {e}")
            return pb2.VoteResponse()

        def Results(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
            if random.random() < 0.2:
                time.sleep(random.uniform(0.3, 0.8))  # the slow endpoint
            try:
                line = kv.call("SCAN")
            except OSError as e:
                context.abort(grpc.StatusCode.UNAVAILABLE, f"kv: {e}")
            pairs = [w.rsplit("=", 1) for w in line.lstrip("*").split()]
            return pb2.ResultsResponse(results=[
                pb2.VotingResult(shortcode=k, votes=int(v)) for k, v in pairs])

    serve(pb2_grpc.add_VotingServiceServicer_to_server, VotingService(), port)


if __name__ == "__main__":
    serve(int(os.environ.get("PORT", "8080")))
