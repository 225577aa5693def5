"""Scrape every proxy's admin ``/metrics`` and ``/latency`` into the store.

All targets of a round are fetched concurrently; each fetch is bounded by a
deadline for the whole exchange (a server that drips one byte a second cannot
hold a round) and by a size limit on the body, so a proxy that hangs, answers
garbage or 10 MB of series fails alone and shows up in ``health``. The workload
labels of the target (``namespace``, ``deployment``, ``pod``,
``pod_template_hash``, ``serviceaccount``) are attached to every series by the
store, as Linkerd's Prometheus relabelling does.

    scraper = Scraper(store, lambda: registry.targets(), ScrapeConfig(interval=10))
    task = asyncio.create_task(scraper.run(stop), name="metrics-scraper")
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field

import httpx

from .errors import ScrapeError
from .exposition import Sample, parse
from .store import Store
from .window import parse_duration

#: The workload labels a target carries and the store attaches to its series.
WORKLOAD_LABELS = ("namespace", "deployment", "pod", "pod_template_hash", "serviceaccount")


@dataclass(frozen=True)
class ScrapeConfig:
    """How often and how patiently the control plane scrapes."""

    #: SHOAL_SCRAPE_INTERVAL: between two rounds (1 s .. 10 min)
    interval: float = 10.0
    #: SHOAL_SCRAPE_TIMEOUT: one target's whole exchange (default: interval, max 10 s)
    timeout: float | None = None
    #: SHOAL_SCRAPE_MAX_BYTES: body size limit per endpoint
    max_bytes: int = 8 * 1024 * 1024
    #: SHOAL_SCRAPE_MAX_SAMPLES: samples per scrape (Prometheus' sample_limit)
    max_samples: int = 100_000
    #: also fetch /latency (the bounded-error sketches)
    latency: bool = True

    def __post_init__(self) -> None:
        if not 1.0 <= self.interval <= 600.0:
            raise ValueError("scrape interval must be between 1s and 10m")
        if self.timeout is not None and not 0 < self.timeout <= self.interval:
            raise ValueError("scrape timeout must be positive and at most the interval")

    @property
    def deadline(self) -> float:
        return self.timeout if self.timeout is not None else min(self.interval, 10.0)

    @classmethod
    def parse(cls, env: Mapping[str, str]) -> ScrapeConfig:
        kw: dict[str, object] = {}
        if "SHOAL_SCRAPE_INTERVAL" in env:
            kw["interval"] = parse_duration(env["SHOAL_SCRAPE_INTERVAL"])
        if "SHOAL_SCRAPE_TIMEOUT" in env:
            kw["timeout"] = parse_duration(env["SHOAL_SCRAPE_TIMEOUT"])
        if "SHOAL_SCRAPE_MAX_BYTES" in env:
            kw["max_bytes"] = int(env["SHOAL_SCRAPE_MAX_BYTES"])
        if "SHOAL_SCRAPE_MAX_SAMPLES" in env:
            kw["max_samples"] = int(env["SHOAL_SCRAPE_MAX_SAMPLES"])
        return cls(**kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Target:
    """One proxy: its admin address (``host:port``) and its workload labels."""

    address: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        ns, pod = self.labels.get("namespace", ""), self.labels.get("pod", "")
        return f"{ns}/{pod}" if pod else self.address


@dataclass
class ScrapeHealth:
    """The latest scrape of one target, as `shoal check` and the dashboard show it."""

    target: str
    address: str
    last_ok: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    #: seconds the latest scrape took
    duration: float = 0.0
    #: samples in the latest successful scrape
    samples: int = 0
    consecutive_failures: int = 0

    @property
    def healthy(self) -> bool:
        return self.last_ok is not None and self.consecutive_failures == 0

    def to_json(self) -> dict[str, object]:
        return dict(asdict(self), healthy=self.healthy)


class Scraper:
    """Rounds of concurrent scrapes into a store; ``health`` per target key."""

    def __init__(self, store: Store, targets: Callable[[], Iterable[Target]] | Iterable[Target],
                 config: ScrapeConfig | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.config = config or ScrapeConfig()
        self._targets = targets
        self.clock = clock
        self.health: dict[str, ScrapeHealth] = {}
        # A fresh connection per fetch: a kept-alive one that the proxy closed while
        # idle would fail the next scrape, and a loopback connect costs ~0.1 ms.
        self._client = httpx.AsyncClient(transport=transport, trust_env=False,
                                         headers={"accept-encoding": "identity"},
                                         limits=httpx.Limits(max_keepalive_connections=0))

    def targets(self) -> list[Target]:
        t = self._targets
        return list(t() if callable(t) else t)

    async def run(self, stop: asyncio.Event) -> None:
        """Scrape every ``interval`` until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        next_round = loop.time()
        while not stop.is_set():
            await self.scrape_round()
            next_round += self.config.interval
            delay = next_round - loop.time()
            if delay < 0:  # a round overran: skip the missed ticks, do not pile up
                next_round = loop.time()
                delay = 0
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass

    async def scrape_round(self) -> dict[str, ScrapeHealth]:
        """One scrape of every target, concurrently; returns the health of this round."""
        targets = {t.key: t for t in self.targets()}
        for key in list(self.health):
            if key not in targets:
                del self.health[key]
        tasks = [asyncio.create_task(self.scrape(t), name=f"scrape {t.key}")
                 for t in targets.values()]
        if tasks:
            await asyncio.gather(*tasks)
        return {k: self.health[k] for k in targets}

    async def scrape(self, target: Target) -> ScrapeHealth:
        """Scrape one target and ingest it; never raises."""
        h = self.health.get(target.key)
        if h is None:
            h = self.health[target.key] = ScrapeHealth(target.key, target.address)
        h.address = target.address
        ts = self.clock()
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(self.config.deadline):
                samples, sketches = await self._fetch(target)
            self.store.ingest(target.labels, ts, samples, sketches)
        except (ScrapeError, httpx.HTTPError, OSError, TimeoutError, sqlite3.Error) as e:
            h.last_error = _describe(e, self.config.deadline)
            h.last_error_at = ts
            h.consecutive_failures += 1
        except Exception as e:  # a bug must cost one target one round, not the loop
            h.last_error = f"internal error: {e!r}"[:300]
            h.last_error_at = ts
            h.consecutive_failures += 1
        else:
            h.last_ok = ts
            h.samples = len(samples)
            h.consecutive_failures = 0
        h.duration = loop.time() - started
        return h

    async def _fetch(self, target: Target):
        base = f"http://{target.address}"
        if self.config.latency:
            metrics, latency = await asyncio.gather(
                self._get(base + "/metrics"), self._get(base + "/latency", optional=True))
        else:
            metrics, latency = await self._get(base + "/metrics"), None
        samples = parse(metrics.decode("utf-8", errors="replace"))
        if len(samples) > self.config.max_samples:
            raise ScrapeError(f"{len(samples)} samples exceed the limit of "
                              f"{self.config.max_samples}")
        sketches = _sketches(latency) if latency else []
        return samples, sketches

    async def _get(self, url: str, optional: bool = False) -> bytes | None:
        limit = self.config.max_bytes
        async with self._client.stream("GET", url) as r:
            if r.status_code != 200:
                if optional:
                    return None
                raise ScrapeError(f"{url.rsplit('/', 1)[-1]} answered {r.status_code}")
            length = r.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise ScrapeError(f"body of {int(length)} bytes exceeds the limit of {limit}")
            chunks, size = [], 0
            async for chunk in r.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise ScrapeError(f"body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
            return b"".join(chunks)

    async def aclose(self) -> None:
        await self._client.aclose()


def _sketches(body: bytes) -> list[tuple[dict[str, str], Mapping[str, object]]]:
    """The /latency document's series; malformed entries are skipped."""
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise ScrapeError(f"latency is not JSON: {e}") from None
    series = doc.get("series") if isinstance(doc, dict) else None
    if not isinstance(series, list):
        raise ScrapeError("latency document has no series list")
    out = []
    for s in series:
        if not isinstance(s, dict):
            continue
        labels, sketch = s.get("labels"), s.get("sketch")
        if (isinstance(labels, dict) and isinstance(sketch, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())):
            out.append((labels, sketch))
    return out


def _describe(e: BaseException, deadline: float) -> str:
    if isinstance(e, TimeoutError | httpx.TimeoutException):
        return f"timed out after {deadline:g}s"
    if isinstance(e, sqlite3.Error):
        return f"store: {e}"
    if isinstance(e, httpx.ConnectError):
        return f"connection failed: {e}" if str(e) else "connection refused"
    return str(e) or type(e).__name__


__all__ = ["Scraper", "ScrapeConfig", "ScrapeHealth", "Target", "WORKLOAD_LABELS", "Sample"]
