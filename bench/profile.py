"""A py-spy profile of a Python process under load, reduced to its top functions."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.procs import BenchError, pinned, run_boosted

#: A function on at least this share of stacks is trunk, not hot path.
TRUNK_SHARE = 0.95

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
#: A function compiled by mypyc: ``CPyDef_http1___Http1Upstream___on_header`` (its
#: body) or ``CPyPy_...`` (the wrapper Python calls go through), folded into one name.
_MYPYC = re.compile(r"^CPy(?:Def|Py)_(?P<name>\w+?)(?:_env)?$")


@dataclass
class ProfileEntry:
    function: str
    self_pct: float
    total_pct: float


@dataclass
class Profile:
    samples: int
    top_self: list[ProfileEntry]
    top_total: list[ProfileEntry]
    #: Functions on nearly every stack (entry point, CLI, event loop), left out of top_total.
    trunk: list[str]


def py_spy() -> str | None:
    """py-spy beside this interpreter or on PATH; installed into the environment on demand."""
    local = Path(sys.executable).with_name("py-spy")
    if local.exists():
        return str(local)
    found = shutil.which("py-spy")
    if found:
        return found
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                          "--disable-pip-version-check", "py-spy"],
                         capture_output=True, text=True)
    if pip.returncode == 0 and local.exists():
        return str(local)
    return None


def record(pid: int, seconds: float, out: Path, cpu: int) -> None:
    """Sample ``pid`` at 200 Hz, collapsed stacks with C frames to ``out``.

    ``--native`` unwinds C frames too (uvloop, httptools, the kernel-call wrappers and
    the proxy's own mypyc-compiled modules, which a Python-only profile cannot see);
    it pauses the process for each sample, which py-spy's non-blocking mode avoids
    but cannot combine with it."""
    exe = py_spy()
    if exe is None:
        raise BenchError("py-spy is not installed and could not be installed")
    argv = [*pinned(cpu), exe, "record", "--pid", str(pid),
            "--duration", f"{max(1, round(seconds))}", "--rate", "200", "--native",
            "--full-filenames",
            "--format", "raw", "--output", str(out)]
    code, _, err = run_boosted(argv, timeout=seconds + 60)
    if code != 0 or not out.exists():
        raise BenchError(f"py-spy failed: {err.strip()[-600:]}")


def short_file(path: str) -> str:
    """A source path without the machine's prefix: ``shoal/proxy/http1.py``,
    ``asyncio/events.py``."""
    for marker in ("/site-packages/", "/src/", "/lib/python3."):
        if marker in path:
            tail = path.rsplit(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "/lib/python3." and "/" in tail else tail
    return path.rsplit("/", 1)[-1]


def _frame_name(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    compiled = _MYPYC.match(m["func"])
    if compiled:
        return f"{compiled['name'].replace('___', '.')} (compiled)"
    return f"{m['func']} ({short_file(m['file'])})"


def summarise(raw: str, top: int = 15) -> Profile:
    """Collapsed stacks (``f (a.py:1);g (b.py:2) 7`` per line) -> top functions.

    Self time counts the innermost frame; total time counts each function once per
    stack it appears in. Line numbers are folded so a function is one entry.
    """
    self_c: Counter[str] = Counter()
    total_c: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        samples += n
        self_c[frames[-1]] += n
        for name in set(frames):
            total_c[name] += n

    def entry(name: str) -> ProfileEntry:
        return ProfileEntry(name, 100.0 * self_c[name] / samples, 100.0 * total_c[name] / samples)

    if not samples:
        return Profile(0, [], [], [])
    trunk = [n for n, c in total_c.most_common() if c >= TRUNK_SHARE * samples]
    branches = [n for n, _ in total_c.most_common() if n not in trunk][:top]
    return Profile(samples, [entry(n) for n, _ in self_c.most_common(top)],
                   [entry(n) for n in branches], trunk)
