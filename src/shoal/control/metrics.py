"""The control plane's metrics part: scrape loop, query backend, profiles, health.

Every ``scrape_interval`` the proxies of the registry's running pods are scraped
(admin ``/metrics`` and ``/latency``) into the embedded store under
``$SHOAL_HOME/metrics``, with their workload labels attached. With a
``prometheus_url`` the queries are PromQL against that server instead, and the
store is not fed. Either way ``$SHOAL_HOME/prometheus/targets.json`` holds the
``file_sd`` targets, so a Prometheus can be pointed at the mesh at any time.

    metrics = Metrics.attach(plane, MetricsConfig(scrape_interval=1.0))
    task = asyncio.create_task(metrics.run(stop), name="metrics")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shoal.viz.embedded import EmbeddedBackend
from shoal.viz.queries import Queries
from shoal.viz.scrape import ScrapeConfig, Scraper, Target
from shoal.viz.store import Store, StoreConfig
from shoal.viz.window import format_duration, parse_duration

from .errors import InvalidRequest
from .profile_store import ProfileStore

if TYPE_CHECKING:
    from .plane import ControlPlane

log = logging.getLogger("shoal.control.metrics")

#: a target failing this many scrapes in a row makes the component unhealthy
FAILING_AFTER = 2


@dataclass(frozen=True)
class MetricsConfig:
    """Keys: ``scrape_interval`` (duration, 1s..10m, default 10s), ``scrape_timeout``,
    ``prometheus_url`` (query a Prometheus server instead of the embedded store)."""

    scrape_interval: float = 10.0
    scrape_timeout: float | None = None
    prometheus_url: str | None = None

    @classmethod
    def parse(cls, env: Mapping[str, str]) -> MetricsConfig:
        kw: dict[str, Any] = {}
        try:
            if env.get("scrape_interval"):
                kw["scrape_interval"] = parse_duration(env["scrape_interval"])
            if env.get("scrape_timeout"):
                kw["scrape_timeout"] = parse_duration(env["scrape_timeout"])
        except ValueError as e:
            raise InvalidRequest(str(e)) from None
        if env.get("prometheus_url"):
            url = env["prometheus_url"].rstrip("/")
            if not url.startswith(("http://", "https://")):
                raise InvalidRequest(f"prometheus url {url!r} must start with http:// or https://")
            kw["prometheus_url"] = url
        config = cls(**kw)
        try:
            config.scrape()
        except ValueError as e:
            raise InvalidRequest(str(e)) from None
        return config

    def scrape(self) -> ScrapeConfig:
        return ScrapeConfig(interval=self.scrape_interval, timeout=self.scrape_timeout)


class Metrics:
    """Live handles of the metrics part; ``plane.metrics`` once attached."""

    def __init__(self, plane: ControlPlane, config: MetricsConfig | None = None) -> None:
        self.plane = plane
        self.config = config or MetricsConfig()
        home = plane.config.home
        self.targets_file = home / "prometheus" / "targets.json"
        self.store = Store(home / "metrics", StoreConfig.parse({}))
        self.scraper = Scraper(self.store, self.targets, self.config.scrape())
        if self.config.prometheus_url:
            from shoal.viz.prometheus import PrometheusBackend

            self.backend: Any = PrometheusBackend(self.config.prometheus_url,
                                                  self.config.scrape_interval)
        else:
            self.backend = EmbeddedBackend(self.store, self.config.scrape_interval)
        self.queries = Queries(self.backend)
        self.profiles = ProfileStore(home / "profiles", plane.destination)
        plane.registry.listeners.append(self.write_targets)
        self.write_targets()

    @classmethod
    def attach(cls, plane: ControlPlane, config: MetricsConfig | None = None) -> Metrics:
        """The plane's metrics part, created (and its health probe registered) once."""
        existing = getattr(plane, "metrics", None)
        if isinstance(existing, Metrics):
            return existing
        metrics = cls(plane, config)
        plane.metrics = metrics  # type: ignore[attr-defined]
        plane.probes["metrics"] = metrics.health
        return metrics

    # -- scraping ---------------------------------------------------------

    def targets(self) -> list[Target]:
        """The proxies to scrape: running pods that registered an admin address."""
        out = []
        for p in list(self.plane.registry.pods.values()):
            if p.admin and p.status == "Running":
                out.append(Target(p.admin, {
                    "namespace": p.namespace, "deployment": p.deployment, "pod": p.name,
                    "pod_template_hash": p.pod_template_hash,
                    "serviceaccount": p.serviceaccount}))
        return sorted(out, key=lambda t: t.key)

    def write_targets(self) -> None:
        from shoal.viz.prometheus import write_file_sd

        try:
            write_file_sd(self.targets_file, self.targets())
        except Exception as e:  # never break a registry change over a target file
            log.warning("cannot write prometheus targets: %s", e)

    async def run(self, stop: asyncio.Event) -> None:
        """Scrape until ``stop`` (embedded store only; Prometheus scrapes for itself)."""
        try:
            if not self.config.prometheus_url:
                await self.scraper.run(stop)
            else:
                await stop.wait()
        finally:
            await self.scraper.aclose()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.store.close()
        if self.config.prometheus_url:
            self.backend.close()

    # -- health -----------------------------------------------------------

    def target_health(self) -> list[dict[str, Any]]:
        wanted = {t.key for t in self.targets()}
        return [h.to_json() for k, h in sorted(self.scraper.health.items()) if k in wanted]

    def health(self) -> tuple[bool, str]:
        every = format_duration(self.config.scrape_interval)
        if self.config.prometheus_url:
            ready = self.backend.ready()
            if not ready:
                return False, f"prometheus at {self.config.prometheus_url} is not ready"
            return True, f"querying prometheus at {self.config.prometheus_url}"
        targets = self.target_health()
        failing = [h for h in targets if h["consecutive_failures"] >= FAILING_AFTER]
        if failing:
            detail = "; ".join(f"{h['target']}: {h['last_error']}" for h in failing[:5])
            return False, (f"{len(failing)} of {len(targets)} scrape targets failing: "
                           f"{detail}")
        return True, f"{len(targets)} scrape targets, every {every}"
