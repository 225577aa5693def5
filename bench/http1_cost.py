"""CPU cost per request of the HTTP/1 data path, in process, without sockets.

Drives an inbound ``Http1Downstream`` and a pooled ``Http1Upstream`` with fake
transports through N keep-alive exchanges (client request in, request head out,
backend response in, response out) and reports the cost per request:

    .venv/bin/python -m bench.http1_cost                 # CPU µs per request
    .venv/bin/python -m bench.http1_cost --callgrind     # instructions per request

``--callgrind`` runs itself twice under ``valgrind --tool=callgrind`` (N and 2N
requests) and divides the difference, so start-up and imports cancel out. The
numbers are deterministic to within a fraction of a percent; compare them before
and after a change rather than across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: What wrk sends, and what the bench backend (nginx ``return 200``) answers.
REQUESTS = {
    "wrk": b"GET / HTTP/1.1\r\nHost: 127.0.0.1:4143\r\n\r\n",
    "curl": (b"GET /api/items?id=7 HTTP/1.1\r\nHost: web.demo:8080\r\n"
             b"User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"),
    "browser": (b"GET /api/items HTTP/1.1\r\nHost: web.demo:8080\r\nConnection: keep-alive\r\n"
                b"User-Agent: Mozilla/5.0\r\nAccept: text/html\r\n"
                b"Accept-Encoding: gzip, deflate\r\nAccept-Language: en\r\n\r\n"),
    "post": (b"POST /items HTTP/1.1\r\nHost: web.demo:8080\r\nContent-Type: application/json\r\n"
             b"Content-Length: 13\r\n\r\n{\"name\": \"x\"}"),
}
_BODY = b"x" * 100
RESPONSES = {
    "nginx": (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n"
              b"Date: Sat, 21 Nov 2026 23:37:00 GMT\r\nContent-Type: text/plain\r\n"
              b"Content-Length: 100\r\nConnection: keep-alive\r\n\r\n" + _BODY),
    "minimal": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + _BODY,
    "chunked": (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n64\r\n" + _BODY + b"\r\n0\r\n\r\n"),
}


class FakeTransport(asyncio.Transport):
    """Collects what the protocol writes; never pushes back."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        self.out.append(b"".join(chunks))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.out)
        self.out.clear()
        return data


def use_http1(path: str) -> None:
    """Load ``shoal.proxy.http1`` from another file (an older version, to compare)."""
    import importlib.util

    import shoal.proxy

    spec = importlib.util.spec_from_file_location("shoal.proxy.http1", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["shoal.proxy.http1"] = module
    spec.loader.exec_module(module)
    shoal.proxy.http1 = module  # type: ignore[attr-defined]


def build(tap: bool = False) -> tuple[Any, Any, FakeTransport, FakeTransport]:
    """An inbound downstream connection and one pooled upstream connection to the app."""
    from shoal.proxy.config import ProxyConfig
    from shoal.proxy.http1 import Http1Downstream, Http1Upstream
    from shoal.proxy.runtime import Runtime
    from shoal.proxy.sides import InboundSide
    from shoal.proxy.tap import TapFilter

    rt = Runtime(ProxyConfig(app=("127.0.0.1", 8080), pod="bench"))
    if tap:
        rt.tap.subscribe(TapFilter.parse({}), max_rps=1e12)
    side = InboundSide(rt)
    down = Http1Downstream(rt, side, 1)
    dt = FakeTransport()
    down.connection_made(dt)
    up = Http1Upstream(rt, side.app)
    ut = FakeTransport()
    up.connection_made(ut)
    rt.pools.put(side.app.addr, up)
    return down, up, dt, ut


def run(n: int, request: bytes, response: bytes, tap: bool = False) -> float:
    """N exchanges; returns CPU seconds spent in them (thread time)."""
    down, up, dt, ut = build(tap)
    # One exchange first, checked, so a broken path cannot pass for a fast one.
    down.data_received(request)
    sent = ut.take()
    assert sent.startswith(request.split(b" ", 1)[0]), sent
    up.data_received(response)
    got = dt.take()
    assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"x" * 100 + (
        b"\r\n0\r\n\r\n" if b"chunked" in response else b"")), got
    assert not dt.closed and not ut.closed
    feed_down, feed_up = down.data_received, up.data_received
    t0 = time.thread_time()
    for _ in range(n):
        feed_down(request)
        feed_up(response)
        if len(dt.out) > 64:
            dt.out.clear()
            ut.out.clear()
    return time.thread_time() - t0


def _callgrind(n: int, args: argparse.Namespace) -> int:
    """Total instructions of one run of this script under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                sys.executable, "-m", "bench.http1_cost", "--n", str(n),
                "--request", args.request, "--response", args.response]
        if args.tap:
            argv.append("--tap")
        if args.http1:
            argv += ["--http1", args.http1]
        # a fixed hash seed: dict probing must not differ between the two runs
        proc = subprocess.run(argv, capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": "0"})
        m = re.search(r"Collected : (\d+)", proc.stderr)
        if proc.returncode != 0 or m is None:
            raise SystemExit(f"callgrind failed:\n{proc.stderr[-2000:]}")
        return int(m.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="exchanges (default 20000)")
    ap.add_argument("--request", choices=sorted(REQUESTS), default="wrk")
    ap.add_argument("--response", choices=sorted(RESPONSES), default="nginx")
    ap.add_argument("--tap", action="store_true", help="with a tap subscription open")
    ap.add_argument("--callgrind", action="store_true",
                    help="instructions per request under valgrind (slow: about a minute)")
    ap.add_argument("--http1", metavar="FILE",
                    help="measure this copy of shoal/proxy/http1.py (e.g. from git show)")
    args = ap.parse_args(argv)
    if args.http1:
        use_http1(args.http1)
    if args.callgrind:
        if shutil.which("valgrind") is None:
            print("valgrind is not installed", file=sys.stderr)
            return 1
        n = min(args.n, 2000)
        base, double = _callgrind(n, args), _callgrind(2 * n, args)
        print(f"{args.request} -> {args.response}{' (tapped)' if args.tap else ''}: "
              f"{(double - base) / n:,.0f} instructions per request")
        return 0
    secs = run(args.n, REQUESTS[args.request], RESPONSES[args.response], args.tap)
    print(f"{args.request} -> {args.response}{' (tapped)' if args.tap else ''}: "
          f"{secs / args.n * 1e6:.2f} µs CPU per request ({args.n} requests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
