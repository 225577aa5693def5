"""`shoal down`: stop every supervised proxy and app, then the control plane."""

from __future__ import annotations

import click

from .client import home_option


@click.command("down")
@home_option
def command(home) -> None:
    """Stop all workloads started with `shoal run`, and the control plane."""
    from shoal.control import daemon
    from shoal.control.errors import ControlError

    from .client import fail

    try:
        result = daemon.stop_all(home)
    except ControlError as e:
        raise SystemExit(fail(e)) from None
    for rs in result["supervisors"]:
        click.echo(f"replicaset/{rs} stopped")
    if result["control_plane"]:
        click.echo("control plane stopped")
    if not result["supervisors"] and not result["control_plane"]:
        click.echo("nothing was running")
