"""`shoal edges`: who is connected to whom, and whether mTLS secures it.

options -> request -> fetch -> render (pure) -> print.
"""

from __future__ import annotations

import click

from .client import home_option


@click.command("edges")
@home_option
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-A", "--all-namespaces", "all_ns", is_flag=True, help="Every namespace.")
@click.option("-t", "--time-window", "window", default="1m", show_default=True)
@click.option("-o", "--output", type=click.Choice(["table", "wide", "json"]), default="table",
              show_default=True)
@click.argument("resource", metavar="TYPE")
def command(home, namespace: str, all_ns: bool, window: str, output: str,
            resource: str) -> None:
    """Edges between resources of TYPE (deploy, rs, po, sa, ns): SECURED is √ with mTLS.

    \b
    shoal edges deploy -n emojivoto
    shoal edges po -A -o wide
    """
    from shoal.control.errors import ControlError

    from . import _viztables as t
    from .client import Client, fail

    try:
        rows = Client.from_home(home).get("/api/v1/edges", resource=resource,
                                          namespace=None if all_ns else namespace,
                                          window=window)
    except ControlError as e:
        raise SystemExit(fail(e)) from None
    if not rows and output != "json":
        click.echo("No edges found.", err=True)
        return
    click.echo(t.edges(rows, t.EdgesOptions(output)))
