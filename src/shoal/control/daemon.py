"""Detached processes: start the control plane or a supervisor in the background, find
them again through $SHOAL_HOME, and stop them with nothing left behind.

``start_control(home, "127.0.0.1:0")`` returns once the API answers;
``stop_all(home)`` stops every supervisor (and so every proxy and app), then the
control plane.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from .errors import ControlError, StateError
from .state import Home, read_json, write_json

CLI = [sys.executable, "-c", "from shoal.cli.main import main; main()"]


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def runs(pid: int, marker: str) -> bool:
    """``pid`` is alive and its command line contains ``marker``: a pid file may outlive
    its process, and the pid may since belong to something that is not ours."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return True  # no /proc: trust the pid file
    return marker in cmdline


SUPERVISOR = "shoal.control.supervisor"
CONTROL = "shoal"


def spawn_detached(argv: list[str], log: Path, env: Mapping[str, str] | None = None,
                   cwd: str | None = None) -> int:
    """Start ``argv`` in its own session, output appended to ``log``; returns its pid."""
    log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                env=dict(env) if env is not None else None, cwd=cwd,
                                start_new_session=True, close_fds=True)
    return proc.pid


def stop_pid(pid: int, timeout: float = 10.0) -> bool:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; True if it was running."""
    return bool(stop_pids([pid], timeout))


def stop_pids(pids: list[int], timeout: float = 10.0) -> list[int]:
    """Stop several processes at once (SIGTERM, then SIGKILL after ``timeout``);
    returns those that were running."""
    running = [p for p in pids if pid_alive(p)]
    for pid in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(pid_alive(p) for p in running) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in running:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    while any(pid_alive(p) for p in running):
        time.sleep(0.02)
    return running


def running_control(home: Home) -> dict[str, Any] | None:
    """control.json of a control plane that is still alive, else None."""
    info = read_json(home.control, None)
    if isinstance(info, dict) and isinstance(info.get("pid"), int) and \
            runs(info["pid"], CONTROL):
        return info
    return None


def healthy(url: str, token: str, timeout: float = 1.0) -> bool:
    try:
        r = httpx.get(f"{url}/api/v1/health", timeout=timeout, trust_env=False,
                      headers={"authorization": f"Bearer {token}"})
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def start_control(home: Home, api: str, timeout: float = 30.0) -> dict[str, Any]:
    """Start ``shoal control`` detached and wait until its API answers."""
    home.ensure()
    home.token()
    log = home.logs / "control.log"
    pid = spawn_detached([*CLI, "control", "--home", str(home.root), "--api", api], log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = read_json(home.control, None)
        if isinstance(info, dict) and info.get("pid") == pid and \
                healthy(info["url"], home.token()):
            return info
        if not pid_alive(pid):
            raise ControlError(f"control plane exited; see {log}: {tail(log)}")
        time.sleep(0.05)
    stop_pid(pid)
    raise ControlError(f"control plane not ready after {timeout:.0f}s; see {log}")


def tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


# -- supervisors ------------------------------------------------------------------------
def supervisors(home: Home) -> list[dict[str, Any]]:
    """Every supervisor spec on disk with its pid (None when not running)."""
    out = []
    for spec_file in sorted(home.supervisors.glob("*/*.json")):
        raw = read_json(spec_file, None)
        if not isinstance(raw, dict):
            continue
        pid = _read_pid(spec_file.with_suffix(".pid"))
        out.append({**raw, "pid": pid if pid and runs(pid, SUPERVISOR) else None,
                    "file": str(spec_file)})
    return out


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def start_supervisor(home: Home, spec: dict[str, Any], timeout: float = 10.0) -> int:
    """Write the spec and start (or, when running, SIGHUP) the replica set's supervisor."""
    ns, rs = spec["namespace"], spec["replicaset"]
    spec_file = home.supervisor_file(ns, rs)
    write_json(spec_file, {"spec": spec})
    pid = _read_pid(spec_file.with_suffix(".pid"))
    if pid and runs(pid, SUPERVISOR):
        os.kill(pid, signal.SIGHUP)
        return pid
    log = home.logs / ns / f"{rs}.supervisor.log"
    pid = spawn_detached([sys.executable, "-m", SUPERVISOR, "--home",
                          str(home.root), "--namespace", ns, "--replicaset", rs], log,
                         cwd=spec.get("cwd"))
    deadline = time.monotonic() + timeout
    while _read_pid(spec_file.with_suffix(".pid")) != pid:
        if not pid_alive(pid) or time.monotonic() > deadline:
            raise StateError(f"supervisor of {rs} did not start; see {log}: {tail(log)}")
        time.sleep(0.02)
    return pid


def stop_supervisor(home: Home, namespace: str, replicaset: str, forget: bool = True) -> bool:
    spec_file = home.supervisor_file(namespace, replicaset)
    pid = _read_pid(spec_file.with_suffix(".pid"))
    stopped = bool(pid) and runs(pid, SUPERVISOR) and stop_pid(pid, timeout=15.0)  # type: ignore[arg-type]
    if forget:
        spec_file.unlink(missing_ok=True)
        spec_file.with_suffix(".pid").unlink(missing_ok=True)
    return stopped


def stop_all(home: Home) -> dict[str, Any]:
    """Stop every supervisor (in parallel), then the control plane."""
    sups = supervisors(home)
    pids = [s["pid"] for s in sups if s["pid"]]
    stop_pids(pids, timeout=15.0)
    for sup in sups:
        spec_file = Path(sup["file"])
        spec_file.unlink(missing_ok=True)
        spec_file.with_suffix(".pid").unlink(missing_ok=True)
    info = running_control(home)
    control = bool(info) and stop_pid(info["pid"])  # type: ignore[index]
    home.control.unlink(missing_ok=True)
    return {"supervisors": [s["spec"]["replicaset"] for s in sups if s["pid"]],
            "control_plane": control}
