"""Proxy metrics: plain counters on the hot path, Prometheus exposition on scrape.

Per request the proxy touches one ``TrafficStats`` (found once per connection or per
authority) and bumps ints in it; a prometheus_client ``Counter.labels().inc()`` costs
ten times as much (DESIGN.md, "Cost on the hot path"). ``ProxyMetrics.collect`` turns
the counters into metric families with linkerd2-proxy's names, labels and buckets
when ``/metrics`` is scraped.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector

from .latency import LatencySketch

#: linkerd2-proxy's response_latency_ms buckets (ms).
LATENCY_BOUNDS: Final[tuple[int, ...]] = (
    1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500,
    1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000,
)
_LE: Final = tuple(str(b) for b in LATENCY_BOUNDS) + ("+Inf",)
#: status codes as label strings, so the hot path never formats an int.
STATUS: Final = tuple(str(i) for i in range(1000))

Labels = tuple[tuple[str, str], ...]


class LatencyHistogram:
    """Linkerd-compatible buckets plus a bounded-error sketch of the same values."""

    __slots__ = ("counts", "sum", "sketch")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BOUNDS) + 1)
        self.sum = 0.0
        self.sketch = LatencySketch()

    def observe(self, ms: float) -> None:
        self.counts[bisect_left(LATENCY_BOUNDS, ms)] += 1
        self.sum += ms
        self.sketch.add(ms)

    def cumulative(self) -> list[tuple[str, int]]:
        out, total = [], 0
        for le, n in zip(_LE, self.counts, strict=True):
            total += n
            out.append((le, total))
        return out


class TrafficStats:
    """Request/response counters for one label set (direction, target, peer, tls)."""

    __slots__ = ("labels", "requests", "responses", "latency")

    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        self.requests = 0
        # (status_code, classification, grpc_status, error) -> count
        self.responses: dict[tuple[str, str, str, str], int] = {}
        # status_code -> histogram of time to first response byte
        self.latency: dict[str, LatencyHistogram] = {}

    def observe_latency(self, status: int, ms: float) -> None:
        code = STATUS[status] if 0 <= status < 1000 else str(status)
        h = self.latency.get(code)
        if h is None:
            h = self.latency[code] = LatencyHistogram()
        h.observe(ms)

    def response_ended(self, status: int, classification: str,
                       grpc_status: int | None = None, error: str = "") -> None:
        code = STATUS[status] if 0 <= status < 1000 else str(status)
        key = (code, classification, "" if grpc_status is None else str(grpc_status), error)
        r = self.responses
        r[key] = r.get(key, 0) + 1


class RouteStats(TrafficStats):
    """Per-route counters: effective (what the caller saw) and actual (each attempt)."""

    __slots__ = ("actual_requests", "actual_responses", "retryable")

    def __init__(self, labels: Labels) -> None:
        super().__init__(labels)
        self.actual_requests = 0
        self.actual_responses: dict[tuple[str, str], int] = {}
        self.retryable: dict[str, int] = {}  # skipped reason ("" when retried) -> count

    def attempt_ended(self, status: int, classification: str) -> None:
        key = (STATUS[status] if 0 <= status < 1000 else str(status), classification)
        self.actual_responses[key] = self.actual_responses.get(key, 0) + 1

    def retry(self, skipped: str = "") -> None:
        self.retryable[skipped] = self.retryable.get(skipped, 0) + 1


class TcpStats:
    """Connection counters for one label set; bytes are added by the connections."""

    __slots__ = ("labels", "opened", "open", "read_bytes", "write_bytes", "closes")

    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        self.opened = 0
        self.open = 0
        self.read_bytes = 0
        self.write_bytes = 0
        self.closes: dict[str, int] = {}

    def connection_opened(self) -> None:
        self.opened += 1
        self.open += 1

    def connection_closed(self, errno: str = "") -> None:
        self.open -= 1
        self.closes[errno] = self.closes.get(errno, 0) + 1


class ProxyMetrics:
    """Every counter of one proxy process, and its Prometheus exposition."""

    def __init__(self) -> None:
        self.traffic: dict[Labels, TrafficStats] = {}
        self.tcp: dict[Labels, TcpStats] = {}
        self.routes: dict[Labels, RouteStats] = {}
        # (direction, error) -> count: malformed input, refused connections, ...
        self.errors: dict[tuple[str, str], int] = {}
        self.cert_expiry: float | None = None
        self.tap_subscriptions: Callable[[], int] = lambda: 0  # set by the runtime
        self.started = time.time()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        ProcessCollector(registry=self.registry)

    def traffic_stats(self, labels: Mapping[str, str] | Labels) -> TrafficStats:
        key = tuple(labels.items()) if isinstance(labels, Mapping) else labels
        s = self.traffic.get(key)
        if s is None:
            s = self.traffic[key] = TrafficStats(key)
        return s

    def route_stats(self, labels: Mapping[str, str]) -> RouteStats:
        key = tuple(labels.items())
        s = self.routes.get(key)
        if s is None:
            s = self.routes[key] = RouteStats(key)
        return s

    def tcp_stats(self, labels: Mapping[str, str] | Labels) -> TcpStats:
        key = tuple(labels.items()) if isinstance(labels, Mapping) else labels
        s = self.tcp.get(key)
        if s is None:
            s = self.tcp[key] = TcpStats(key)
        return s

    def error(self, direction: str, error: str) -> None:
        key = (direction, error)
        self.errors[key] = self.errors.get(key, 0) + 1

    # -- exposition -------------------------------------------------------

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield from self._traffic("", list(self.traffic.values()))
        routes = list(self.routes.values())
        yield from self._traffic("route_", routes)
        areq = Metric("route_actual_request", "Requests sent per route, retries included.",
                      "counter")
        arsp = Metric("route_actual_response", "Responses per route, retries included.",
                      "counter")
        retr = Metric("route_retryable", "Retryable failures, retried or skipped.", "counter")
        for r in routes:
            base = dict(r.labels)
            areq.add_sample("route_actual_request_total", base, r.actual_requests)
            for (code, cls), n in list(r.actual_responses.items()):
                arsp.add_sample("route_actual_response_total",
                                dict(base, status_code=code, classification=cls), n)
            for skipped, n in list(r.retryable.items()):
                retr.add_sample("route_retryable_total",
                                dict(base, skipped=skipped) if skipped else base, n)
        yield from (areq, arsp, retr)
        yield from self._tcp_and_process()

    def _traffic(self, prefix: str, all_stats: Sequence[TrafficStats]) -> Iterator[Metric]:
        req = Metric(f"{prefix}request", "Total count of HTTP requests.", "counter")
        rsp = Metric(f"{prefix}response", "Total count of HTTP responses.", "counter")
        lat = Metric(f"{prefix}response_latency_ms", "Elapsed times between a request's "
                     "headers being received and its response stream completing.", "histogram")
        for stats in all_stats:
            base = dict(stats.labels)
            req.add_sample(f"{prefix}request_total", base, stats.requests)
            for (code, cls, grpc, err), n in list(stats.responses.items()):
                labels = dict(base, status_code=code, classification=cls)
                if grpc:
                    labels["grpc_status"] = grpc
                if err:
                    labels["error"] = err
                rsp.add_sample(f"{prefix}response_total", labels, n)
            for code, h in list(stats.latency.items()):
                labels = dict(base, status_code=code)
                for le, n in h.cumulative():
                    lat.add_sample(f"{prefix}response_latency_ms_bucket", dict(labels, le=le), n)
                lat.add_sample(f"{prefix}response_latency_ms_count", labels, sum(h.counts))
                lat.add_sample(f"{prefix}response_latency_ms_sum", labels, h.sum)
        yield from (req, rsp, lat)

    def _tcp_and_process(self) -> Iterator[Metric]:

        opened = Metric("tcp_open", "Total count of opened connections.", "counter")
        live = Metric("tcp_open_connections", "Number of currently-open connections.", "gauge")
        rd = Metric("tcp_read_bytes", "Total count of bytes read from peers.", "counter")
        wr = Metric("tcp_write_bytes", "Total count of bytes written to peers.", "counter")
        closed = Metric("tcp_close", "Total count of closed connections.", "counter")
        for t in list(self.tcp.values()):
            base = dict(t.labels)
            opened.add_sample("tcp_open_total", base, t.opened)
            live.add_sample("tcp_open_connections", base, t.open)
            rd.add_sample("tcp_read_bytes_total", base, t.read_bytes)
            wr.add_sample("tcp_write_bytes_total", base, t.write_bytes)
            for errno, n in list(t.closes.items()):
                closed.add_sample("tcp_close_total", dict(base, errno=errno), n)
        yield from (opened, live, rd, wr, closed)

        errs = Metric("proxy_errors", "Inputs the proxy refused or could not serve.", "counter")
        for (direction, error), n in list(self.errors.items()):
            errs.add_sample("proxy_errors_total", {"direction": direction, "error": error}, n)
        yield errs

        taps = Metric("tap_subscriptions", "Tap subscriptions open on this proxy.", "gauge")
        taps.add_sample("tap_subscriptions", {}, self.tap_subscriptions())
        yield taps

        if self.cert_expiry is not None:
            exp = Metric("identity_cert_expiration_timestamp_seconds",
                         "Time when this proxy's current certificate expires.", "gauge")
            exp.add_sample("identity_cert_expiration_timestamp_seconds", {}, self.cert_expiry)
            yield exp

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def latency_json(self) -> dict[str, object]:
        """The sketches for the control plane: one entry per label set and status code."""
        series = []
        for stats in [*self.traffic.values(), *self.routes.values()]:
            for code, h in list(stats.latency.items()):
                series.append({"labels": dict(stats.labels, status_code=code),
                               "sketch": h.sketch.to_json()})
        return {"alpha": 0.01, "series": series}
