"""What one benchmark run measured: plain records shared by the runner and the report."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.controlplane import ControlResult
from bench.load import WrkResult
from bench.procs import Usage
from bench.profile import Profile


@dataclass
class SetupResult:
    name: str
    title: str
    hops: int
    error: str | None = None
    rss_idle_kib: int | None = None
    throughput: WrkResult | None = None
    throughput_usage: Usage | None = None
    latency: dict | None = None
    latency_usage: Usage | None = None
    #: True when the setup has processes of its own (direct has none).
    has_proxy: bool = True

    def rss_load_kib(self) -> int | None:
        seen = [u.rss_max_kib for u in (self.throughput_usage, self.latency_usage) if u]
        return max(seen) if seen else None


@dataclass
class Method:
    quick: bool
    warmup_s: float
    throughput_s: float
    latency_s: float
    latency_warmup_s: float
    rate: float
    wrk_connections: int
    openloop_connections: int
    profile_s: float
    response_bytes: int
    body_bytes: int
    proxy_cpu: int
    load_cpu: int
    #: How many disturbed points may still be measured again, and which were.
    retries_left: int = 0
    retried: list[str] = field(default_factory=list)


@dataclass
class Run:
    started: str
    duration_s: float
    machine: dict[str, str]
    method: Method
    results: list[SetupResult]
    profile: Profile | None = None
    profile_error: str | None = None
    profile_target: str = ""
    selected: list[str] = field(default_factory=list)
    #: Time to ready, memory with 50 pods, propagation (None: not selected).
    control: ControlResult | None = None

    def get(self, name: str) -> SetupResult | None:
        for r in self.results:
            if r.name == name:
                return r
        return None
