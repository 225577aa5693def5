"""Synthetic proxies for tests and benchmarks: real ``ProxyMetrics`` with traffic.

``SyntheticProxy`` fills the proxy's own counters (the same code path as live
requests), so its ``/metrics`` text and ``/latency`` sketches are exactly what a
proxy with that traffic would expose.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ..proxy.metrics import ProxyMetrics, TcpStats, TrafficStats

IDENTITY = "{sa}.{ns}.serviceaccount.identity.shoal.local"


def workload(ns: str, deploy: str, i: int = 0, rs: str = "5f7c8d9b4") -> dict[str, str]:
    """Workload labels of pod ``i`` of ``deploy``."""
    return {"namespace": ns, "deployment": deploy, "pod": f"{deploy}-{rs}-p{i:04d}",
            "pod_template_hash": rs, "serviceaccount": deploy}


class SyntheticProxy:
    """One proxy: outbound to ``peers`` (workload labels), inbound from ``clients``
    (a client ``None`` is an unmeshed one; ``clients=None`` is one unmeshed client)."""

    def __init__(self, me: dict[str, str], peers: list[dict[str, str]],
                 clients: list[dict[str, str] | None] | None = None, *, tls: bool = True,
                 codes: tuple[int, ...] = (200, 200, 200, 404, 500),
                 latency: Callable[[random.Random], float] | None = None,
                 seed: int = 0) -> None:
        self.me = me
        self.metrics = ProxyMetrics()
        self.rnd = random.Random(seed)
        self.codes = codes
        self.latency = latency or (lambda r: r.lognormvariate(3.0, 1.0))
        self.out: list[tuple[TrafficStats, TcpStats]] = []
        for i, p in enumerate(peers):
            authority = f"{p['deployment']}.{p['namespace']}.svc.cluster.local:8080"
            sec = ({"tls": "true", "server_id": IDENTITY.format(sa=p["serviceaccount"],
                                                               ns=p["namespace"])}
                   if tls else {"tls": "no_identity",
                                "no_tls_reason": "not_provided_by_service_discovery"})
            dst = {"dst_namespace": p["namespace"], "dst_service": p["deployment"],
                   "dst_deployment": p["deployment"], "dst_pod": p["pod"],
                   "dst_pod_template_hash": p["pod_template_hash"],
                   "dst_serviceaccount": p["serviceaccount"]}
            addr = f"10.1.{i // 250}.{i % 250}:8080"
            base = {"direction": "outbound", "authority": authority, "target_addr": addr,
                    **sec, **dst}
            tcp = {"direction": "outbound", "peer": "dst", "target_addr": addr, **sec, **dst}
            self.out.append((self.metrics.traffic_stats(base), self.metrics.tcp_stats(tcp)))
        self.inb: list[tuple[TrafficStats, TcpStats]] = []
        for c in [None] if clients is None else clients:
            sec = ({"tls": "true", "client_id": IDENTITY.format(sa=c["serviceaccount"],
                                                               ns=c["namespace"])}
                   if c and tls else {"tls": "no_identity", "no_tls_reason": "no_tls_from_remote"})
            base = {"direction": "inbound", "target_addr": "127.0.0.1:8080", **sec}
            self.inb.append((self.metrics.traffic_stats(base),
                             self.metrics.tcp_stats(dict(base, peer="src"))))
        for _, t in self.out + self.inb:
            t.connection_opened()

    def traffic(self, requests_per_series: int) -> None:
        """Requests on every outbound and inbound label set."""
        r = self.rnd
        for stats, tcp in self.out + self.inb:
            for _ in range(requests_per_series):
                self.request(stats, tcp, r.choice(self.codes), self.latency(r))

    @staticmethod
    def request(stats: TrafficStats, tcp: TcpStats, code: int, ms: float) -> None:
        stats.requests += 1
        stats.observe_latency(code, ms)
        stats.response_ended(code, "failure" if code >= 500 else "success")
        tcp.read_bytes += 200
        tcp.write_bytes += 1200

    def exposition(self) -> str:
        return self.metrics.exposition().decode()

    def sketches(self) -> list[tuple[dict[str, str], dict[str, object]]]:
        doc = self.metrics.latency_json()
        return [(s["labels"], s["sketch"]) for s in doc["series"]]  # type: ignore[index,union-attr]


class Mesh:
    """Synthetic proxies scraped into a store on a fake clock (tests, benchmarks)."""

    def __init__(self, store, proxies: list[SyntheticProxy], start: float = 1_700_000_000.0,
                 interval: float = 10.0) -> None:
        from .exposition import parse
        self._parse = parse
        self.store = store
        self.proxies = proxies
        self.now = start
        self.interval = interval

    def scrape(self) -> None:
        """Scrape every proxy at ``now``, then advance ``now`` by one interval."""
        for p in self.proxies:
            self.store.ingest(p.me, self.now, self._parse(p.exposition()), p.sketches())
        self.now += self.interval

    def run(self, scrapes: int, requests_per_series: int) -> None:
        for _ in range(scrapes):
            for p in self.proxies:
                p.traffic(requests_per_series)
            self.scrape()
