"""Load generators: wrk for maximum throughput, bench.openloop for latency at a fixed rate."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.procs import BenchError, pinned, run_boosted

_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    errors: int
    #: Closed-loop latency percentiles under saturation, µs.
    p50_us: float
    p99_us: float


def parse_wrk(text: str) -> WrkResult:
    """Read wrk's ``--latency`` report (requests, Requests/sec, errors, percentiles)."""
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m or not rps:
        raise BenchError(f"cannot read wrk output:\n{text.strip()}")
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx:
        errors += int(non2xx.group(1))
    pct = {p: _duration_us(v, u) for p, v, u in
           re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)}
    return WrkResult(requests=int(m.group(1)),
                     duration_s=_duration_us(m.group(2), m.group(3)) / 1e6,
                     rps=float(rps.group(1)), errors=errors,
                     p50_us=pct.get("50", float("nan")), p99_us=pct.get("99", float("nan")))


def _duration_us(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def wrk(port: int, seconds: float, connections: int, cpu: int,
        host: str | None = None) -> WrkResult:
    """Saturate 127.0.0.1:port with one wrk thread pinned to ``cpu``; ``host`` sets the
    Host header (an outbound listener routes by it)."""
    argv = [*pinned(cpu), "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s",
            "--latency", "--timeout", "5s", *(["-H", f"Host: {host}"] if host else []),
            f"http://127.0.0.1:{port}/"]
    code, out, err = run_boosted(argv, timeout=seconds + 30)
    if code != 0:
        raise BenchError(f"wrk failed ({code}): {err.strip()}")
    return parse_wrk(out)


def open_loop(port: int, rate: float, seconds: float, warmup: float, connections: int,
              cpu: int, host: str | None = None, timeline: bool = False) -> dict:
    """Run bench.openloop in its own pinned process; return its JSON summary (with
    every request's scheduled send and latency under ``timeline`` if asked)."""
    root = Path(__file__).resolve().parent.parent
    argv = [*pinned(cpu), sys.executable, "-m", "bench.openloop",
            "--port", str(port), "--rate", f"{rate:g}", "--duration", f"{seconds:g}",
            "--warmup", f"{warmup:g}", "--connections", str(connections),
            *(["--host", host] if host else []), *(["--timeline"] if timeline else [])]
    code, out, err = run_boosted(argv, timeout=seconds + warmup + 60, cwd=root)
    if code != 0:
        raise BenchError(f"open-loop client failed ({code}): {err.strip()[-800:]}")
    return json.loads(out)
