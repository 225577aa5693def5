"""Browser tests: a real `shoal demo` (control plane, meshed app, load) and Debian's
Chromium driven by Playwright. Every page a test opens must log no console error and
open no dialog; screenshots of every page land in artifacts/screenshots/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import SHOAL, wait_for

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-quic", "--disable-dev-shm-usage"]
NS = "shoalvoto"


@dataclass
class Demo:
    home: Path
    url: str
    token: str

    def api(self, path: str, **params: str) -> object:
        r = httpx.get(self.url + path, params=params, trust_env=False, timeout=30,
                      headers={"authorization": f"Bearer {self.token}"})
        r.raise_for_status()
        return r.json()

    def ticket(self) -> str:
        r = httpx.post(self.url + "/api/v1/dashboard/tickets", json={}, trust_env=False,
                       headers={"authorization": f"Bearer {self.token}"}, timeout=30)
        return str(r.json()["path"])


def _shoal(home: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHOAL_HOME": str(home)}
    return subprocess.run([SHOAL, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    home = tmp_path_factory.mktemp("e2e") / "home"
    r = _shoal(home, "demo", "--detach", "--api", "127.0.0.1:0", "--scrape-interval", "1s",
               "--rate", "10")
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert re.search(r"dashboard:  http://127\.0\.0\.1:\d+/login\?ticket=", r.stdout)
        info = json.loads((home / "control.json").read_text())
        d = Demo(home, info["url"], (home / "token").read_text().strip())
        # every deployment that serves has had traffic before the browser looks
        wait_for(lambda: all(row["rps"] for row in d.api(
            "/api/v1/stat", resource="deployment", namespace=NS)
            if row["name"] in ("web", "emoji", "voting")), timeout=90,
            what="traffic in the demo")
        yield d
    finally:
        _shoal(home, "demo", "--down", timeout=120)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    # module scope, not session: Playwright's sync API keeps an event loop running in
    # this thread while it is up, and other tests on this worker call asyncio.run()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def session_state(browser, demo, tmp_path_factory) -> str:
    """Cookies of a browser signed in with a one-time link."""
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(demo.url + demo.ticket())
    assert "/login" not in page.url
    path = str(tmp_path_factory.mktemp("state") / "state.json")
    ctx.storage_state(path=path)
    ctx.close()
    return path


class Console:
    def __init__(self) -> None:
        self.errors: list[str] = []


@pytest.fixture
def page(browser, session_state, demo) -> Iterator[object]:
    ctx = browser.new_context(storage_state=session_state,
                              viewport={"width": 1440, "height": 960})
    pg = ctx.new_page()
    console = Console()
    pg.on("console", lambda m: m.type == "error" and console.errors.append(m.text))
    pg.on("pageerror", lambda e: console.errors.append(f"page error: {e}"))

    def dialog(d: object) -> None:
        console.errors.append(f"dialog opened: {d.message}")  # type: ignore[attr-defined]
        d.dismiss()  # type: ignore[attr-defined]

    pg.on("dialog", dialog)
    pg.console = console  # type: ignore[attr-defined]
    pg.base = demo.url  # type: ignore[attr-defined]
    yield pg
    errors = list(console.errors)
    ctx.close()
    assert not errors, errors


def shot(page: object, name: str) -> None:
    """Save a full-page screenshot as a test artefact."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    time.sleep(0.3)  # let charts and the graph finish their last frame
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]
