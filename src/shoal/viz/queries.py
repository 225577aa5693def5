"""Golden-metric queries (stat, edges, history) over any metrics backend.

Two layers. ``Backend`` is the small set of primitives a store must answer, named
after the PromQL they stand for (``sum(increase(m{...}[w])) by (...)``,
``histogram_quantile``, ...): the embedded store implements it in ``embedded``,
a Prometheus server will implement it with PromQL. ``Queries`` builds what the
API and the CLI show from those primitives only, with Linkerd's query shapes, so
both backends give the same ``stat`` on the same traffic.

>>> import tempfile
>>> from shoal.viz.store import Store
>>> from shoal.viz.embedded import EmbeddedBackend
>>> q = Queries(EmbeddedBackend(Store(tempfile.mkdtemp()), clock=lambda: 1000.0))
>>> q.stat("deploy", "emojivoto", window="1m")
[]
>>> q.stat("deploy", window="5s")
Traceback (most recent call last):
...
shoal.viz.errors.WindowTooShort: window 5s is shorter than the scrape interval 10s: no rate can be computed from one sample
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

from .errors import QueryError, UnknownResource
from .series import Matcher, MatcherSpec, matchers
from .window import Window, time_range

Key = tuple[str, ...]
Vector = dict[Key, float]
QUANTILES = (0.5, 0.95, 0.99)

__all__ = ["Backend", "Queries", "StatRow", "Edge", "Ref", "Kind", "resource_kind",
           "bucket_quantile", "Key", "Vector", "MatcherSpec"]


class Backend(Protocol):
    """What a metrics store answers; every method is one PromQL expression.

    ``window`` is a duration (``"1m"`` or seconds) ending at ``at`` (default now);
    results are keyed by the values of the ``by`` labels, in order.

    Optional, for range queries in one pass (``Queries`` loops over the instant
    primitives when a backend lacks them):
    ``increase_range(metric, match, times, window, by=(), rate=False) -> list[Vector]``,
    ``gauge_range(metric, match, times, window, by=()) -> list[Vector]``, and
    ``increase_series(metric, match, times, window, by=(), rate=False)``, which gives
    ``increase_range`` as ``Queries.series`` returns it (per group, its points).
    """

    name: str
    scrape_interval: float

    def window(self, spec: str | float, at: float | None = None) -> Window:
        """The validated window (raises BadWindow / WindowTooShort)."""
        ...

    def increase(self, metric: str, match: MatcherSpec = None, window: str | float = "1m",
                 by: Sequence[str] = (), at: float | None = None) -> Vector:
        """``sum(increase(metric{match}[window])) by (by)``."""
        ...

    def rate(self, metric: str, match: MatcherSpec = None, window: str | float = "1m",
             by: Sequence[str] = (), at: float | None = None) -> Vector:
        """``sum(rate(metric{match}[window])) by (by)``."""
        ...

    def gauge(self, metric: str, match: MatcherSpec = None, window: str | float = "1m",
              by: Sequence[str] = (), at: float | None = None) -> Vector:
        """``sum(metric{match}) by (by)``, the latest value inside the window."""
        ...

    def histogram_quantile(self, q: float, metric_bucket: str, match: MatcherSpec = None,
                           window: str | float = "1m", by: Sequence[str] = (),
                           at: float | None = None) -> dict[Key, float | None]:
        """``histogram_quantile(q, sum(increase(metric_bucket{match}[w])) by (le, by))``."""
        ...

    def latency_quantiles(self, qs: Sequence[float], match: MatcherSpec = None,
                          window: str | float = "1m", by: Sequence[str] = (),
                          at: float | None = None) -> dict[Key, list[float | None]]:
        """Response latency quantiles (ms) per group: the most precise the backend has
        (the embedded store: sketches; Prometheus: the buckets)."""
        ...

    def workloads(self, match: MatcherSpec = None, window: str | float = "1m",
                  at: float | None = None) -> list[dict[str, str]]:
        """Workload labels of the proxies scraped inside the window."""
        ...


def bucket_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile`` on (upper bound, cumulative count) pairs.

    Linear interpolation inside the bucket holding the rank; the +Inf bucket answers
    the highest finite bound; None when there were no observations.

    >>> bucket_quantile(0.5, [(10, 0), (20, 10), (math.inf, 10)])
    15.0
    """
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    b = sorted(buckets)
    if len(b) < 2 or not math.isinf(b[-1][0]):
        return None
    # cumulative counts must not decrease (rounding in a scrape can break that)
    fixed, top = [], 0.0
    for le, c in b:
        top = max(top, c)
        fixed.append((le, top))
    total = fixed[-1][1]
    if total <= 0:
        return None
    rank = q * total
    for i, (le, c) in enumerate(fixed):
        if c >= rank:
            if math.isinf(le):
                return fixed[-2][0]
            lo, lo_count = (0.0, 0.0) if i == 0 else fixed[i - 1]
            if i == 0 and le <= 0:
                return le
            in_bucket = c - lo_count
            return lo + (le - lo) * ((rank - lo_count) / in_bucket if in_bucket else 1.0)
    return fixed[-2][0]


# -- resources -----------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A resource type and the labels that name one (besides its namespace)."""

    name: str
    labels: tuple[str, ...]

    def group(self, prefix: str = "") -> tuple[str, ...]:
        return (prefix + "namespace", *(prefix + label for label in self.labels))

    def row_name(self, values: Sequence[str]) -> str:
        """The resource's name from its label values (after the namespace)."""
        if not self.labels:
            return values[0]
        if self.name == "replicaset":
            return f"{values[1]}-{values[2]}" if values[2] else values[1]
        return values[1]

    def name_matchers(self, name: str, prefix: str = "") -> list[Matcher]:
        if not self.labels:
            return [Matcher(prefix + "namespace", name)]
        if self.name == "replicaset":
            deploy, _, h = name.rpartition("-")
            if not deploy:
                raise QueryError(f"replica set name {name!r} is not DEPLOYMENT-HASH")
            return [Matcher(prefix + "deployment", deploy),
                    Matcher(prefix + "pod_template_hash", h)]
        return [Matcher(prefix + self.labels[0], name)]


KINDS = {
    "namespace": Kind("namespace", ()),
    "deployment": Kind("deployment", ("deployment",)),
    "replicaset": Kind("replicaset", ("deployment", "pod_template_hash")),
    "pod": Kind("pod", ("pod",)),
    "service": Kind("service", ("service",)),
    "serviceaccount": Kind("serviceaccount", ("serviceaccount",)),
    "authority": Kind("authority", ("authority",)),
}
_ALIASES = {
    "ns": "namespace", "namespaces": "namespace",
    "deploy": "deployment", "deployments": "deployment",
    "rs": "replicaset", "replicasets": "replicaset",
    "po": "pod", "pods": "pod",
    "svc": "service", "services": "service",
    "sa": "serviceaccount", "serviceaccounts": "serviceaccount",
    "au": "authority", "authorities": "authority",
}


def resource_kind(word: str) -> Kind:
    """``deploy`` -> the deployment kind; UnknownResource with the accepted words."""
    w = word.strip().lower() if isinstance(word, str) else ""
    kind = KINDS.get(_ALIASES.get(w, w))
    if kind is None:
        raise UnknownResource(
            f"unknown resource type {word!r}: use one of namespace (ns), deployment "
            "(deploy), replicaset (rs), pod (po), service (svc), serviceaccount (sa), "
            "authority (au)")
    return kind


@dataclass(frozen=True)
class Ref:
    """One resource named by the user: ``deploy/web`` in namespace ``emojivoto``."""

    kind: Kind
    name: str
    namespace: str | None = None

    @classmethod
    def parse(cls, text: str | Ref, namespace: str | None = None) -> Ref:
        if isinstance(text, Ref):
            return text
        word, sep, name = text.partition("/")
        if not sep or not name:
            raise UnknownResource(f"expected TYPE/NAME, got {text!r}")
        return cls(resource_kind(word), name, namespace)


# -- results -------------------------------------------------------------


@dataclass
class StatRow:
    """One row of ``stat``; ``to_json`` is the `-o json` object of DESIGN.md."""

    namespace: str
    kind: str
    name: str
    success: float | None = None
    rps: float | None = None
    latency_ms_p50: float | None = None
    latency_ms_p95: float | None = None
    latency_ms_p99: float | None = None
    tcp_open_connections: float | None = None
    tcp_read_bytes_rate: float | None = None
    tcp_write_bytes_rate: float | None = None
    #: proxies of this resource scraped in the window (None in the callers' views)
    meshed_pods: int | None = None
    #: responses counted in the window
    requests: float = 0.0

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class Edge:
    """Who talks to whom; ``secured`` when every connection was mTLS."""

    src: str
    dst: str
    src_namespace: str
    dst_namespace: str
    secured: bool
    no_tls_reason: str = ""
    client_id: str = ""
    server_id: str = ""
    #: the callers' outbound view of the edge's HTTP traffic (None without requests)
    rps: float | None = None
    success: float | None = None
    latency_ms_p99: float | None = None

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class _View:
    """Which series answer a stat: the selection, the row labels and the TCP peer."""

    match: tuple[Matcher, ...]
    group: tuple[str, ...]
    kind: Kind
    peer: str
    inbound: bool


class Queries:
    """stat, edges and history, built on a ``Backend``'s primitives only."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    # -- stat -------------------------------------------------------------

    def stat(self, resource_type: str, namespace: str | None = None, name: str | None = None,
             window: str | float = "1m", to: str | Ref | None = None,
             from_: str | Ref | None = None, at: float | None = None,
             match: MatcherSpec = None) -> list[StatRow]:
        """Golden metrics per resource; ``namespace=None`` is every namespace (-A).

        Without ``to``/``from_`` the rows are the resources' inbound view; ``to`` is
        the callers' outbound view of the traffic to ``to``; ``from_`` gives one row
        per destination of ``from_``'s outbound traffic; services are always seen
        from their callers. ``match`` adds label matchers (e.g. a selector).
        """
        view = self._view(resource_type, namespace, name, to, from_, matchers(match))
        w = self.backend.window(window, at)
        at, span = w.end, w.seconds
        b = self.backend
        m = list(view.match)
        n_group = len(view.group)
        rows: dict[Key, StatRow] = {}

        def row(k: Key) -> StatRow:
            r = rows.get(k)
            if r is None:
                r = rows[k] = StatRow(k[0], view.kind.name, view.kind.row_name(k))
            return r

        ok: dict[Key, float] = {}
        for k, v in b.increase("response_total", m, span, (*view.group, "classification"),
                               at).items():
            r = row(k[:n_group])
            r.requests += v
            if k[n_group] != "failure":
                ok[k[:n_group]] = ok.get(k[:n_group], 0.0) + v
        rps = b.rate("response_total", m, span, view.group, at)
        for k, r in rows.items():
            r.rps = rps.get(k, 0.0)
            if r.requests > 0:
                r.success = ok.get(k, 0.0) / r.requests
        for k, qs in b.latency_quantiles(QUANTILES, m, span, view.group, at).items():
            if k in rows and rows[k].requests > 0:
                rows[k].latency_ms_p50, rows[k].latency_ms_p95, rows[k].latency_ms_p99 = qs
        tcp = [*m, Matcher("peer", view.peer)]
        for k, v in b.gauge("tcp_open_connections", tcp, span, view.group, at).items():
            row(k).tcp_open_connections = v
        for k, v in b.rate("tcp_read_bytes_total", tcp, span, view.group, at).items():
            row(k).tcp_read_bytes_rate = v
        for k, v in b.rate("tcp_write_bytes_total", tcp, span, view.group, at).items():
            row(k).tcp_write_bytes_rate = v
        if view.inbound:
            pods: dict[Key, set[str]] = {}
            wl = [x for x in m if x.label != "direction"]
            for labels in b.workloads(wl, span, at):
                k = tuple(labels.get(g, "") for g in view.group)
                pods.setdefault(k, set()).add(labels.get("pod", ""))
            for k, p in pods.items():
                row(k).meshed_pods = len(p)
        out = [r for k, r in rows.items() if all(k[: 1 + len(view.kind.labels)])]
        return sorted(out, key=lambda r: (r.namespace, r.name))

    def _view(self, resource_type: str, namespace: str | None, name: str | None,
              to: str | Ref | None, from_: str | Ref | None,
              extra: list[Matcher]) -> _View:
        kind = resource_kind(resource_type)
        if to is not None and from_ is not None:
            raise QueryError("--to and --from flags are mutually exclusive")
        to_ref = Ref.parse(to, namespace) if to is not None else None
        from_ref = Ref.parse(from_, namespace) if from_ is not None else None
        if kind.name == "authority" and to_ref is None and from_ref is None:
            from_ref = None  # authorities exist only on the callers' side
        dst_rows = kind.name in ("service", "authority") or from_ref is not None
        if kind.name in ("service", "authority") and to_ref is not None:
            raise QueryError(f"--to is not supported for {kind.name} rows: use --from")
        ms: list[Matcher] = list(extra)
        if dst_rows:
            prefix = "" if kind.name == "authority" else "dst_"
            ms.append(Matcher("direction", "outbound"))
            if namespace is not None:
                ms.append(Matcher("dst_namespace", namespace) if prefix else
                          Matcher("namespace", namespace))
            if name is not None:
                ms += kind.name_matchers(name, prefix)
            if from_ref is not None:
                ms += _ref_matchers(from_ref, "")
            group = kind.group(prefix) if prefix else ("namespace", "authority")
            return _View(tuple(ms), group, kind, "dst", False)
        if namespace is not None:
            ms.append(Matcher("namespace", namespace))
        if name is not None:
            ms += kind.name_matchers(name)
        if to_ref is not None:
            ms.append(Matcher("direction", "outbound"))
            ms += _ref_matchers(to_ref, "dst_")
            return _View(tuple(ms), kind.group(), kind, "dst", False)
        ms.append(Matcher("direction", "inbound"))
        return _View(tuple(ms), kind.group(), kind, "src", True)

    # -- edges ------------------------------------------------------------

    def edges(self, resource_type: str, namespace: str | None = None,
              window: str | float = "1m", at: float | None = None) -> list[Edge]:
        """Connections seen in the window between resources, with their TLS state.

        From the callers' outbound series (``dst_*`` labels, ``tls``, ``server_id``,
        ``no_tls_reason``); ``client_id`` from the servers' inbound series whose
        client identity is the caller's service account.
        """
        kind = resource_kind(resource_type)
        if kind.name in ("service", "authority"):
            raise UnknownResource(f"edges are between workloads, not {kind.name}s: use "
                                  "deploy, rs, po, sa or ns")
        w = self.backend.window(window, at)
        b, at, span = self.backend, w.end, w.seconds
        src, dst = kind.group(), kind.group("dst_")
        tls = ("tls", "server_id", "no_tls_reason")
        by = (*src, *dst, "serviceaccount", *tls)
        out_match = [Matcher("direction", "outbound")]
        seen: dict[Key, float] = {}
        total: dict[Key, float] = {}  # per (src, dst): responses, and successful ones
        ok: dict[Key, float] = {}
        n = len(src)
        for k, v in b.increase("response_total", out_match, span, (*by, "classification"),
                               at).items():
            seen[k[:-1]] = seen.get(k[:-1], 0.0) + v
            pair = k[:2 * n]
            total[pair] = total.get(pair, 0.0) + v
            if k[-1] != "failure":
                ok[pair] = ok.get(pair, 0.0) + v
        for k, v in b.gauge("tcp_open_connections", [*out_match, Matcher("peer", "dst")],
                            span, by, at).items():
            seen[k] = seen.get(k, 0.0) + v
        clients: dict[tuple[Key, str], str] = {}
        in_by = (*src, "client_id")
        for k, v in b.increase("response_total", [Matcher("direction", "inbound"),
                                                  Matcher("tls", "true")], span, in_by,
                               at).items():
            if v > 0 and k[-1]:
                clients[(k[:-1], _identity_prefix(k[-1]))] = k[-1]
        edges: dict[Key, Edge] = {}
        for k, v in seen.items():
            if v <= 0:
                continue
            s_key, d_key, sa = k[:n], k[n:2 * n], k[2 * n]
            tls_value, server_id, reason = k[2 * n + 1:]
            if not all(s_key) or not all(d_key):
                continue
            if namespace is not None and namespace not in (s_key[0], d_key[0]):
                continue
            e_key = (*s_key, *d_key)
            secured = tls_value == "true"
            e = edges.get(e_key)
            if e is None:
                e = edges[e_key] = Edge(kind.row_name(s_key), kind.row_name(d_key), s_key[0],
                                        d_key[0], secured)
                e.client_id = clients.get((d_key, f"{sa}.{s_key[0]}."), "")
            if secured:
                e.server_id = e.server_id or server_id
            else:
                e.secured = False
                e.no_tls_reason = e.no_tls_reason or reason or tls_value
        p99 = b.latency_quantiles((0.99,), out_match, span, (*src, *dst), at) \
            if any(total.get(k) for k in edges) else {}
        for k, e in edges.items():
            if total.get(k):
                e.rps = total[k] / span
                e.success = ok.get(k, 0.0) / total[k]
                e.latency_ms_p99 = (p99.get(k) or [None])[0]
        return sorted(edges.values(), key=lambda e: (e.src_namespace, e.src, e.dst_namespace,
                                                     e.dst))

    # -- history ----------------------------------------------------------

    def series(self, metric: str, match: MatcherSpec = None, *, start: float, end: float,
               step: float, fn: str = "rate", by: Sequence[str] = (), q: float | None = None,
               window: str | float | None = None) -> dict[Key, list[tuple[float, float | None]]]:
        """One primitive evaluated at start, start+step, ... end (``window`` = step).

        ``fn``: ``rate``, ``increase``, ``gauge``, ``histogram_quantile`` (metric is the
        ``_bucket`` series) or ``latency_quantile`` (sketches when the backend has them).
        """
        times = time_range(start, end, step, self.backend.scrape_interval)
        span = self.backend.window(window if window is not None else step, end).seconds
        b = self.backend
        fast = getattr(b, "increase_series", None)
        if fn in ("rate", "increase") and fast is not None:
            return fast(metric, match, times, span, by, rate=fn == "rate")
        if fn in ("rate", "increase"):
            vecs: list[Mapping[Key, float | None]] = list(
                _increase_range(b, metric, match, times, span, by, rate=fn == "rate"))
        elif fn == "gauge":
            vecs = list(_gauge_range(b, metric, match, times, span, by))
        elif fn == "histogram_quantile" and q is not None:
            vecs = [b.histogram_quantile(q, metric, match, span, by, t) for t in times]
        elif fn == "latency_quantile" and q is not None:
            vecs = [{k: v[0] for k, v in b.latency_quantiles((q,), match, span, by, t).items()}
                    for t in times]
        else:
            raise QueryError(f"unknown series function {fn!r} (or missing q)")
        out: dict[Key, list[tuple[float, float | None]]] = {}
        for t, vec in zip(times, vecs, strict=True):
            for k, v in vec.items():
                out.setdefault(k, []).append((t, v))
        return out

    def stat_series(self, resource_type: str, namespace: str | None, name: str | None, *,
                    start: float, end: float, step: float, to: str | Ref | None = None,
                    from_: str | Ref | None = None) -> list[dict[str, object]]:
        """The dashboard's history of one resource: per step (each point covers the
        step before it) success, rps, ``rps_by_tls`` ({"true": .., "no_identity": ..}),
        latency p50/p95/p99 and TCP, with the keys of a stat row."""
        times = time_range(start, end, step, self.backend.scrape_interval)
        view = self._view(resource_type, namespace, name, to, from_, [])
        b, m = self.backend, list(view.match)
        tcp = [*m, Matcher("peer", view.peer)]
        by_class = _increase_range(b, "response_total", m, times, step, ("classification",))
        rps = _increase_range(b, "response_total", m, times, step, (), rate=True)
        by_tls = _increase_range(b, "response_total", m, times, step, ("tls",), rate=True)
        conns = _gauge_range(b, "tcp_open_connections", tcp, times, step, ())
        reads = _increase_range(b, "tcp_read_bytes_total", tcp, times, step, (), rate=True)
        writes = _increase_range(b, "tcp_write_bytes_total", tcp, times, step, (), rate=True)
        points: list[dict[str, object]] = []
        for i, t in enumerate(times):
            total = sum(by_class[i].values())
            ok = total - by_class[i].get(("failure",), 0.0)
            lat = b.latency_quantiles(QUANTILES, m, step, (), t).get((), [None] * 3)
            points.append({
                "t": t, "requests": total, "success": ok / total if total else None,
                "rps": rps[i].get(()), "rps_by_tls": {k[0]: v for k, v in by_tls[i].items()},
                "latency_ms_p50": lat[0], "latency_ms_p95": lat[1], "latency_ms_p99": lat[2],
                "tcp_open_connections": conns[i].get(()),
                "tcp_read_bytes_rate": reads[i].get(()),
                "tcp_write_bytes_rate": writes[i].get(()),
            })
        return points


def _increase_range(b: Backend, metric: str, match: MatcherSpec, times: list[float],
                    span: float, by: Sequence[str], rate: bool = False) -> list[Vector]:
    fast = getattr(b, "increase_range", None)
    if fast is not None:
        return fast(metric, match, times, span, by, rate=rate)
    one = b.rate if rate else b.increase
    return [one(metric, match, span, by, t) for t in times]


def _gauge_range(b: Backend, metric: str, match: MatcherSpec, times: list[float], span: float,
                 by: Sequence[str]) -> list[Vector]:
    fast = getattr(b, "gauge_range", None)
    if fast is not None:
        return fast(metric, match, times, span, by)
    return [b.gauge(metric, match, span, by, t) for t in times]


def _ref_matchers(ref: Ref, prefix: str) -> list[Matcher]:
    ms = ref.kind.name_matchers(ref.name, prefix)
    if ref.namespace is not None and ref.kind.labels:
        ms.append(Matcher(prefix + "namespace", ref.namespace))
    return ms


def _identity_prefix(identity: str) -> str:
    """``web.emojivoto.serviceaccount.identity...`` -> ``web.emojivoto.``"""
    parts = identity.split(".")
    return f"{parts[0]}.{parts[1]}." if len(parts) > 2 else identity
