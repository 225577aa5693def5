"""`shoal tap`: live request events of a resource, in Linkerd's line, wide or JSON format.

options -> a tap request -> the control plane's NDJSON stream -> ``Renderer.render(event)``
(pure, one string per event) -> print, until Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from .client import home_option

GRPC_CODES = ("OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded",
              "NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted",
              "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented", "Internal",
              "Unavailable", "DataLoss", "Unauthenticated")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


# -- rendering (pure) -------------------------------------------------------------------

def grpc_name(code: int) -> str:
    """``0`` -> ``OK``; unknown codes as Go's gRPC prints them, ``Code(42)``."""
    return GRPC_CODES[code] if 0 <= code < len(GRPC_CODES) else f"Code({code})"


def split_addr(addr: str) -> tuple[str, int]:
    """``"10.0.0.1:80"`` -> ("10.0.0.1", 80); ``"[::1]:80"`` -> ("::1", 80)."""
    host, _, port = str(addr).rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else 0


def _labels(prefix: str, labels: Any) -> str:
    if not isinstance(labels, dict):
        return ""
    return "".join(f" {prefix}{k}={v}" for k, v in sorted(labels.items()) if v != "")


def line(ev: dict[str, Any], wide: bool = False) -> str:
    """One event in Linkerd's tap line format (``-o wide`` appends the labels)."""
    proxy = "in " if ev.get("direction") == "inbound" else "out"
    flow = f"proxy={proxy} src={ev.get('src', '')} dst={ev.get('dst', '')} tls={ev.get('tls', '')}"
    extra = ""
    if wide:
        extra = (_labels("src_", ev.get("src_labels")) + _labels("dst_", ev.get("dst_labels"))
                 + _labels("rt_", ev.get("route_labels")))
    head = f"{ev['type']} id={ev.get('id', '')} {flow}"
    if ev["type"] == "req":
        return (f"{head} :method={ev.get('method', '')} :authority={ev.get('authority', '')} "
                f":path={ev.get('path', '')}{extra}")
    if ev["type"] == "rsp":
        return f"{head} :status={ev.get('status', 0)} latency={ev.get('latency_us', 0)}µs{extra}"
    tail = f"duration={ev.get('duration_us', 0)}µs response-length={ev.get('response_bytes', 0)}B"
    if ev.get("grpc_status") is not None:
        return f"{head} grpc-status={grpc_name(int(ev['grpc_status']))} {tail}{extra}"
    if ev.get("error"):
        return f"{head} reset-error={ev['error']} {tail}{extra}"
    return f"{head} {tail}{extra}"


def _duration(us: int) -> dict[str, int]:
    """A protobuf Duration as Go's encoding/json writes it (zero fields left out)."""
    seconds, nanos = divmod(int(us) * 1000, 1_000_000_000)
    return {k: v for k, v in (("seconds", seconds), ("nanos", nanos)) if v}


def _headers(headers: Any) -> list[dict[str, str]] | None:
    if not isinstance(headers, list):
        return None
    return [{"name": n, "valueStr": v} for n, v in headers]


def _endpoint(addr: str, labels: Any) -> dict[str, Any]:
    ip, port = split_addr(addr)
    return {"ip": ip, "port": port, "metadata": dict(labels) if labels else None}


class Renderer:
    """Turns the control plane's events into output text, one string per event.

    Holds the little state the JSON format needs (an ``end`` reports the time since
    the request started: the ``rsp`` latency plus the ``end`` duration).
    """

    def __init__(self, output: str = "") -> None:
        self.output = output
        self.latency: dict[tuple[str, str], int] = {}

    def render(self, ev: dict[str, Any]) -> str | None:
        if ev.get("type") not in ("req", "rsp", "end"):
            return None
        if self.output == "json":
            return self.json(ev)
        return line(ev, wide=self.output == "wide")

    def json(self, ev: dict[str, Any]) -> str:
        base, _, stream = str(ev.get("id", "0:0")).partition(":")
        ident = {"base": int(base) if base.isdigit() else 0,
                 "stream": int(stream) if stream.isdigit() else 0}
        key = (str(ev.get("pod", "")), str(ev.get("id", "")))
        out: dict[str, Any] = {
            "source": _endpoint(ev.get("src", ""), ev.get("src_labels")),
            "destination": _endpoint(ev.get("dst", ""), ev.get("dst_labels")),
            "routeMeta": ev.get("route_labels") or None,
            "proxyDirection": "INBOUND" if ev.get("direction") == "inbound" else "OUTBOUND",
        }
        if ev["type"] == "req":
            out["requestInitEvent"] = {
                "id": ident, "method": ev.get("method", ""),
                "scheme": str(ev.get("scheme", "")).upper(),
                "authority": ev.get("authority", ""), "path": ev.get("path", ""),
                "headers": _headers(ev.get("headers"))}
        elif ev["type"] == "rsp":
            self.latency[key] = int(ev.get("latency_us", 0))
            out["responseInitEvent"] = {
                "id": ident, "sinceRequestInit": _duration(ev.get("latency_us", 0)),
                "httpStatus": ev.get("status", 0), "headers": _headers(ev.get("headers"))}
        else:
            duration = int(ev.get("duration_us", 0))
            end: dict[str, Any] = {
                "id": ident,
                "sinceRequestInit": _duration(self.latency.pop(key, 0) + duration),
                "sinceResponseInit": _duration(duration),
                "responseBytes": ev.get("response_bytes", 0),
                "trailers": _headers(ev.get("headers")),
                "grpcStatusCode": ev.get("grpc_status") or 0}
            if ev.get("error"):
                end["resetError"] = ev["error"]
            out["responseEndEvent"] = end
        return json.dumps(out, indent=2, ensure_ascii=False)


# -- the request ------------------------------------------------------------------------

def parse_since(text: str | None) -> float:
    """``30s`` / ``2m`` / ``1h`` / ``45`` -> seconds."""
    if not text:
        return 0.0
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if m is None:
        raise click.BadParameter(f"{text!r} is not a duration like 30s, 2m or 1h",
                                 param_hint="--since")
    return float(m.group(1)) * _UNITS[m.group(2)]


def resource_arg(resource: str, name: str | None) -> str:
    """``TYPE/NAME``, ``TYPE NAME`` or ``TYPE`` -> ``TYPE/NAME`` or ``TYPE``."""
    return f"{resource}/{name}" if name and "/" not in resource else resource


def tap_request(resource: str, namespace: str, **filters: Any) -> dict[str, Any]:
    body = {"resource": resource, "namespace": namespace}
    body.update({k: v for k, v in filters.items() if v not in (None, "", False)})
    return body


def filter_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The filters `tap` and `top` share."""
    for opt in reversed([
        click.option("-n", "--namespace", default="default", show_default=True,
                     help="Namespace of the resource."),
        click.option("--to", "to_resource", metavar="RES",
                     help="Only requests to this resource (TYPE/NAME)."),
        click.option("--to-namespace", metavar="NS",
                     help="Namespace of the --to resource (default: --namespace)."),
        click.option("--method", help="Only requests with this HTTP method."),
        click.option("--path", help="Only requests whose path starts with this prefix."),
        click.option("--authority", help="Only requests with this :authority."),
        click.option("--scheme", help="Only requests with this scheme."),
        click.option("--max-rps", default=100.0, show_default=True,
                     help="Most requests per second to tap, over all pods."),
    ]):
        f = opt(f)
    return f


def stream_events(client: Any, body: dict[str, Any], reveal: str | None = None
                  ) -> Iterator[dict[str, Any]]:
    """The events of a tap, as the control plane sends them (blocks between them)."""
    import httpx

    from .client import ApiError

    headers = {"x-shoal-reveal": reveal} if reveal else {}
    try:
        with client.http.stream("POST", "/api/v1/tap", json=body, headers=headers,
                                timeout=httpx.Timeout(10.0, read=None)) as r:
            if r.status_code >= 400:
                r.read()
                try:
                    message = r.json().get("error") or r.text
                except ValueError:
                    message = r.text
                raise ApiError(str(message), status=r.status_code)
            for raw in r.iter_lines():
                if raw:
                    yield json.loads(raw)
    except httpx.HTTPError as e:
        raise ApiError("lost the tap stream from the control plane",
                       hint=f"is it running? try `shoal check` ({e.__class__.__name__})"
                       ) from None


def reveal_token(home: Any) -> str:
    token = os.environ.get("SHOAL_REVEAL_TOKEN")
    if token:
        return token
    try:
        return (home.root / "reveal-token").read_text().strip()
    except OSError:
        from .client import ApiError
        raise ApiError("--reveal needs the reveal token",
                       hint="set SHOAL_REVEAL_TOKEN or copy $SHOAL_HOME/reveal-token "
                            "from the control plane's host") from None


# -- the command ------------------------------------------------------------------------

@click.command("tap")
@home_option
@filter_options
@click.option("--since", help="First replay the recorded events of this long ago "
              "(30s, 2m; needs proxies started with --tap-record-bytes).")
@click.option("--failures", is_flag=True,
              help="Only requests classified as failures (their lines come at the end).")
@click.option("--reveal", is_flag=True, help="Show secret headers (needs the reveal token).")
@click.option("-o", "--output", type=click.Choice(["table", "wide", "json"]),
              default="table", help="Output format.")
@click.argument("resource")
@click.argument("name", required=False)
def command(home: Any, namespace: str, to_resource: str | None, to_namespace: str | None,
            method: str | None, path: str | None, authority: str | None,
            scheme: str | None, max_rps: float, since: str | None, failures: bool,
            reveal: bool, output: str, resource: str, name: str | None) -> None:
    """Listen to the requests of a resource, live: one line per request, response and end.

    \b
    shoal tap deploy/web -n emojivoto
    shoal tap deploy/web --to deploy/voting --path /emojivoto.v1.VotingService -o json
    shoal tap deploy/web --failures --since 30s
    """
    from shoal.control.errors import ControlError

    from .client import Client, fail

    body = tap_request(resource_arg(resource, name), namespace, to_resource=to_resource,
                       to_namespace=to_namespace, method=method, path=path,
                       authority=authority, scheme=scheme, max_rps=max_rps,
                       since=parse_since(since), failures=failures, reveal=reveal)
    renderer = Renderer("" if output == "table" else output)
    dropped = 0
    try:
        client = Client.from_home(home)
        for ev in stream_events(client, body, reveal_token(home) if reveal else None):
            kind = ev.get("type")
            if kind == "started" and since and not any((ev.get("recorder_bytes") or {})
                                                       .values()):
                click.echo("shoal tap: the flight recorder is off on these pods; nothing "
                           "to replay (start them with --tap-record-bytes)", err=True)
            elif kind == "stats" and int(ev.get("dropped", 0)) > dropped:
                click.echo(f"shoal tap: {int(ev['dropped']) - dropped} events dropped "
                           f"(over --max-rps {max_rps:g} or a slow reader)", err=True)
                dropped = int(ev["dropped"])
            elif kind == "error":
                click.echo(f"shoal tap: {ev.get('error')}", err=True)
            text = renderer.render(ev)
            if text is not None:
                click.echo(text)
    except ControlError as e:
        raise SystemExit(fail(e)) from None
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `shoal tap ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
