"""The query primitives answered by a real Prometheus server, in PromQL.

Each primitive is one instant query evaluated at the window's end, with Linkerd's
shape, e.g. ``sum(rate(response_total{direction="inbound",namespace="x"}[60s])) by
(deployment)``. Latency quantiles come from the Linkerd buckets
(``histogram_quantile``), as Linkerd's do. Counts (``increase``) depart from
Linkerd's ``increase()``, which extrapolates to the window's edges: they are the
counters' growth between the samples at the edges, as the embedded store counts, so
that both backends give the same counts and success rates for the same traffic.

    backend = PrometheusBackend("http://127.0.0.1:9090", scrape_interval=10)
    Queries(backend).stat("deploy", "emojivoto")

It also writes the ``file_sd`` targets a Prometheus scrapes the mesh with
(``write_file_sd``) and the scrape configuration that uses them (``scrape_config``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import httpx

from .errors import QueryError
from .queries import Key, MatcherSpec, Vector
from .scrape import WORKLOAD_LABELS, Target
from .series import matchers
from .window import Window, window

#: labels a query may group by (PromQL needs them spelled, so they are checked)
_LABEL_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class PrometheusUnavailable(Exception):
    """The Prometheus server did not answer, or answered with an error."""


class PrometheusBackend:
    name = "prometheus"
    has_sketches = False

    def __init__(self, url: str, scrape_interval: float = 10.0, timeout: float = 10.0,
                 clock: Callable[[], float] = time.time,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.scrape_interval = scrape_interval
        self.clock = clock
        self.http = httpx.Client(base_url=self.url, timeout=timeout, trust_env=False,
                                 transport=transport)
        self.last_error: str | None = None

    def window(self, spec: str | float, at: float | None = None) -> Window:
        return window(spec, self.clock() if at is None else at, self.scrape_interval)

    # -- PromQL ------------------------------------------------------------

    def query(self, promql: str, at: float) -> list[dict]:
        """One instant query; the result vector."""
        try:
            r = self.http.get("/api/v1/query", params={"query": promql, "time": f"{at:.3f}"})
        except httpx.HTTPError as e:
            self.last_error = f"cannot reach prometheus at {self.url}: {e.__class__.__name__}"
            raise PrometheusUnavailable(self.last_error) from None
        try:
            doc = r.json()
        except ValueError:
            doc = {}
        if r.status_code != 200 or doc.get("status") != "success":
            self.last_error = f"prometheus answered {r.status_code}: {doc.get('error', r.text[:200])}"
            raise PrometheusUnavailable(self.last_error)
        self.last_error = None
        data = doc.get("data", {})
        return data.get("result", []) if data.get("resultType") == "vector" else []

    def ready(self) -> bool:
        try:
            return self.http.get("/-/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def _vector(self, promql: str, by: Sequence[str], at: float) -> dict[Key, float]:
        out: dict[Key, float] = {}
        for item in self.query(promql, at):
            v = float(item["value"][1])
            if math.isnan(v):
                continue
            k = tuple(item["metric"].get(b, "") for b in by)
            out[k] = out.get(k, 0.0) + v
        return out

    def _sum(self, fn: str, metric: str, match: MatcherSpec, w: Window,
             by: Sequence[str]) -> Vector:
        expr = f"{fn}({_selector(metric, match)}[{_dur(w.seconds)}])"
        return self._vector(f"sum({expr}){_by(by)}", by, w.end)

    # -- the Backend protocol ------------------------------------------------

    def increase(self, metric: str, match: MatcherSpec = None, window: str | float = "1m",
                 by: Sequence[str] = (), at: float | None = None) -> Vector:
        """What the counters counted between the last samples at or before the window's
        two edges, as the embedded store counts (``increase()`` would extrapolate to
        the edges, and counts would differ from the embedded store's by up to a
        scrape interval's worth): the difference where no counter reset, Prometheus'
        ``increase`` where one did, the whole value of a series new in the window."""
        w = self.window(window, at)
        sel, d = _selector(metric, match), _dur(w.seconds)
        reset = f"resets({sel}[{d}]) > 0"
        counted = (f"(({sel} - {sel} offset {d}) unless {reset})"
                   f" or (increase({sel}[{d}]) and {reset})"
                   f" or (({sel} + 0) unless ({sel} offset {d} + 0))")
        return self._vector(f"sum({counted}){_by(by)}", by, w.end)

    def rate(self, metric: str, match: MatcherSpec = None, window: str | float = "1m",
             by: Sequence[str] = (), at: float | None = None) -> Vector:
        return self._sum("rate", metric, match, self.window(window, at), by)

    def gauge(self, metric: str, match: MatcherSpec = None, window: str | float = "1m",
              by: Sequence[str] = (), at: float | None = None) -> Vector:
        return self._sum("last_over_time", metric, match, self.window(window, at), by)

    def histogram_quantile(self, q: float, metric_bucket: str, match: MatcherSpec = None,
                           window: str | float = "1m", by: Sequence[str] = (),
                           at: float | None = None) -> dict[Key, float | None]:
        w = self.window(window, at)
        inner = f"sum(increase({_selector(metric_bucket, match)}[{_dur(w.seconds)}])){_by(('le', *by))}"
        return {k: (None if math.isinf(v) else v) for k, v in
                self._vector(f"histogram_quantile({q}, {inner})", by, w.end).items()}

    def latency_quantiles(self, qs: Sequence[float], match: MatcherSpec = None,
                          window: str | float = "1m", by: Sequence[str] = (),
                          at: float | None = None) -> dict[Key, list[float | None]]:
        per_q = [self.histogram_quantile(q, "response_latency_ms_bucket", match, window, by, at)
                 for q in qs]
        keys = set().union(*per_q) if per_q else set()
        return {k: [p.get(k) for p in per_q] for k in keys}

    def workloads(self, match: MatcherSpec = None, window: str | float = "1m",
                  at: float | None = None) -> list[dict[str, str]]:
        w = self.window(window, at)
        by = WORKLOAD_LABELS
        promql = (f"max(max_over_time({_selector('up', match)}[{_dur(w.seconds)}])){_by(by)}"
                  " == 1")
        return [{b: item["metric"].get(b, "") for b in by}
                for item in self.query(promql, w.end)]

    def close(self) -> None:
        self.http.close()


def _dur(seconds: float) -> str:
    return f"{max(1, round(seconds))}s"


def _by(by: Iterable[str]) -> str:
    labels = list(by)
    for label in labels:
        if not label or not set(label) <= _LABEL_OK:
            raise QueryError(f"bad label name {label!r}")
    return f" by ({', '.join(labels)})" if labels else ""


def _selector(metric: str, match: MatcherSpec) -> str:
    ms = [m for m in matchers(match) if m.label != "__name__"]
    return f"{metric}{{{','.join(str(m) for m in ms)}}}" if ms else metric


# -- Prometheus' side: file_sd targets and the scrape config ----------------------------


def file_sd(targets: Iterable[Target]) -> list[dict[str, object]]:
    """``file_sd`` target groups: one per proxy, carrying its workload labels."""
    groups = [{"targets": [t.address],
               "labels": {k: t.labels.get(k, "") for k in WORKLOAD_LABELS}}
              for t in targets]
    return sorted(groups, key=lambda g: g["targets"])  # type: ignore[arg-type,return-value]


def write_file_sd(path: Path, targets: Iterable[Target]) -> bool:
    """Write the target file atomically when it changed; True if written."""
    from shoal.control.state import atomic_write

    data = (json.dumps(file_sd(targets), indent=1, sort_keys=True) + "\n").encode()
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    atomic_write(path, data, 0o644)
    return True


def scrape_config(targets_file: str | Path, interval: float = 10.0,
                  job: str = "shoal-proxy") -> str:
    """A prometheus.yml that scrapes every proxy of the mesh with its workload labels."""
    iv = _dur(interval)
    return (f"global:\n  scrape_interval: {iv}\n  evaluation_interval: {iv}\n"
            f"scrape_configs:\n  - job_name: {job}\n    scrape_interval: {iv}\n"
            f"    scrape_timeout: {_dur(min(interval, 10.0))}\n"
            f"    metrics_path: /metrics\n"
            f"    honor_labels: false\n"
            f"    file_sd_configs:\n      - files: [{json.dumps(str(targets_file))}]\n"
            f"        refresh_interval: {_dur(max(1.0, min(interval, 5.0)))}\n")


__all__ = ["PrometheusBackend", "PrometheusUnavailable", "file_sd", "write_file_sd",
           "scrape_config"]
