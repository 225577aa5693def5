"""Helpers shared by the control-plane integration tests (no tests here).

A tmp $SHOAL_HOME, the `shoal` CLI run as a subprocess, polling with a deadline, a
/proc scan for leftover processes, and a stand-in proxy for when `shoal proxy` is
not usable: it speaks the same command line and ready line, forwards inbound TCP to
the app and answers /ready on its admin port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support import wait_for  # noqa: F401 - one implementation for every tier

SHOAL = [sys.executable, "-c", "from shoal.cli.main import main; main()"]

STAND_IN_PROXY = r'''
import argparse, asyncio, json, sys

p = argparse.ArgumentParser()
for flag in ("inbound", "app", "outbound", "admin", "tap", "namespace", "deployment", "pod",
             "service-account", "mtls", "control-plane", "bootstrap-token", "service"):
    p.add_argument("--" + flag)
args = p.parse_args()
app_host, app_port = args.app.rsplit(":", 1)

async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except OSError:
        pass
    finally:
        w.close()

async def inbound(r, w):
    try:
        ar, aw = await asyncio.open_connection(app_host, int(app_port))
    except OSError:
        w.close()
        return
    await asyncio.gather(pipe(r, aw), pipe(ar, w))

async def admin(r, w):
    line = await r.readline()
    while (await r.readline()) not in (b"\r\n", b"\n", b""):
        pass
    ok = line.split()[1:2] in ([b"/ready"], [b"/live"])
    body = b"ready\n" if ok else b"not found\n"
    w.write(b"HTTP/1.1 %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (b"200 OK" if ok else b"404 Not Found", len(body), body))
    await w.drain()
    w.close()

async def closer(r, w):
    w.close()

async def main():
    out = {"ready": True}
    servers = []
    for key, handler in (("inbound", inbound), ("outbound", closer), ("admin", admin),
                         ("tap", closer)):
        host, port = getattr(args, key).rsplit(":", 1)
        s = await asyncio.start_server(handler, host, int(port))
        servers.append(s)
        out[key] = "%s:%d" % s.sockets[0].getsockname()[:2]
    print(json.dumps(out), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
'''


def write_stand_in(tmp: Path) -> str:
    """Path of the stand-in proxy script, as a SHOAL_RUN_PROXY_COMMAND value."""
    path = tmp / "stand_in_proxy.py"
    path.write_text(STAND_IN_PROXY)
    return f"{sys.executable} {path}"


def real_proxy_usable() -> bool:
    """`shoal proxy` runs and takes the flags the supervisor passes.

    SHOAL_TEST_STAND_IN_PROXY=1 forces the stand-in (to test the control plane alone)."""
    if os.environ.get("SHOAL_TEST_STAND_IN_PROXY") == "1":
        return False
    r = subprocess.run([*SHOAL, "proxy", "--help"], capture_output=True, text=True)
    return r.returncode == 0 and "--inbound" in r.stdout and "--admin" in r.stdout


def shoal(home: Path, *args: str, check: bool = True, env: dict[str, str] | None = None,
          timeout: float = 45) -> subprocess.CompletedProcess[str]:
    """Run the CLI against ``home``; a command that hangs dumps its Python stacks."""
    full_env = {**os.environ, "SHOAL_HOME": str(home), "PYTHONFAULTHANDLER": "1", **(env or {})}
    full_env.pop("SHOAL_API", None)
    full_env.pop("SHOAL_TOKEN", None)
    proc = subprocess.Popen([*SHOAL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=full_env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        out, err = proc.communicate()
        raise AssertionError(f"shoal {' '.join(args)} hung\n{out}\n{err}") from None
    r = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check and r.returncode != 0:
        raise AssertionError(f"shoal {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def get_json(home: Path, *args: str) -> Any:
    return json.loads(shoal(home, "get", *args, "-o", "json").stdout)




def alive(pid: int) -> bool:
    """Running and not a zombie, read from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (e.g. a tmp $SHOAL_HOME)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if (text in cmdline or text in environ) and alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def recorded_pids(home: Path) -> list[int]:
    """Pids of the control plane and supervisors as $SHOAL_HOME records them."""
    pids = []
    control = home / "control.json"
    if control.exists():
        pids.append(json.loads(control.read_text())["pid"])
    for pid_file in (home / "supervisors").glob("*/*.pid"):
        pids.append(int(pid_file.read_text()))
    return pids
