"""`shoal check [--pre | --proxy]`: Linkerd-style health checks with √ / ‼ / × and a
final status.

options -> run the checks of each category (stopping a category at its first error,
as later checks depend on earlier ones) -> render (pure) -> print; exit 1 on any ×.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import click

from shoal.control.checks import Outcome, run_category

from .client import home_option


def pre_checks(home, api: str) -> list[dict[str, Any]]:
    from shoal.control import daemon
    from shoal.control.config import parse_addr

    def writable() -> Outcome:
        home.ensure()
        probe = home.root / f".check-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
        return None

    def port_free() -> Outcome:
        host, port = parse_addr(api)
        if port == 0:
            return None
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            try:
                s.bind((host, port))
            except OSError as e:
                return "error", f"{api} is in use ({e.strerror}); choose another with --api"
        return None

    def not_running() -> Outcome:
        info = daemon.running_control(home)
        if info:
            return "error", f"a control plane already runs (pid {info['pid']}, {info['url']})"
        return None

    def python_ok() -> Outcome:
        return None

    return [
        run_category("pre-shoal-setup", [
            ("$SHOAL_HOME is writable", writable),
            ("python version is supported", python_ok),
            ("control plane is not already running", not_running),
            (f"control plane API port is free ({api})", port_free),
        ]),
    ]


def checks(home, proxy: bool = False, namespace: str | None = None) -> list[dict[str, Any]]:
    from shoal import __version__
    from shoal.control import daemon
    from shoal.control.checks import run_checks

    from .client import Client, locate

    box: dict[str, Any] = {}

    def running() -> Outcome:
        endpoint = locate(home)
        if not endpoint.from_env and daemon.running_control(home) is None:
            return "error", "the recorded control plane process is gone; run `shoal up`"
        box["client"] = Client(endpoint, timeout=5.0)
        return None

    return run_checks(lambda path: box["client"].get(path), __version__,
                      first=[("control plane is running", running)], proxy=proxy,
                      namespace=namespace)


@click.command("check")
@home_option
@click.option("--pre", is_flag=True, help="Check that shoal can be started here.")
@click.option("--api", default="127.0.0.1:50750", show_default=True, metavar="HOST:PORT",
              help="With --pre: the API address `shoal up` would use.")
@click.option("--proxy", is_flag=True,
              help="Also check the data plane: certificates and metrics of every proxy.")
@click.option("-n", "--namespace", help="With --proxy: only the pods of this namespace.")
@click.option("--wait", metavar="DURATION", default="0s", show_default=True,
              help="Run the checks again, once a second, until they pass or this much "
              "time has gone (e.g. 30s, 5m0s).")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def command(home, pre: bool, api: str, proxy: bool, namespace: str | None, wait: str,
            output: str) -> None:
    """Check that shoal is (or, with --pre, can be) installed and healthy.

    \b
    shoal check --pre ; shoal check
    shoal check --proxy -n emojivoto --wait 1m
    """
    import time

    from shoal.profiles import ProfileError, parse_duration

    from . import render

    if namespace is not None and not proxy:
        raise click.UsageError("-n/--namespace goes with --proxy")
    try:
        deadline = time.monotonic() + parse_duration(wait, "--wait")
    except ProfileError as e:
        raise click.BadParameter(e.reason, param_hint="--wait") from None
    while True:
        categories = pre_checks(home, api) if pre else checks(home, proxy, namespace)
        failed = any(c["result"] == "error" for cat in categories for c in cat["checks"])
        if not failed or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    text = render.checks_json(categories) if output == "json" else render.checks(categories)
    click.echo(text)
    raise SystemExit(1 if failed else 0)


