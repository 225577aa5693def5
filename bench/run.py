"""``make bench``: measure shoal beside nginx and HAProxy on one loopback backend.

Usage: ``python -m bench.run [--quick] [--only nginx,shoal-inbound] [--output FILE]``.
A full run writes BENCHMARKS.md; ``--quick`` and ``--only`` runs only print, unless
``--output`` is given. Besides the setups, ``shoal-mesh-tls`` (pods started with
`shoal up` + `shoal run`, mTLS between them) and ``control-plane`` (time to ready,
memory with 50 pods, propagation to 50 watchers) share one temp $SHOAL_HOME.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TypeVar

from bench import controlplane, load, mesh, profile, report, sections, stats, targets
from bench.model import Method, Run, SetupResult
from bench.procs import BenchError, Supervisor, Usage, UsageMeter, rss_kib, tree
from bench.setups import BODY, LOAD_CPU, PROXY_CPU, SETUPS, Running, Setup, start_backend
from bench.units import us

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("wrk", "nginx", "haproxy", "taskset")
#: Everything --only accepts, in the order a run measures it.
SELECTABLE = [*SETUPS, mesh.NAME, controlplane.NAME]
T = TypeVar("T")


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def probe(port: int, host: str | None = None) -> tuple[int, int, bytes]:
    """One GET through the setup: (status, response bytes on the wire, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host or 'backend.bench'}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        want = int(m.group(1)) if m else 0
        while len(body) < want:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        status = re.match(rb"HTTP/1\.[01] (\d{3})", head)
        return (int(status.group(1)) if status else 0, len(head) + 4 + len(body), body)


def measure(sup: Supervisor, setup: Setup, backend: Running,
            m: Method) -> tuple[SetupResult, Running | None, list[subprocess.Popen]]:
    """Start a setup and measure it; return the result, the running setup (None when it
    failed) and the processes it started, which the caller stops."""
    result = SetupResult(setup.name, setup.title, setup.hops, has_proxy=setup.hops > 0)
    before = list(sup.procs)
    running: Running | None = None
    try:
        log(f"{setup.name}: starting")
        running = started = setup.start(sup, backend.port)
        port, host = started.port, started.host
        status, _, body = probe(port, host)
        if status != 200 or body != BODY.encode():
            raise BenchError(f"a GET through {setup.name} answered {status} {body[:80]!r}")
        time.sleep(0.5)
        result.rss_idle_kib = sum(rss_kib(p) for r in started.pids for p in tree(r)) or None
        log(f"{setup.name}: warm-up {m.warmup_s:g}s")
        load.wrk(port, m.warmup_s, m.wrk_connections, LOAD_CPU, host)
        log(f"{setup.name}: max throughput {m.throughput_s:g}s")
        side = backend.pids + started.side_pids
        tput, result.throughput_usage = _point(
            setup, started.pids, side, m, "throughput",
            lambda: load.wrk(port, m.throughput_s, m.wrk_connections, LOAD_CPU, host))
        result.throughput = tput
        log(f"{setup.name}: {tput.rps:,.0f} req/s; latency at {m.rate:g} rps {m.latency_s:g}s")
        lat, result.latency_usage = _point(
            setup, started.pids, side, m, "latency",
            lambda: load.open_loop(port, m.rate, m.latency_s, m.latency_warmup_s,
                                   m.openloop_connections, LOAD_CPU, host, timeline=True))
        result.latency = lat
        log(f"{setup.name}: p50 {us(lat['latency_us']['p50'])} "
            f"p99 {us(lat['latency_us']['p99'])}")
    except (BenchError, OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
        result.error = scrub(str(e) or type(e).__name__, sup)
    procs = [p for p in sup.procs if p not in before]
    died = [p for p in procs if p.poll() is not None]
    if died and running is not None:  # started, then exited: say so, with its last words
        p = died[0]
        tail = sup.log_tail(Path(p._bench_log.name).name)  # type: ignore[attr-defined]
        argv = p.args if isinstance(p.args, list) else [p.args]
        why = (f"{' '.join(str(a) for a in argv[-20:])}\nexited with {p.returncode} "
               f"during the run\n{tail}")
        result.error = scrub(f"{result.error}\n{why}" if result.error else why, sup)
    if result.error:
        running = None
        log(f"{setup.name}: FAILED: {result.error.splitlines()[0]}")
    return result, running, procs


def _point(setup: Setup, pids: list[int], load_pids: list[int], m: Method, phase: str,
           measure_once: Callable[[], T]) -> tuple[T, Usage]:
    """Measure once; when the machine disturbed it, measure again (within the budget)
    and keep the less disturbed of the two.

    Why: steal on this kind of virtual machine comes in bursts of seconds; a second try
    often lands in a quiet stretch. At a fixed rate a late client counts too.
    """
    cpus = [LOAD_CPU, PROXY_CPU] if setup.hops else [LOAD_CPU]

    def excess(value: T, u: Usage) -> float:
        """How far above the retry thresholds, in percent (<= 0: quiet enough)."""
        stolen, _ = u.noise(cpus)
        lag = value.get("send_lag_us", {}).get("p99", 0.0) if isinstance(value, dict) else 0.0
        if math.isnan(lag):  # no request found its connection free: the client fell behind
            lag = math.inf
        limit = targets.RETRY_PCT[phase]
        return max(100.0 * (stolen / limit - 1), 100.0 * (lag / targets.RETRY_LAG_US - 1))

    best: tuple[T, Usage, float] | None = None
    for attempt in range(2):
        with UsageMeter(pids, load_pids, PROXY_CPU, LOAD_CPU) as meter:
            value = measure_once()
        assert meter.usage is not None
        add_quiet(value, meter)
        score = excess(value, meter.usage)
        if best is None or score < best[2]:
            best = (value, meter.usage, score)
        if best[2] <= 0 or attempt or m.retries_left <= 0:
            break
        m.retries_left -= 1
        m.retried.append(f"{setup.name} {phase}")
        stolen, others = meter.usage.noise(cpus)
        log(f"{setup.name}: {phase} disturbed (steal {stolen:.0f}%, others {others:.0f}%), "
            "measuring again")
    assert best is not None
    return best[0], best[1]


def add_quiet(value: object, meter: UsageMeter) -> None:
    """Replace an open-loop result's per-request ``timeline`` by the summary of the
    requests no hypervisor steal touched (``quiet_us``) and their share
    (``quiet_share``).

    Why: steal on this kind of machine comes in bursts of 10-100 ms several times a
    second; each one queues a hundred requests, which is the whole p99 of a 15 s run,
    and says nothing about the proxy. The report shows both figures.
    """
    if not isinstance(value, dict) or "timeline" not in value:
        return
    kept, share = stats.quiet(value.pop("timeline"), meter.steal_marks)
    value["quiet_us"], value["quiet_share"] = stats.summarise(kept), share


def remeasure_baseline(run: Run, backend: Running, m: Method) -> None:
    """Measure the direct path's latency once more at the end when it was disturbed.

    Why: every *added* latency is relative to it, so one burst of steal during the
    baseline spoils every latency verdict; the backend is still up, so this is cheap.
    """
    direct = run.get("direct")
    if direct is None or direct.latency is None or not targets.flagged(direct, "latency", m):
        return
    log("direct: latency baseline was disturbed, measuring it again")
    m.retried.append("direct latency (at the end)")
    try:
        with UsageMeter([], backend.pids, PROXY_CPU, LOAD_CPU) as meter:
            again = load.open_loop(backend.port, m.rate, m.latency_s, m.latency_warmup_s,
                                   m.openloop_connections, LOAD_CPU, timeline=True)
        add_quiet(again, meter)
    except (BenchError, subprocess.SubprocessError, ValueError) as e:
        log(f"direct: measuring again failed: {e}")
        return
    candidate = SetupResult(direct.name, direct.title, direct.hops, has_proxy=False,
                            latency=again, latency_usage=meter.usage)
    if _latency_noise(candidate) < _latency_noise(direct):
        direct.latency, direct.latency_usage = again, meter.usage


def _latency_noise(r: SetupResult) -> float:
    """Steal plus the client's p99 lag in ms: lower is quieter."""
    if r.latency_usage is None or r.latency is None:
        return math.inf
    stolen, _ = r.latency_usage.noise([LOAD_CPU])
    lag = r.latency.get("send_lag_us", {}).get("p99", math.inf)
    return stolen + (math.inf if math.isnan(lag) else lag / 1000)


def scrub(text: str, sup: Supervisor) -> str:
    """An error message without this machine's paths (it goes into BENCHMARKS.md)."""
    text = text.replace(str(sup.workdir), "$TMPDIR")
    text = re.sub(r"(^|[\s'\"])/\S*/(python3?[\d.]*|shoal|py-spy)\b", r"\1\2", text, flags=re.M)
    return text.replace(str(ROOT) + "/", "")


def record_profile(run: Run, sup: Supervisor, result: SetupResult, running: Running | None,
                   m: Method) -> None:
    if running is None or not running.python_pids:
        run.profile_error = f"`{result.name}` did not run"
        return
    out = sup.path("profile.txt")
    log(f"{result.name}: py-spy profile under load {m.profile_s:g}s")
    loader = threading.Thread(target=_quiet_wrk, name="profile-load",
                              args=(running.port, m.profile_s + 2, m.wrk_connections))
    loader.start()
    try:
        time.sleep(1.0)
        profile.record(running.python_pids[0], m.profile_s, out, LOAD_CPU)
        run.profile = profile.summarise(out.read_text())
        run.profile_target = result.name
    except (BenchError, OSError, subprocess.SubprocessError) as e:
        run.profile_error = scrub(str(e).splitlines()[0] if str(e) else type(e).__name__, sup)
    finally:
        loader.join()


def _quiet_wrk(port: int, seconds: float, connections: int) -> None:
    try:
        load.wrk(port, seconds, connections, LOAD_CPU)
    except (BenchError, subprocess.SubprocessError):
        pass


def machine_info() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pkgs = [f"{name} {_pkg_version(name)}"
            for name in ("shoal", "uvloop", "httptools", "h11", "h2", "prometheus_client")]
    info = {
        "CPUs": f"{os.cpu_count()} × {model}",
        "kernel": f"Linux {platform.release()}",
        "Python": f"{platform.python_version()} ({platform.python_implementation()})",
        "packages": ", ".join(pkgs),
        "tools": ", ".join(t for t in (_version(["nginx", "-v"], r"nginx/(\S+)", "nginx"),
                                        _version(["haproxy", "-v"], r"version (\S+)", "HAProxy"),
                                        _version(["wrk", "--version"], r"wrk (\S+)", "wrk"),
                                        _py_spy_version()) if t),
    }
    from shoal.proxy import native

    info["proxy modules"] = {
        "compiled": "compiled with mypyc " + _pkg_version("mypy") + " (ADR 11)",
        "pure": "pure Python (SHOAL_PURE=1, or not built)",
    }.get(native.status(), "partly compiled")
    rev = _git(["rev-parse", "--short", "HEAD"])
    if rev:
        dirty = _git(["status", "--porcelain", "--untracked-files=no"])
        info["shoal tree"] = f"commit {rev}" + (" with uncommitted changes" if dirty else "")
    return info


def _pkg_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def _version(argv: list[str], pattern: str, label: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    m = re.search(pattern, out.stdout + out.stderr)
    return f"{label} {m.group(1)}" if m else ""


def _py_spy_version() -> str:
    exe = Path(sys.executable).with_name("py-spy")
    return _version([str(exe), "--version"], r"py-spy (\S+)", "py-spy") if exe.exists() else ""


def _git(args: list[str]) -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Measure shoal's proxy beside nginx and HAProxy on one loopback backend.")
    ap.add_argument("--quick", action="store_true", help="2-3 s points: a smoke run")
    ap.add_argument("--only", default="", help="comma-separated setups from "
                    f"{','.join(SELECTABLE)} (direct is always measured: added latency "
                    "needs it; the shoal- prefix may be left out)")
    ap.add_argument("--output", type=Path, default=None,
                    help="where to write the report (default BENCHMARKS.md on a full run)")
    ap.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    ap.add_argument("--rate", type=float, default=1000.0, help="open-loop requests/s")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        print(f"bench: missing {', '.join(missing)}; run `make bench` or "
              f"`scripts/ensure-debs wrk nginx haproxy`", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SELECTABLE)
    names = [n if n in SELECTABLE or f"shoal-{n}" not in SELECTABLE else f"shoal-{n}"
             for n in names]
    unknown = [n for n in names if n not in SELECTABLE]
    if unknown:
        print(f"bench: unknown setup {', '.join(unknown)}; "
              f"choose from {', '.join(SELECTABLE)}", file=sys.stderr)
        return 2
    if "direct" not in names:
        names.insert(0, "direct")
    names = [n for n in SELECTABLE if n in names]
    if (os.cpu_count() or 1) < 2:
        log("fewer than 2 CPUs: proxies and load share one CPU; numbers are not comparable")

    q = args.quick
    method = Method(quick=q, warmup_s=1 if q else 2, throughput_s=3 if q else 10,
                    latency_s=3 if q else 15, latency_warmup_s=0.5 if q else 1,
                    rate=args.rate, wrk_connections=args.connections, openloop_connections=10,
                    profile_s=3 if q else 10, response_bytes=0, body_bytes=len(BODY),
                    proxy_cpu=PROXY_CPU, load_cpu=LOAD_CPU,
                    retries_left=0 if q else targets.RETRY_BUDGET)
    output = args.output
    if output is None and not q and not args.only:
        output = ROOT / "BENCHMARKS.md"

    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    run = Run(started=started.strftime("%Y-%m-%d %H:%M UTC"), duration_s=0.0,
              machine=machine_info(), method=method, results=[], selected=names)
    sup = Supervisor()
    meshed = mesh.Mesh(sup)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        backend = start_backend(sup)
        method.response_bytes = probe(backend.port)[1]
        for name in names:
            if name == controlplane.NAME:
                continue
            setup = mesh.tls_setup(meshed) if name == mesh.NAME else SETUPS[name]
            result, running, procs = measure(sup, setup, backend, method)
            run.results.append(result)
            if name == "shoal-inbound" and not args.no_profile:
                record_profile(run, sup, result, running, method)
            for proc in procs:
                sup.stop(proc)
        if not q:
            remeasure_baseline(run, backend, method)
        if controlplane.NAME in names:
            run.control = controlplane.measure(meshed, ready_runs=2 if q else 3,
                                               changes=3 if q else 5)
            if run.control.error:
                run.control.error = scrub(run.control.error, sup)
        if "shoal-inbound" not in names and not args.no_profile:
            run.profile_error = "`shoal-inbound` was not selected"
        elif args.no_profile:
            run.profile_error = "skipped (`--no-profile`)"
    except KeyboardInterrupt:
        log("interrupted; stopping everything started")
        return 130
    except BenchError as e:
        log(f"cannot run: {e}")
        return 1
    finally:
        meshed.close()
        sup.close()
        signal.signal(signal.SIGTERM, previous)
    run.duration_s = time.monotonic() - t0

    print(report.summary(run))
    if output is not None:
        old = output.read_text() if output.exists() else None
        output.write_text(report.render(run, report.extract_notes(old)))
        for section in sections.OWNED:  # written by python -m bench.dashboard, bench.tap
            kept = section.extract(old)
            if kept:
                section.write(kept, output)
        print(f"\nwrote {output.name}" if output.parent == ROOT else f"\nwrote {output}")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
