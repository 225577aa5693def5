"""Child processes of a supervisor: spawn in their own group, stop the whole group,
restart with back-off.

Each child gets its own session (so a signal reaches everything it started) and
PR_SET_PDEATHSIG=SIGKILL (so a SIGKILLed supervisor leaves no orphans behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


async def spawn(argv: Sequence[str], *, log: IO[bytes], env: Mapping[str, str] | None = None,
                cwd: str | None = None, stdout_pipe: bool = False) -> asyncio.subprocess.Process:
    """Start ``argv``; stderr (and stdout unless piped) go to ``log``."""
    return await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if stdout_pipe else log, stderr=log,
        env=dict(env) if env is not None else None, cwd=cwd,
        start_new_session=True, preexec_fn=_die_with_parent)


async def stop(proc: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds."""
    if proc.returncode is not None:
        _kill_group(proc.pid, signal.SIGKILL)  # leftovers of an exited leader
        return
    _kill_group(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        _kill_group(proc.pid, signal.SIGKILL)
        await proc.wait()
    _kill_group(proc.pid, signal.SIGKILL)


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def read_ready(proc: asyncio.subprocess.Process, log: IO[bytes],
                     timeout: float) -> dict[str, Any] | None:
    """Wait for the proxy's ``{"ready": true, ...}`` line; copy everything to ``log``.

    After the ready line, a task keeps copying stdout to the log so the pipe never fills.
    """
    assert proc.stdout is not None
    stream = proc.stdout

    async def until_ready() -> dict[str, Any] | None:
        while line := await stream.readline():
            log.write(line)
            log.flush()
            with contextlib.suppress(ValueError):
                msg = json.loads(line)
                if isinstance(msg, dict) and msg.get("ready") is True:
                    return msg
        return None

    try:
        ready = await asyncio.wait_for(until_ready(), timeout)
    except TimeoutError:
        ready = None
    if ready is not None:
        task = asyncio.get_running_loop().create_task(_pump(stream, log), name="pump-stdout")
        _PUMPS.add(task)
        task.add_done_callback(_PUMPS.discard)
    return ready


_PUMPS: set[asyncio.Task[None]] = set()


async def _pump(stream: asyncio.StreamReader, log: IO[bytes]) -> None:
    while chunk := await stream.read(65536):
        log.write(chunk)
        log.flush()


class Backoff:
    """0.5 s, 1 s, 2 s ... up to 30 s between restarts; back to 0.5 s after a process
    has stayed up for 30 s (as a kubelet resets CrashLoopBackOff)."""

    def __init__(self, first: float = 0.5, cap: float = 30.0, reset_after: float = 30.0) -> None:
        self.first, self.cap, self.reset_after = first, cap, reset_after
        self.delay = first

    def next(self, uptime: float) -> float:
        if uptime >= self.reset_after:
            self.delay = self.first
        delay = self.delay
        self.delay = min(self.cap, self.delay * 2)
        return delay


#: A pod's log is rotated (copy, then truncate in place) past this size.
LOG_MAX_BYTES = 10 * 1024 * 1024


def rotate_log(path: Path, max_bytes: int = LOG_MAX_BYTES) -> bool:
    """Copy-truncate ``path`` into ``path.1`` once it passes ``max_bytes``.

    The children write with O_APPEND, so after the truncation they go on writing at
    the new end: no restart, no reopened file descriptor. Lines written between the
    copy and the truncation are lost, as with logrotate's copytruncate.
    """
    try:
        if path.stat().st_size <= max_bytes:
            return False
        old = path.with_name(path.name + ".1")
        with open(path, "rb") as src, open(old, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.truncate(path, 0)
        return True
    except OSError:
        return False


def open_log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = open(path, "ab", buffering=0)  # noqa: SIM115 - lives as long as the child
    log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} start\n".encode())
    return log
