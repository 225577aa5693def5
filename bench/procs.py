"""Processes the harness starts: pinned, tracked, measured from /proc, and always killed."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A setup that could not be started or measured."""


def pinned(cpu: int | None) -> list[str]:
    """Command prefix that pins to ``cpu`` and, when root, raises priority to nice -20.

    Why the priority: on a shared machine, background work (a test suite, an editor)
    on the same CPU otherwise shows up as milliseconds of latency in every setup.
    """
    out = ["nice", "-n", "-20"] if os.geteuid() == 0 else []
    return out + (["taskset", "-c", str(cpu)] if cpu is not None else [])


def boost(pid: int) -> None:
    """Give the session of ``pid`` (its scheduler autogroup) nice -20, when allowed.

    With autogroups, nice only ranks processes within one session; between sessions
    the group's own nice counts, so each process started in a new session gets it too.
    """
    try:
        with open(f"/proc/{pid}/autogroup", "w") as f:
            f.write("-20")
    except OSError:
        pass


def run_boosted(argv: Sequence[str], timeout: float,
                cwd: Path | None = None) -> tuple[int, str, str]:
    """Run argv to completion in its own boosted session: (returncode, stdout, stderr)."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, start_new_session=True)
    boost(proc.pid)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            _killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return proc.returncode, out, err


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    """Return once 127.0.0.1:port accepts a connection; raise if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"process exited with {proc.returncode} "
                             f"before 127.0.0.1:{port} listened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def tree(pid: int) -> list[int]:
    """pid and all its descendants (nginx's master has a worker, for instance)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ticks() -> dict[int, tuple[int, int, int]]:
    """Per CPU: (steal, busy, all) ticks from /proc/stat; busy is user+nice+system+irq+softirq."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                t = [int(v) for v in vals[:8]]
                out[int(name[3:])] = (t[7], t[0] + t[1] + t[2] + t[5] + t[6], sum(t))
    return out


def steal_between(a: dict[int, tuple[int, int, int]],
                  b: dict[int, tuple[int, int, int]]) -> dict[int, float]:
    return {cpu: 100.0 * (b[cpu][0] - a[cpu][0]) / max(1, b[cpu][2] - a[cpu][2]) for cpu in a}


def busy_between(a: dict[int, tuple[int, int, int]],
                 b: dict[int, tuple[int, int, int]]) -> dict[int, float]:
    return {cpu: (b[cpu][1] - a[cpu][1]) / CLK_TCK for cpu in a}


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Usage:
    """What a set of processes used over one measured interval."""

    cpu_s: float
    wall_s: float
    rss_max_kib: int
    rss_end_kib: int
    #: Share of each CPU's time the hypervisor gave to someone else, in percent.
    steal_pct: dict[int, float]
    #: Per CPU, the share of wall time used by processes that are not part of the
    #: measurement (a test suite, an editor), in percent.
    others_pct: dict[int, float]

    def noise(self, cpus: Sequence[int]) -> tuple[float, float]:
        """(worst steal on any CPU, worst others' share on the given CPUs), percent."""
        stolen = max(self.steal_pct.values(), default=0.0)
        return stolen, max((self.others_pct.get(c, 0.0) for c in cpus), default=0.0)


class UsageMeter:
    """Samples RSS of the process trees every 200 ms and CPU at both ends of an interval.

    ``roots`` are the measured processes (on ``cpu``); ``load_roots`` and the waited-for
    children of this process (wrk, the open-loop client) are the load side, on
    ``load_cpu``. Whatever else kept either CPU busy is reported as others'.

    >>> with UsageMeter([pid], [backend_pid], 0, 1) as m: run_load()
    >>> m.usage.cpu_s
    """

    def __init__(self, roots: Sequence[int], load_roots: Sequence[int] = (), cpu: int = 0,
                 load_cpu: int = 1, period: float = 0.1) -> None:
        self.roots = list(roots)
        self.load_roots = list(load_roots)
        self.cpu_id, self.load_cpu = cpu, load_cpu
        self.period = period
        self._stop = threading.Event()
        self._rss_max = 0
        self.usage: Usage | None = None
        #: (CLOCK_MONOTONIC, steal ticks of all CPUs so far) every ``period``: when
        #: the hypervisor took the CPUs, finer than the whole interval's share
        self.steal_marks: list[tuple[float, int]] = []

    def pids(self) -> list[int]:
        return [p for r in self.roots for p in tree(r)]

    def rss(self) -> int:
        return sum(rss_kib(p) for p in self.pids())

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids())

    def load_cpu_s(self) -> float:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (kids.ru_utime + kids.ru_stime
                + sum(cpu_seconds(p) for r in self.load_roots for p in tree(r)))

    def _mark_steal(self) -> None:
        self.steal_marks.append((time.monotonic(), sum(t[0] for t in cpu_ticks().values())))

    def _sample(self) -> None:
        # The processes were found once, on entry: walking /proc for them costs a
        # millisecond or two, which every 100 ms would itself disturb a latency run.
        pids = self.pids()
        while not self._stop.wait(self.period):
            self._mark_steal()
            self._rss_max = max(self._rss_max, sum(rss_kib(p) for p in pids))

    def __enter__(self) -> UsageMeter:
        self._mark_steal()
        self._cpu0, self._t0, self._ticks0 = self.cpu(), time.monotonic(), cpu_ticks()
        self._load0 = self.load_cpu_s()
        self._rss_max = self.rss()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._mark_steal()
        end, ticks = self.rss(), cpu_ticks()
        wall, cpu = time.monotonic() - self._t0, self.cpu() - self._cpu0
        own = {self.cpu_id: cpu}
        own[self.load_cpu] = own.get(self.load_cpu, 0.0) + self.load_cpu_s() - self._load0
        busy = busy_between(self._ticks0, ticks)
        others = {c: max(0.0, 100.0 * (b - own.get(c, 0.0)) / wall) for c, b in busy.items()}
        self.usage = Usage(cpu_s=cpu, wall_s=wall, rss_max_kib=max(self._rss_max, end),
                           rss_end_kib=end, steal_pct=steal_between(self._ticks0, ticks),
                           others_pct=others)


@dataclass
class Supervisor:
    """Owns a temp dir and every process started through it; ``close()`` ends them all.

    Each process gets its own session so that a whole tree (nginx master and worker)
    is ended with one killpg.
    """

    workdir: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="shoal-bench-proxy-")))
    procs: list[subprocess.Popen] = field(default_factory=list)

    def path(self, name: str) -> Path:
        return self.workdir / name

    def start(self, argv: Sequence[str], cpu: int | None, log: str,
              stdout: int | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start argv pinned to one CPU, stderr (and stdout unless piped) to a log file."""
        argv = [*pinned(cpu), *argv]
        logf = open(self.path(log), "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                stdout=logf if stdout is None else stdout, stderr=logf,
                                start_new_session=True, cwd=self.workdir, env=env)
        proc._bench_log = logf  # type: ignore[attr-defined]
        boost(proc.pid)
        self.procs.append(proc)
        return proc

    def log_tail(self, log: str, lines: int = 15) -> str:
        try:
            text = self.path(log).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def stop(self, proc: subprocess.Popen, grace: float = 3.0) -> None:
        if proc.poll() is None:
            _killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        _killpg(proc.pid, signal.SIGKILL)  # stragglers in the group, e.g. a worker
        if proc.poll() is None:
            proc.wait(grace)
        proc._bench_log.close()  # type: ignore[attr-defined]
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        for proc in reversed(list(self.procs)):
            try:
                self.stop(proc)
            except Exception:  # noqa: BLE001 - keep ending the others
                pass
        _rmtree(self.workdir)


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
