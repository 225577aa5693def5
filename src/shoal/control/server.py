"""Serve the API: bind the socket (port 0 allowed), run uvicorn, publish the address.

``control.json`` is written only once uvicorn accepts connections, and removed on a
clean exit, so its presence with a live pid means "a control plane is listening here".
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket

import uvicorn

from shoal import __version__

from .api import create_app
from .config import ControlConfig, format_addr
from .errors import StateError
from .metrics import Metrics, MetricsConfig
from .plane import ControlPlane
from .state import Home, read_json, write_json

log = logging.getLogger("shoal.control")


def bind(addr: tuple[str, int]) -> socket.socket:
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise StateError(f"cannot listen on {format_addr(addr)}: {e.strerror or e}") from e
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


async def serve(config: ControlConfig, metrics: MetricsConfig | None = None) -> None:
    """Run until SIGTERM/SIGINT; ``shoal control`` and ``shoal up --foreground`` call this."""
    home = Home(config.home).ensure()
    plane = ControlPlane.open(config)
    scraping = Metrics.attach(plane, metrics)
    stop_scraping = asyncio.Event()
    scraper = asyncio.create_task(scraping.run(stop_scraping), name="metrics-scrape-loop")
    sock = bind(config.api)
    api = format_addr(sock.getsockname()[:2])
    server = uvicorn.Server(uvicorn.Config(create_app(plane), log_level="warning",
                                           access_log=False, lifespan="on",
                                           timeout_graceful_shutdown=3))

    async def publish() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.01)
        write_json(home.control, {"api": api, "url": f"http://{api}", "pid": os.getpid(),
                                  "version": __version__}, 0o600)
        log.warning("shoal control plane listening on http://%s", api)

    publisher = asyncio.create_task(publish(), name="publish-address")
    try:
        await server.serve(sockets=[sock])
    finally:
        publisher.cancel()
        stop_scraping.set()
        await asyncio.wait([scraper], timeout=5)
        scraping.close()
        sock.close()
        try:
            current = read_json(home.control, {}) or {}
            if current.get("pid") == os.getpid():
                home.control.unlink(missing_ok=True)
        except StateError:
            pass


def run(config: ControlConfig, metrics: MetricsConfig | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # uvicorn installs its own SIGINT/SIGTERM handlers inside serve(); a SIGHUP from a
    # closed terminal should not kill a detached control plane
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    asyncio.run(serve(config, metrics))
    return 0
