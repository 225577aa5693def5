"""`shoal check [--pre]`: Linkerd-style health checks with √ / ‼ / × and a final status.

options -> run the checks of each category (stopping a category at its first error,
as later checks depend on earlier ones) -> render (pure) -> print; exit 1 on any ×.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

import click

from .client import home_option

WARN_BEFORE = 60 * 86400  # warn this long before a certificate expires
Check = tuple[str, Callable[[], tuple[str, str] | None]]  # description, () -> (result, msg)|None


def _run(name: str, checks: list[Check]) -> dict[str, Any]:
    results = []
    for description, fn in checks:
        try:
            outcome = fn()
        except Exception as e:  # a check that breaks is a failed check, with its reason
            outcome = ("error", str(getattr(e, "message", e)))
        result, error = outcome or ("success", "")
        results.append({"description": description, "result": result, "error": error})
        if result == "error":
            break
    return {"categoryName": name, "checks": results}


def _expiry(what: str, not_after: float, now: float) -> tuple[str, str] | None:
    left = not_after - now
    if left <= 0:
        return "error", f"{what} expired {time.strftime('%Y-%m-%d', time.gmtime(not_after))}"
    if left < WARN_BEFORE:
        return "warning", f"{what} expires in {left / 86400:.0f} days"
    return None


def pre_checks(home, api: str) -> list[dict[str, Any]]:
    from shoal.control import daemon
    from shoal.control.config import parse_addr

    def writable() -> tuple[str, str] | None:
        home.ensure()
        probe = home.root / f".check-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
        return None

    def port_free() -> tuple[str, str] | None:
        host, port = parse_addr(api)
        if port == 0:
            return None
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            try:
                s.bind((host, port))
            except OSError as e:
                return "error", f"{api} is in use ({e.strerror}); choose another with --api"
        return None

    def not_running() -> tuple[str, str] | None:
        info = daemon.running_control(home)
        if info:
            return "error", f"a control plane already runs (pid {info['pid']}, {info['url']})"
        return None

    def python_ok() -> tuple[str, str] | None:
        return None

    return [
        _run("pre-shoal-setup", [
            ("$SHOAL_HOME is writable", writable),
            ("python version is supported", python_ok),
            ("control plane is not already running", not_running),
            (f"control plane API port is free ({api})", port_free),
        ]),
    ]


def checks(home) -> list[dict[str, Any]]:
    from shoal import __version__
    from shoal.control import daemon

    from .client import Client, locate

    now = time.time()
    box: dict[str, Any] = {}

    def running() -> tuple[str, str] | None:
        endpoint = locate(home)
        if not endpoint.from_env and daemon.running_control(home) is None:
            return "error", "the recorded control plane process is gone; run `shoal up`"
        box["client"] = Client(endpoint, timeout=5.0)
        return None

    def reachable() -> tuple[str, str] | None:
        box["health"] = box["client"].get("/api/v1/health")
        return None

    def healthy() -> tuple[str, str] | None:
        bad = [c for c in box["health"]["components"] if c["enabled"] and not c["healthy"]]
        if bad:
            return "error", "; ".join(f"{c['name']}: {c['message']}" for c in bad)
        return None

    def versions() -> tuple[str, str] | None:
        if box["health"]["version"] != __version__:
            return "warning", f"control plane is {box['health']['version']}, cli is {__version__}"
        return None

    categories = [_run("shoal-control-plane", [
        ("control plane is running", running),
        ("can query the control plane API", reachable),
        ("control plane components are healthy", healthy),
        ("control plane and cli versions match", versions),
    ])]
    if "health" not in box:
        return categories

    client = box["client"]
    ident = client.get("/api/v1/identity")

    def anchors_valid() -> tuple[str, str] | None:
        expired = [a for a in ident["trust_anchors"] if a["not_after"] < now]
        if len(expired) == len(ident["trust_anchors"]):
            return "error", "every trust anchor expired; run `shoal identity rotate`"
        return None

    def anchors_lasting() -> tuple[str, str] | None:
        for a in ident["trust_anchors"]:
            if (r := _expiry(f"trust anchor {a['subject']}", a["not_after"], now)) is not None:
                return "warning", r[1]
        return None

    def issuer_valid() -> tuple[str, str] | None:
        return _expiry("issuer certificate", ident["issuer"]["not_after"], now)

    def proxy_certs() -> tuple[str, str] | None:
        expired = [c["pod"] for c in ident["certificates"] if c["expiry"] < now]
        if expired:
            return "error", "expired proxy certificates: " + ", ".join(expired)
        return None

    categories.append(_run("shoal-identity", [
        ("trust anchors are within their validity period", anchors_valid),
        ("trust anchors are valid for at least 60 days", anchors_lasting),
        ("issuer certificate is valid for at least 60 days", issuer_valid),
        ("proxy certificates are not expired", proxy_certs),
    ]))

    pods = client.get("/api/v1/pods")

    def proxies_ready() -> tuple[str, str] | None:
        waiting = [f"{p['namespace']}/{p['name']} ({p['status']})" for p in pods
                   if not p["ready"]]
        if waiting:
            return "error", "not ready: " + ", ".join(waiting)
        return None

    categories.append(_run("shoal-data-plane", [
        (f"data plane proxies are ready ({len(pods)} registered)", proxies_ready),
    ]))
    return categories


@click.command("check")
@home_option
@click.option("--pre", is_flag=True, help="Check that shoal can be started here.")
@click.option("--api", default="127.0.0.1:50750", show_default=True, metavar="HOST:PORT",
              help="With --pre: the API address `shoal up` would use.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def command(home, pre: bool, api: str, output: str) -> None:
    """Check that shoal is (or, with --pre, can be) installed and healthy."""
    from . import render

    categories = pre_checks(home, api) if pre else checks(home)
    text = render.checks_json(categories) if output == "json" else render.checks(categories)
    click.echo(text)
    failed = any(c["result"] == "error" for cat in categories for c in cat["checks"])
    raise SystemExit(1 if failed else 0)


