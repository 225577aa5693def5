"""`shoal identity`: trust anchors and the issuer (`rotate`, `status`)."""

from __future__ import annotations

import time

import click

from .client import home_option


@click.group("identity")
def command() -> None:
    """Manage the mesh's trust anchors and issuer."""


@command.command("rotate")
@home_option
@click.option("--finish", is_flag=True,
              help="End the overlap: drop every anchor but the current one.")
def rotate(home, finish: bool) -> None:
    """Introduce a new trust anchor (both are trusted during the overlap).

    \b
    shoal identity rotate            # new anchor + issuer; proxies renew onto it
    shoal identity rotate --finish   # later: stop trusting the old anchor
    """
    from shoal.control.errors import ControlError

    from .client import Client, fail

    try:
        result = Client.from_home(home).post("/api/v1/identity/rotate", {"finish": finish})
    except ControlError as e:
        raise SystemExit(fail(e)) from None
    if finish:
        click.echo(f"rotation finished: {result['removed']} old trust anchor(s) removed")
    else:
        click.echo(f"new trust anchor {result['added']}; "
                   f"{len(result['trust_anchors'])} anchors trusted during the overlap")
        click.echo("run `shoal identity rotate --finish` once every proxy renewed", err=True)


@command.command("status")
@home_option
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
def status(home, output: str) -> None:
    """Trust anchors, issuer and proxy certificates with their expiry."""
    from shoal.control.errors import ControlError

    from . import render
    from .client import Client, fail

    try:
        result = Client.from_home(home).get("/api/v1/identity")
    except ControlError as e:
        raise SystemExit(fail(e)) from None
    if output == "json":
        click.echo(render.to_json(result))
        return
    now = time.time()
    rows = [["trust-anchor", a["subject"], render.age(a["not_after"] - now)]
            for a in result["trust_anchors"]]
    rows.append(["issuer", result["issuer"]["subject"],
                 render.age(result["issuer"]["not_after"] - now)])
    rows += [["proxy", f"{c['pod']} ({c['identity']})", render.age(c["expiry"] - now)]
             for c in result["certificates"]]
    click.echo(render.table(["KIND", "SUBJECT", "EXPIRES-IN"], rows))
