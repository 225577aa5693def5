"""Generate service profiles as `linkerd profile` does: a template, from an OpenAPI
spec's paths and methods, or from a .proto file's gRPC services.

>>> [r["name"] for r in from_openapi({"paths": {"/books/{id}": {"get": {}, "delete": {}}}},
...                                   "books", "lib")["spec"]["routes"]]
['DELETE /books/{id}', 'GET /books/{id}']
>>> from_proto("package shop.v1; service Cart { rpc Add (A) returns (B); }", "cart", "s"
...            )["spec"]["routes"][0]["condition"]
{'method': 'POST', 'pathRegex': '/shop\\\\.v1\\\\.Cart/Add'}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .profiles import ProfileError, template

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_PARAM = re.compile(r"\{[^}/]*\}")


def _document(service: str, namespace: str, routes: list[dict[str, Any]]) -> dict[str, Any]:
    doc = template(service, namespace)
    doc["spec"] = {"routes": routes}
    return doc


def path_regex(path: str) -> str:
    """``/books/{id}`` -> ``/books/[^/]*`` (literal parts escaped)."""
    out, pos = [], 0
    for m in _PARAM.finditer(path):
        out.append(re.escape(path[pos:m.start()]).replace("\\/", "/"))
        out.append("[^/]*")
        pos = m.end()
    out.append(re.escape(path[pos:]).replace("\\/", "/"))
    return "".join(out)


def from_openapi(spec: Mapping[str, Any], service: str, namespace: str) -> dict[str, Any]:
    """Routes for every path and method of an OpenAPI (or Swagger 2) document; the
    ``x-linkerd-retryable`` and ``x-linkerd-timeout`` extensions are honoured."""
    paths = spec.get("paths") if isinstance(spec, Mapping) else None
    if not isinstance(paths, Mapping):
        raise ProfileError("paths", "an OpenAPI document needs a paths mapping")
    base = ""
    if isinstance(spec.get("basePath"), str):
        base = spec["basePath"].rstrip("/")
    routes = []
    for path in sorted(paths):
        ops = paths[path]
        if not isinstance(ops, Mapping):
            continue
        for method in sorted(m for m in ops if m.lower() in METHODS):
            full = base + path
            route: dict[str, Any] = {"name": f"{method.upper()} {full}",
                                     "condition": {"method": method.upper(),
                                                   "pathRegex": path_regex(full)}}
            op = ops[method] if isinstance(ops[method], Mapping) else {}
            if op.get("x-linkerd-retryable"):
                route["isRetryable"] = True
            if isinstance(op.get("x-linkerd-timeout"), str):
                route["timeout"] = op["x-linkerd-timeout"]
            routes.append(route)
    return _document(service, namespace, routes)


_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_PACKAGE = re.compile(r"\bpackage\s+([A-Za-z_][\w.]*)\s*;")
_SERVICE = re.compile(r"\bservice\s+([A-Za-z_]\w*)\s*\{")
_RPC = re.compile(r"\brpc\s+([A-Za-z_]\w*)\s*\(")


def from_proto(text: str, service: str, namespace: str) -> dict[str, Any]:
    """``POST /pkg.Service/Method`` routes for every rpc of every service in a .proto."""
    src = _COMMENT.sub("", text)
    pkg = _PACKAGE.search(src)
    prefix = pkg.group(1) + "." if pkg else ""
    routes = []
    for s in _SERVICE.finditer(src):
        depth, i = 1, s.end()
        while i < len(src) and depth:
            depth += {"{": 1, "}": -1}.get(src[i], 0)
            i += 1
        for rpc in _RPC.finditer(src, s.end(), i):
            path = f"/{prefix}{s.group(1)}/{rpc.group(1)}"
            routes.append({"name": f"POST {path}",
                           "condition": {"method": "POST", "pathRegex": re.escape(path)
                                         .replace("\\/", "/")}})
    if not routes:
        raise ProfileError("proto", "no service with an rpc found")
    return _document(service, namespace, routes)
