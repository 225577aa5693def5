"""Build hook: compile the proxy's per-request modules with mypyc (ADR 11).

Everything else about the package is in pyproject.toml. The modules listed in
``shoal/proxy/native.py`` are ordinary, type-checked Python; mypyc turns them into C
extensions that run the same code about twice as fast. Without mypyc or a C
compiler, or with ``SHOAL_PURE=1`` in the environment, the package installs as plain
Python and works the same, only slower (``shoal version`` says which).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "src" / "shoal" / "proxy"))
from native import COMPILED  # noqa: E402  (a plain list, no shoal imports)

sys.path.pop(0)


class LenientBuildExt(build_ext):
    """A failed compile leaves the pure-Python modules in charge, with a warning."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # compiler missing, headers missing, mypyc error
            print(f"warning: shoal's native modules were not built ({e}); "
                  "the proxy runs as pure Python", file=sys.stderr)


def ext_modules() -> list:
    if os.environ.get("SHOAL_PURE") == "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("warning: mypyc is not installed; the proxy runs as pure Python",
              file=sys.stderr)
        return []
    here = os.getcwd()
    os.chdir(HERE)  # mypyc names modules by their path relative to the current directory
    try:
        return mypycify([f"src/shoal/proxy/{name}.py" for name in COMPILED],
                        opt_level="3", group_name="shoal_native")
    finally:
        os.chdir(here)


setup(ext_modules=ext_modules(), cmdclass={"build_ext": LenientBuildExt})
