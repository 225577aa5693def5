"""The mypyc-compiled proxy modules: built for the suite, never stale, pure on request."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shoal.proxy import native

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(os.environ.get("SHOAL_PURE") == "1", reason="pure Python asked for")
def test_the_suite_runs_the_compiled_modules() -> None:
    # `make test` builds them first; a silent compile failure must not pass unseen.
    assert native.status() == "compiled", "run `make venv` to build the native modules"
    import shoal.proxy.http1 as http1

    assert not http1.__file__.endswith(".py")


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, **env})


def test_pure_python_on_request_forwards_the_same_exchange() -> None:
    code = ("from shoal.proxy import native\n"
            "from bench import http1_cost as h\n"
            "down, up, dt, ut = h.build()\n"
            "down.data_received(h.REQUESTS['curl'])\n"
            "assert ut.take().startswith(b'GET /api/items?id=7 HTTP/1.1')\n"
            "up.data_received(h.RESPONSES['chunked'])\n"
            "got = dt.take()\n"
            "assert got.startswith(b'HTTP/1.1 200 OK') and got.endswith(b'0\\r\\n\\r\\n'), got\n"
            "print(native.status())\n")
    proc = _run(code, SHOAL_PURE="1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "pure"


def test_a_build_older_than_its_source_is_stale(tmp_path: Path) -> None:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for name in native.COMPILED:
        (tmp_path / f"{name}.py").write_text("")
        (tmp_path / f"{name}{suffix}").write_bytes(b"")
        os.utime(tmp_path / f"{name}.py", (1_000, 1_000))
    assert native.stale(tmp_path) == []
    os.utime(tmp_path / "http1.py", (2_000_000_000, 2_000_000_000))
    assert native.stale(tmp_path) == ["http1"]
    (tmp_path / f"metrics{suffix}").unlink()  # not built at all: nothing stale about it
    os.utime(tmp_path / "metrics.py", (2_000_000_000, 2_000_000_000))
    assert native.stale(tmp_path) == ["http1"]
