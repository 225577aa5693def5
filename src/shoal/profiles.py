"""Service profiles: Linkerd's ``ServiceProfile``, parsed, validated and matched.

``linkerd.io/v1alpha2`` documents are read as they are (``metadata.name`` is
``svc.ns.svc.cluster.local``); ``shoal.io/v1alpha1`` is the same shape. Routes match
in order and the first match wins; a request that matches none is ``[DEFAULT]``.

>>> p = parse({"apiVersion": "linkerd.io/v1alpha2", "kind": "ServiceProfile",
...            "metadata": {"name": "todo.web.svc.cluster.local", "namespace": "web"},
...            "spec": {"routes": [{"name": "GET /stress", "timeout": "100ms",
...                      "condition": {"method": "GET", "pathRegex": "/stress"}}]}})
>>> p.service, p.namespace, p.route_for("GET", "/stress").timeout, p.route_for("GET", "/x")
('todo', 'web', 0.1, None)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

API_VERSIONS = ("linkerd.io/v1alpha2", "linkerd.io/v1alpha1", "shoal.io/v1alpha1")
DEFAULT_TIMEOUT = 10.0
DEFAULT_ROUTE = "[DEFAULT]"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class ProfileError(ValueError):
    """A profile that cannot be used: ``where`` names the field."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


def parse_duration(text: object, where: str = "duration") -> float:
    """Go-style duration to seconds: ``"100ms"``, ``"1m30s"``, ``"10s"``.

    >>> parse_duration("1m30s"), parse_duration("250ms")
    (90.0, 0.25)
    """
    if not isinstance(text, str) or not text:
        raise ProfileError(where, f"{text!r} is not a duration like 100ms or 10s")
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise ProfileError(where, f"{text!r} is not a duration like 100ms or 10s")
    return total


@dataclass(frozen=True)
class RequestMatch:
    method: str = ""
    path: re.Pattern[str] | None = None
    all: tuple[RequestMatch, ...] = ()
    any: tuple[RequestMatch, ...] = ()
    not_: RequestMatch | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method != method:
            return False
        if self.path is not None and self.path.fullmatch(path) is None:
            return False
        if self.all and not all(c.matches(method, path) for c in self.all):
            return False
        if self.any and not any(c.matches(method, path) for c in self.any):
            return False
        if self.not_ is not None and self.not_.matches(method, path):
            return False
        return True


@dataclass(frozen=True)
class ResponseMatch:
    status_min: int = 100
    status_max: int = 599
    all: tuple[ResponseMatch, ...] = ()
    any: tuple[ResponseMatch, ...] = ()
    not_: ResponseMatch | None = None

    def matches(self, status: int) -> bool:
        if not self.status_min <= status <= self.status_max:
            return False
        if self.all and not all(c.matches(status) for c in self.all):
            return False
        if self.any and not any(c.matches(status) for c in self.any):
            return False
        return not (self.not_ is not None and self.not_.matches(status))


@dataclass(frozen=True)
class ResponseClass:
    condition: ResponseMatch
    is_failure: bool


@dataclass(frozen=True)
class Route:
    name: str
    condition: RequestMatch
    response_classes: tuple[ResponseClass, ...] = ()
    is_retryable: bool = False
    timeout: float | None = DEFAULT_TIMEOUT

    def failure(self, status: int) -> bool | None:
        """True/False when a response class decides, None to use the default rules."""
        for rc in self.response_classes:
            if rc.condition.matches(status):
                return rc.is_failure
        return None


@dataclass(frozen=True)
class RetryBudget:
    retry_ratio: float = 0.2
    min_retries_per_second: int = 10
    ttl: float = 10.0


@dataclass(frozen=True)
class Profile:
    name: str                     # as written: "svc.ns.svc.cluster.local"
    namespace: str
    service: str
    routes: tuple[Route, ...] = ()
    retry_budget: RetryBudget = field(default_factory=RetryBudget)
    source: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def route_for(self, method: str, path: str) -> Route | None:
        for r in self.routes:
            if r.condition.matches(method, path):
                return r
        return None

    def to_json(self) -> dict[str, Any]:
        return dict(self.source)


def _map(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ProfileError(where, "must be a mapping")
    return value


def _list(value: object, where: str) -> Sequence[Any]:
    if not isinstance(value, list):
        raise ProfileError(where, "must be a list")
    return value


def _request_match(c: object, where: str) -> RequestMatch:
    c = _map(c, where)
    unknown = set(c) - {"method", "pathRegex", "all", "any", "not"}
    if unknown:
        raise ProfileError(f"{where}.{sorted(unknown)[0]}", "unknown field")
    method = c.get("method", "")
    if not isinstance(method, str):
        raise ProfileError(f"{where}.method", "must be a string")
    path = None
    if "pathRegex" in c:
        try:
            path = re.compile(str(c["pathRegex"]))
        except re.error as e:
            raise ProfileError(f"{where}.pathRegex", f"bad regex: {e}") from None
    return RequestMatch(
        method.upper(), path,
        tuple(_request_match(x, f"{where}.all[{i}]")
              for i, x in enumerate(_list(c.get("all", []), f"{where}.all"))),
        tuple(_request_match(x, f"{where}.any[{i}]")
              for i, x in enumerate(_list(c.get("any", []), f"{where}.any"))),
        _request_match(c["not"], f"{where}.not") if "not" in c else None)


def _status(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 100 <= value <= 599:
        raise ProfileError(where, f"status {value!r} is outside 100-599")
    return value


def _response_match(c: object, where: str) -> ResponseMatch:
    c = _map(c, where)
    unknown = set(c) - {"status", "all", "any", "not"}
    if unknown:
        raise ProfileError(f"{where}.{sorted(unknown)[0]}", "unknown field")
    lo, hi = 100, 599
    if "status" in c:
        st = _map(c["status"], f"{where}.status")
        lo = _status(st.get("min", 100), f"{where}.status.min")
        hi = _status(st.get("max", 599), f"{where}.status.max")
        if lo > hi:
            raise ProfileError(f"{where}.status", "min is greater than max")
    return ResponseMatch(
        lo, hi,
        tuple(_response_match(x, f"{where}.all[{i}]")
              for i, x in enumerate(_list(c.get("all", []), f"{where}.all"))),
        tuple(_response_match(x, f"{where}.any[{i}]")
              for i, x in enumerate(_list(c.get("any", []), f"{where}.any"))),
        _response_match(c["not"], f"{where}.not") if "not" in c else None)


def _route(r: object, where: str) -> Route:
    r = _map(r, where)
    name = r.get("name")
    if not isinstance(name, str) or not name:
        raise ProfileError(f"{where}.name", "a route needs a name")
    if "condition" not in r:
        raise ProfileError(f"{where}.condition", "a route needs a condition")
    classes = []
    for i, rc in enumerate(_list(r.get("responseClasses", []), f"{where}.responseClasses")):
        rcw = f"{where}.responseClasses[{i}]"
        rc = _map(rc, rcw)
        classes.append(ResponseClass(_response_match(rc.get("condition", {}), f"{rcw}.condition"),
                                     bool(rc.get("isFailure", False))))
    timeout = (parse_duration(r["timeout"], f"{where}.timeout") if "timeout" in r
               else DEFAULT_TIMEOUT)
    return Route(name, _request_match(r["condition"], f"{where}.condition"), tuple(classes),
                 bool(r.get("isRetryable", False)), timeout)


def parse(doc: Mapping[str, Any]) -> Profile:
    """Validate one ServiceProfile document; raise ProfileError naming the bad field."""
    doc = _map(doc, "document")
    if doc.get("apiVersion") not in API_VERSIONS:
        raise ProfileError("apiVersion", f"must be one of {', '.join(API_VERSIONS)}")
    if doc.get("kind") != "ServiceProfile":
        raise ProfileError("kind", "must be ServiceProfile")
    meta = _map(doc.get("metadata"), "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ProfileError("metadata.name", "a profile needs a name like svc.ns.svc.cluster.local")
    host = name.split(":")[0]
    for suffix in (".svc.cluster.local", ".cluster.local"):
        if host.endswith(suffix):
            host = host[: -len(suffix)]
    parts = host.split(".")
    if len(parts) < 2 and not meta.get("namespace"):
        raise ProfileError("metadata.name", "must name service and namespace: svc.ns")
    service = parts[0]
    namespace = parts[1] if len(parts) > 1 else str(meta["namespace"])
    spec = _map(doc.get("spec", {}), "spec")
    routes = tuple(_route(r, f"spec.routes[{i}]")
                   for i, r in enumerate(_list(spec.get("routes", []), "spec.routes")))
    budget = RetryBudget()
    if "retryBudget" in spec:
        b = _map(spec["retryBudget"], "spec.retryBudget")
        if "ttl" not in b:
            raise ProfileError("spec.retryBudget.ttl", "a retry budget needs a ttl")
        ratio = b.get("retryRatio", 0.2)
        if not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1000:
            raise ProfileError("spec.retryBudget.retryRatio", "must be a number >= 0")
        minrps = b.get("minRetriesPerSecond", 10)
        if not isinstance(minrps, int) or minrps < 0:
            raise ProfileError("spec.retryBudget.minRetriesPerSecond", "must be an integer >= 0")
        budget = RetryBudget(float(ratio), minrps,
                             parse_duration(b["ttl"], "spec.retryBudget.ttl"))
    return Profile(name, namespace, service, routes, budget, json.loads(json.dumps(doc)))


def parse_documents(text: str) -> list[Profile]:
    """Every profile in a YAML (several documents allowed) or JSON text."""
    import yaml  # type: ignore[import-untyped]  # only the CLI and control plane read YAML

    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise ProfileError("document", f"not YAML or JSON: {e}") from None
    out = []
    for i, d in enumerate(docs):
        if isinstance(d, Mapping) and d.get("kind") == "List":
            docs.extend(d.get("items", []))
            continue
        try:
            out.append(parse(d))
        except ProfileError as e:
            raise ProfileError(f"document {i + 1}: {e.where}", e.reason) from None
    return out


def template(service: str, namespace: str) -> dict[str, Any]:
    """A starting profile, as ``linkerd profile --template`` prints."""
    return {"apiVersion": "linkerd.io/v1alpha2", "kind": "ServiceProfile",
            "metadata": {"name": f"{service}.{namespace}.svc.cluster.local",
                         "namespace": namespace},
            "spec": {"routes": [{"name": "GET /", "condition": {"method": "GET",
                                                                "pathRegex": "/"},
                                 "timeout": "10s"}],
                     "retryBudget": {"retryRatio": 0.2, "minRetriesPerSecond": 10,
                                     "ttl": "10s"}}}
