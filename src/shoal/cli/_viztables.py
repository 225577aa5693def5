"""Pure rendering of `stat`, `edges` and `routes`: Linkerd's columns, units and alignment.

Names are left-aligned and numbers right-aligned, as Linkerd's tabwriter does;
``-`` where there was no traffic.

>>> print(stat([{"namespace": "ns", "kind": "deployment", "name": "web", "meshed": "1/1",
...              "success": 1.0, "rps": 5.8, "latency_ms_p50": 1, "latency_ms_p95": 9.2,
...              "latency_ms_p99": 10, "tcp_open_connections": 12}], StatOptions()))
NAME   MESHED   SUCCESS      RPS   LATENCY_P50   LATENCY_P95   LATENCY_P99   TCP_CONN
web       1/1   100.00%   5.8rps           1ms           9ms          10ms         12
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .render import PAD, to_json

SHORT_KIND = {"deployment": "deploy", "replicaset": "rs", "pod": "po", "service": "svc",
              "namespace": "ns"}


def aligned(headers: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    """Columns separated by three spaces; the first ``left`` columns left-aligned, the
    others right-aligned; trailing spaces dropped."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [c.ljust(w) if i < left else c.rjust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append((" " * PAD).join(parts).rstrip())
    return "\n".join(lines)


def percent(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}%"


def rps(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}rps"


def ms(v: float | None) -> str:
    return "-" if v is None else f"{int(round(v))}ms"


def byte_rate(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}B/s"


def count(v: float | None) -> str:
    return "-" if v is None else str(int(round(v)))


def reason(no_tls_reason: str) -> str:
    """``not_provided_by_service_discovery`` -> ``Not Provided By Service Discovery``."""
    return " ".join(w.capitalize() for w in (no_tls_reason or "unknown").replace("-", "_")
                    .split("_") if w)


@dataclass(frozen=True)
class StatOptions:
    output: str = "table"        # table | wide | json
    all_namespaces: bool = False


def stat(rows: Sequence[dict[str, Any]], opts: StatOptions) -> str:
    """`shoal stat`: one table per resource kind (``all`` gives several)."""
    if opts.output == "json":
        return to_json(list(rows))
    kinds: list[str] = []
    for r in rows:
        if r["kind"] not in kinds:
            kinds.append(r["kind"])
    several = len(kinds) > 1
    tables = []
    for kind in kinds:
        headers = ["NAME"]
        pods = kind == "pod"
        if pods:
            headers.append("STATUS")
        headers += ["MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99",
                    "TCP_CONN"]
        if opts.output == "wide":
            headers += ["READ_BYTES/SEC", "WRITE_BYTES/SEC"]
        out = []
        for r in (r for r in rows if r["kind"] == kind):
            name = f"{SHORT_KIND.get(kind, kind)}/{r['name']}" if several else r["name"]
            line = [name] + ([r.get("status", "")] if pods else [])
            line += [r.get("meshed", "-"), percent(r.get("success")), rps(r.get("rps")),
                     ms(r.get("latency_ms_p50")), ms(r.get("latency_ms_p95")),
                     ms(r.get("latency_ms_p99")), count(r.get("tcp_open_connections"))]
            if opts.output == "wide":
                line += [byte_rate(r.get("tcp_read_bytes_rate")),
                         byte_rate(r.get("tcp_write_bytes_rate"))]
            out.append(([r["namespace"]] if opts.all_namespaces else []) + line)
        if opts.all_namespaces:
            headers = ["NAMESPACE", *headers]
        tables.append(aligned(headers, out, left=1 + opts.all_namespaces + pods))
    return "\n\n".join(tables)


@dataclass(frozen=True)
class EdgesOptions:
    output: str = "table"


def edges(rows: Sequence[dict[str, Any]], opts: EdgesOptions) -> str:
    if opts.output == "json":
        return to_json(list(rows))
    headers = ["SRC", "DST", "SRC_NS", "DST_NS", "SECURED"]
    if opts.output == "wide":
        headers += ["CLIENT_ID", "SERVER_ID"]
    out = []
    for e in rows:
        line = [e["src"], e["dst"], e["src_namespace"], e["dst_namespace"],
                "√" if e["secured"] else reason(e.get("no_tls_reason", ""))]
        if opts.output == "wide":
            line += [e.get("client_id") or "-", e.get("server_id") or "-"]
        out.append(line)
    return aligned(headers, out, left=len(headers))


@dataclass(frozen=True)
class RoutesOptions:
    output: str = "table"
    to: bool = False             # with --to, -o wide shows effective and actual


def routes(rows: Sequence[dict[str, Any]], opts: RoutesOptions) -> str:
    if opts.output == "json":
        return to_json([{k: v for k, v in r.items() if k != "requests"} for r in rows])
    both = opts.output == "wide" and opts.to
    headers = ["ROUTE", "SERVICE"]
    headers += (["EFFECTIVE_SUCCESS", "EFFECTIVE_RPS", "ACTUAL_SUCCESS", "ACTUAL_RPS"] if both
                else ["SUCCESS", "RPS"])
    headers += ["LATENCY_P50", "LATENCY_P95", "LATENCY_P99"]
    out = []
    for r in rows:
        line = [r["route"], r["service"], percent(r.get("success")), rps(r.get("rps"))]
        if both:
            line += [percent(r.get("actual_success")), rps(r.get("actual_rps"))]
        line += [ms(r.get("latency_ms_p50")), ms(r.get("latency_ms_p95")),
                 ms(r.get("latency_ms_p99"))]
        out.append(line)
    return aligned(headers, out, left=1)
