"""`shoal routes`: per-route golden metrics from the service profile, with [DEFAULT].

options -> request -> fetch -> render (pure) -> print.
"""

from __future__ import annotations

import click

from .client import home_option


@click.command("routes")
@home_option
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--to", "to", metavar="RESOURCE",
              help="The routes of this callee, as RESOURCE's outbound view (TYPE/NAME).")
@click.option("--to-namespace", metavar="NS", help="Namespace of --to (default: -n).")
@click.option("-t", "--time-window", "window", default="1m", show_default=True)
@click.option("-o", "--output", type=click.Choice(["table", "wide", "json"]), default="table",
              show_default=True)
@click.argument("resource", metavar="TYPE/NAME")
@click.argument("name", required=False)
def command(home, namespace: str, to: str | None, to_namespace: str | None, window: str,
            output: str, resource: str, name: str | None) -> None:
    """Routes of the service profile(s) of TYPE/NAME (its inbound traffic), or with
    --to those of the callee as TYPE/NAME sees them (-o wide: effective and actual).

    \b
    shoal routes deploy/todoui
    shoal routes deploy/web --to svc/emoji -o wide
    """
    from shoal.control.errors import ControlError

    from . import _viztables as t
    from .client import Client, fail

    if name and "/" not in resource:
        resource = f"{resource}/{name}"
    try:
        rows = Client.from_home(home).get("/api/v1/routes", resource=resource,
                                          namespace=namespace, window=window, to=to,
                                          to_namespace=to_namespace)
    except ControlError as e:
        raise SystemExit(fail(e)) from None
    if not rows and output != "json":
        click.echo("No traffic found.", err=True)
        return
    click.echo(t.routes(rows, t.RoutesOptions(output, to=bool(to))))
