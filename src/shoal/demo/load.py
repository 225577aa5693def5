"""An open-loop HTTP load generator: requests leave on schedule whatever the target does.

A closed loop (send, wait, send) slows down when the target does and hides the
latency it is there to measure; here each request has a scheduled send time and its
latency is counted from that time, so a stalled target shows up as latency, not as a
lower rate. Latency percentiles come from the same bounded-error sketch the proxy uses.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

import httpx

from shoal.proxy.latency import LatencySketch


@dataclass(frozen=True)
class LoadConfig:
    url: str
    rate: float = 10.0                # requests per second
    duration: float | None = None     # seconds; None: until interrupted
    concurrency: int = 64             # requests in flight at most
    method: str = "GET"
    data: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 10.0


@dataclass
class Tally:
    sent: int = 0
    ok: int = 0
    errors: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latency: LatencySketch = field(default_factory=LatencySketch)
    started: float = field(default_factory=time.monotonic)

    def record(self, status: str, ms: float, ok: bool) -> None:
        self.statuses[status] += 1
        self.latency.add(ms)
        if ok:
            self.ok += 1
        else:
            self.errors += 1

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (f"sent={self.sent} ok={self.ok} errors={self.errors} "
                f"rate={self.sent / elapsed:.1f}/s p50={_ms(self.latency.quantile(0.5))} "
                f"p99={_ms(self.latency.quantile(0.99))}")

    def summary(self) -> str:
        done = self.ok + self.errors
        lines = [f"requests: {self.sent} sent, {done} done, {self.ok} ok, {self.errors} errors",
                 "latency:  " + "  ".join(f"{name}={_ms(self.latency.quantile(q))}" for name, q in
                                          (("p50", .5), ("p90", .9), ("p99", .99),
                                           ("max", 1.0))),
                 "status:   " + "  ".join(f"{k}={v}" for k, v in sorted(self.statuses.items()))]
        return "\n".join(lines)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}ms" if v < 100 else f"{v:.0f}ms"


async def run(cfg: LoadConfig, out: TextIO = sys.stderr, progress: bool = True,
              stop: asyncio.Event | None = None) -> Tally:
    """Send on schedule until the duration ends or ``stop`` is set; return the tally."""
    stop = stop or asyncio.Event()
    tally = Tally()
    slots = asyncio.Semaphore(cfg.concurrency)
    limits = httpx.Limits(max_connections=cfg.concurrency,
                          max_keepalive_connections=cfg.concurrency)
    tasks: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(timeout=cfg.timeout, limits=limits, trust_env=True,
                                 headers=dict(cfg.headers)) as client:

        async def one(scheduled: float) -> None:
            async with slots:
                try:
                    r = await client.request(cfg.method, cfg.url, content=cfg.data)
                    status, ok = str(r.status_code), r.status_code < 500
                except httpx.HTTPError as e:
                    status, ok = type(e).__name__, False
            tally.record(status, (time.monotonic() - scheduled) * 1000.0, ok)

        start = time.monotonic()
        tally.started = start
        next_report = start + 1.0
        i = 0
        try:
            while (cfg.duration is None or i / cfg.rate < cfg.duration) and not stop.is_set():
                scheduled = start + i / cfg.rate
                delay = scheduled - time.monotonic()
                if delay > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), delay)
                        break  # stopped while waiting for the next send time
                    except TimeoutError:
                        pass
                task = asyncio.get_running_loop().create_task(one(scheduled), name=f"load-{i}")
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                tally.sent += 1
                i += 1
                if progress and time.monotonic() >= next_report:
                    out.write(("\r" if out.isatty() else "") + tally.line()
                              + ("" if out.isatty() else "\n"))
                    out.flush()
                    next_report += 1.0
            if tasks:
                await asyncio.wait(tasks, timeout=cfg.timeout + 1)
        finally:
            for t in tasks:
                t.cancel()
    return tally
