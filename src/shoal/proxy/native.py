"""The proxy modules compiled with mypyc, and the guard that keeps them honest.

The per-request path (``http1`` and what it calls for every exchange) is compiled to
C by mypyc when the package is built (``setup.py``, ADR 11); the source stays the
truth. mypyc builds these modules as one group whose compiled code calls across
modules directly, so they are used all compiled or all from source, never mixed:

- ``SHOAL_PURE=1`` in the environment loads them all from source;
- so does a build older than any of their sources (an edit or a checkout after the
  last build), with a warning: a stale build must never run instead of the code
  that is there. ``make`` rebuilds before tests, the demo and benchmarks.

This file is read by ``setup.py`` too, so it imports nothing from shoal.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

#: Compiled modules of ``shoal.proxy``, dependencies before dependents.
COMPILED = ["classify", "latency", "balance", "metrics", "pool", "budget",
            "destination", "routes", "http1", "tls"]

_HERE = Path(__file__).resolve().parent
_PACKAGE = "shoal.proxy"


def _built(name: str, here: Path) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = here / f"{name}{suffix}"
        if path.exists():
            return path
    return None


def stale(here: Path = _HERE) -> list[str]:
    """Compiled modules whose source changed after they were built."""
    out = []
    for name in COMPILED:
        built = _built(name, here)
        if built is not None and built.stat().st_mtime < (here / f"{name}.py").stat().st_mtime:
            out.append(name)
    return out


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Finds the compiled modules' ``.py`` files ahead of their extensions."""

    def find_spec(self, fullname: str, path: object = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != _PACKAGE or name not in COMPILED:
            return None
        return importlib.util.spec_from_file_location(fullname, _HERE / f"{name}.py")


def install() -> None:
    """Called once when ``shoal.proxy`` is imported, before any compiled module."""
    if any(isinstance(f, _SourceFinder) for f in sys.meta_path):
        return
    reason = ""
    if os.environ.get("SHOAL_PURE") == "1":
        reason = "SHOAL_PURE=1"
    else:
        old = stale()
        if old:
            reason = f"built before their source changed ({', '.join(old)})"
            print(f"shoal: warning: native modules {reason}: running them from source; "
                  "rebuild with `make venv` (or pip install -e .)", file=sys.stderr)
    if reason:
        sys.meta_path.insert(0, _SourceFinder())


def status() -> str:
    """``compiled`` when every listed module runs as mypyc-built code, ``pure`` when
    none does, ``mixed`` otherwise (a module added to the list since the last build)."""
    loaded = [importlib.import_module(f"{_PACKAGE}.{name}") for name in COMPILED]
    native = [not str(getattr(m, "__file__", "")).endswith(".py") for m in loaded]
    if all(native):
        return "compiled"
    return "pure" if not any(native) else "mixed"
