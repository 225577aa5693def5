"""Fixtures shared by every tier: a real app server and real proxy processes."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator

import pytest

from tests.apps import TestApp
from tests.support import ProxyProcess, uvicorn_server

# A suite started in the background (`make test &` from a script) inherits SIGINT
# ignored, and so would every CLI it starts: tests that stop `shoal tap` or `top`
# with Ctrl-C need the default back (children of a handler get SIG_DFL at exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def app() -> Iterator[tuple[TestApp, str]]:
    """(the app, "127.0.0.1:port") served by uvicorn."""
    test_app = TestApp()
    with uvicorn_server(test_app, ws="websockets-sansio") as addr:
        yield test_app, addr


@pytest.fixture
def start_proxy() -> Iterator[Callable[..., ProxyProcess]]:
    """Start `shoal proxy` processes with extra flags; all are stopped after the test."""
    started: list[ProxyProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ProxyProcess:
        p = ProxyProcess(*args, env=env).start()
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()
        if p.stderr_path:
            p.stderr_path.unlink(missing_ok=True)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite tests/golden/*.golden from the current output")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--update-golden"):
        os.environ["SHOAL_UPDATE_GOLDEN"] = "1"
