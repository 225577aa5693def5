"""`shoal top`: the requests of a resource, aggregated live from tap, busiest first.

On a terminal: a full-screen table (rich's alternate screen) redrawn twice a second;
``q`` quits, ``a``/``d`` or the left/right arrows scroll sideways, up/down scroll rows.
Not on a terminal (``| cat``): a plain table every second, no escape codes.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

import click

from .client import home_option
from .tap import filter_options, resource_arg, tap_request

HELP = ("(press q to quit)",
        "(press a/LeftArrowKey to scroll left, d/RightArrowKey to scroll right)", "")
KEYS = {b"q": "quit", b"Q": "quit", b"a": "left", b"\x1b[D": "left", b"d": "right",
        b"\x1b[C": "right", b"\x1b[A": "up", b"\x1b[B": "down", b"\x03": "quit"}


class Feed:
    """The tap stream, read in a thread into the model (under a lock)."""

    def __init__(self, client: Any, body: dict[str, Any], model: Any) -> None:
        self.model = model
        self.lock = threading.Lock()
        self.error: Exception | None = None
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(client, body), daemon=True,
                                       name="top-feed")
        self.thread.start()

    def _run(self, client: Any, body: dict[str, Any]) -> None:
        from .tap import stream_events

        try:
            for ev in stream_events(client, body):
                with self.lock:
                    self.model.add(ev)
        except Exception as e:  # reported by the main thread
            self.error = e
        finally:
            self.ended.set()

    def snapshot(self) -> str:
        from ._topmodel import render

        with self.lock:
            rows = self.model.rows()
        return render(rows, self.model.routes, self.model.hide_sources)


def view(table: str, width: int, height: int, left: int, top: int) -> list[str]:
    """The visible part of the screen: help lines, header, then rows from ``top``."""
    lines = table.splitlines()
    body = lines[:1] + lines[1 + top:]
    return [ln[left:left + width] for ln in [*HELP, *body]][:height]


def interactive(feed: Feed, interval: float = 0.5) -> None:
    import select
    import termios
    import tty

    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    console = Console(highlight=False)
    left = top = 0
    try:
        tty.setcbreak(fd)
        with Live(console=console, screen=True, auto_refresh=False) as live:
            while True:
                width, height = console.size
                table = feed.snapshot()
                rows = max(0, len(table.splitlines()) - 1)
                top = min(top, max(0, rows - 1))
                live.update(Text("\n".join(view(table, width, height, left, top)),
                                 no_wrap=True, overflow="crop"), refresh=True)
                if feed.error is not None:
                    return
                ready, _, _ = select.select([fd], [], [], interval)
                if not ready:
                    continue
                key = KEYS.get(os.read(fd, 16))
                if key == "quit":
                    return
                step = max(1, width // 4)
                if key == "left":
                    left = max(0, left - step)
                elif key == "right":
                    left += step
                elif key == "up":
                    top = max(0, top - 1)
                elif key == "down":
                    top += 1
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def plain(feed: Feed, interval: float = 1.0) -> None:
    """A snapshot per second, for pipes and logs."""
    while not feed.ended.wait(interval):
        click.echo(feed.snapshot() + "\n")
    if feed.error is None:
        click.echo(feed.snapshot())


@click.command("top")
@home_option
@filter_options
@click.option("--routes", is_flag=True, help="Group by service-profile route, not path.")
@click.option("--hide-sources", is_flag=True, help="Leave out the Source column.")
@click.argument("resource")
@click.argument("name", required=False)
def command(home: Any, namespace: str, to_resource: str | None, to_namespace: str | None,
            method: str | None, path: str | None, authority: str | None,
            scheme: str | None, max_rps: float, routes: bool, hide_sources: bool,
            resource: str, name: str | None) -> None:
    """A live table of the requests of a resource: Source, Destination, Method, Path,
    Count, Best, Worst, Last latency and Success Rate, busiest first.

    \b
    shoal top deploy/web -n emojivoto
    shoal top deploy/web --to deploy/voting --routes
    """
    from shoal.control.errors import ControlError

    from ._topmodel import TopModel
    from .client import Client, fail

    body = tap_request(resource_arg(resource, name), namespace, to_resource=to_resource,
                       to_namespace=to_namespace, method=method, path=path,
                       authority=authority, scheme=scheme, max_rps=max_rps)
    body["headers"] = False
    try:
        client = Client.from_home(home)
        feed = Feed(client, body, TopModel(routes=routes, hide_sources=hide_sources))
        # a bad resource or filter fails now, before the screen is taken over
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not feed.ended.is_set() and not _started(feed):
            time.sleep(0.02)
        if feed.error is None:
            if sys.stdout.isatty() and sys.stdin.isatty():
                interactive(feed)
            else:
                plain(feed)
        if isinstance(feed.error, ControlError):
            raise SystemExit(fail(feed.error))
        if feed.error is not None:
            raise feed.error
    except ControlError as e:
        raise SystemExit(fail(e)) from None
    except (KeyboardInterrupt, BrokenPipeError):
        pass


def _started(feed: Feed) -> bool:
    return bool(getattr(feed.model, "started", False))
