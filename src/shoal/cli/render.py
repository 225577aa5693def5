"""Pure rendering for the CLI: kubectl-like resource tables, Linkerd-like check output,
JSON. Every function takes data (and ``now`` where ages appear) and returns a string.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

PAD = 3  # kubectl and linkerd both separate columns with three spaces
OK, WARN, FAIL = "√", "‼", "×"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns, the last one unpadded.

    >>> print(table(["NAME", "AGE"], [["web", "5s"]]))
    NAME   AGE
    web    5s
    """
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [c.ljust(w + PAD) for c, w in zip(r[:-1], widths[:-1], strict=True)]
        lines.append(("".join(parts) + r[-1]).rstrip())
    return "\n".join(lines)


def age(seconds: float) -> str:
    """kubectl's human durations: 45s, 3m20s, 15m, 2h5m, 20h, 3d4h, 40d, 2y3d."""
    s = max(0, int(seconds))
    m, h, d = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if h < 3:
        return f"{m}m"
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 730:
        return f"{d}d"
    return f"{d // 365}y{d % 365}d" if d % 365 else f"{d // 365}y"


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


# -- resources ---------------------------------------------------------------------------
def _with_ns(all_ns: bool, headers: list[str], rows: list[tuple[str, list[Any]]]) -> str:
    if all_ns:
        return table(["NAMESPACE", *headers], [[ns, *r] for ns, r in rows])
    return table(headers, [r for _, r in rows])


def pods(items: Sequence[dict[str, Any]], now: float, all_ns: bool = False,
         wide: bool = False) -> str:
    headers = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    if wide:
        headers += ["APP-PORT", "INBOUND", "OUTBOUND", "ADMIN", "TAP"]
    rows = []
    for p in items:
        row = [p["name"], f"{p.get('containers_ready', 0)}/{p.get('containers', 2)}",
               p["status"], p["restarts"], age(now - p["created"])]
        if wide:
            row += [p.get("app_port") or "<none>"] + [p.get(k) or "<none>" for k in
                                                      ("inbound", "outbound", "admin", "tap")]
        rows.append((p["namespace"], row))
    return _with_ns(all_ns, headers, rows)


def deployments(items: Sequence[dict[str, Any]], pod_items: Sequence[dict[str, Any]],
                now: float, all_ns: bool = False) -> str:
    rows = []
    for d in items:
        mine = [p for p in pod_items
                if (p["namespace"], p["deployment"]) == (d["namespace"], d["name"])]
        ready = sum(1 for p in mine if p["ready"])
        current = sum(1 for p in mine if p["replicaset"] == d["replicaset"])
        rows.append((d["namespace"], [d["name"], f"{ready}/{d['replicas']}", current, ready,
                                      age(now - d["created"])]))
    return _with_ns(all_ns, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], rows)


def replicasets(items: Sequence[dict[str, Any]], pod_items: Sequence[dict[str, Any]],
                now: float, all_ns: bool = False) -> str:
    rows = []
    for rs in items:
        mine = [p for p in pod_items
                if (p["namespace"], p["replicaset"]) == (rs["namespace"], rs["name"])]
        rows.append((rs["namespace"], [rs["name"], rs["replicas"], len(mine),
                                       sum(1 for p in mine if p["ready"]),
                                       age(now - rs["created"])]))
    return _with_ns(all_ns, ["NAME", "DESIRED", "CURRENT", "READY", "AGE"], rows)


def services(items: Sequence[dict[str, Any]], now: float, all_ns: bool = False) -> str:
    # local mode has no cluster IP: proxies resolve a service to its pods (headless)
    rows = [(s["namespace"], [s["name"], "ClusterIP", "None", "<none>", f"{s['port']}/TCP",
                              age(now - s["created"])]) for s in items]
    return _with_ns(all_ns, ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"],
                    rows)


def namespaces(items: Sequence[dict[str, Any]], now: float) -> str:
    return table(["NAME", "STATUS", "AGE"],
                 [[n["name"], "Active", age(now - n["created"])] for n in items])


def serviceaccounts(items: Sequence[dict[str, Any]], now: float, all_ns: bool = False) -> str:
    rows = [(s["namespace"], [s["name"], age(now - s["created"])]) for s in items]
    return _with_ns(all_ns, ["NAME", "AGE"], rows)


# -- checks ------------------------------------------------------------------------------
def checks(categories: Sequence[dict[str, Any]]) -> str:
    """Linkerd's check output: a section per category, one line per check, the verdict.

    A category is ``{"categoryName": str, "checks": [{"description", "result", "error",
    "hint"}]}`` with ``result`` one of ``success``, ``warning``, ``error``.
    """
    marks = {"success": OK, "warning": WARN, "error": FAIL}
    out: list[str] = []
    for cat in categories:
        out += [cat["categoryName"], "-" * len(cat["categoryName"])]
        for c in cat["checks"]:
            out.append(f"{marks[c['result']]} {c['description']}")
            if c["result"] != "success":
                if c.get("error"):
                    out.append(f"    {c['error']}")
                if c.get("hint"):
                    out.append(f"    see {c['hint']} for hints")
        out.append("")
    failed = any(c["result"] == "error" for cat in categories for c in cat["checks"])
    out.append(f"Status check results are {FAIL if failed else OK}")
    return "\n".join(out)


def checks_json(categories: Sequence[dict[str, Any]]) -> str:
    failed = any(c["result"] == "error" for cat in categories for c in cat["checks"])
    return to_json({"success": not failed, "categories": list(categories)})
