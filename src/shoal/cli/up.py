"""`shoal up`: start the control plane in the background, wait until ready, print its URL."""

from __future__ import annotations

import click

from .client import home_option


@click.command("up")
@home_option
@click.option("--api", default="127.0.0.1:50750", show_default=True, metavar="HOST:PORT",
              help="Where the API listens (port 0: any free port).")
@click.option("--foreground", is_flag=True, help="Run in this process (containers, debugging).")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for ready.")
def command(home, api: str, foreground: bool, timeout: float) -> None:
    """Start the control plane; prints its URL once it answers."""
    from shoal.control import daemon
    from shoal.control.config import ControlConfig
    from shoal.control.errors import ControlError

    from .client import fail

    try:
        config = ControlConfig.parse({"home": str(home.root), "api": api})
        running = daemon.running_control(home)
        if running and daemon.healthy(running["url"], home.token()):
            click.echo(running["url"])
            click.echo(f"control plane already running (pid {running['pid']})", err=True)
            return
        if foreground:
            from shoal.control.server import run
            raise SystemExit(run(config))
        info = daemon.start_control(home, api, timeout)
    except ControlError as e:
        raise SystemExit(fail(e)) from None
    click.echo(info["url"])
    click.echo(f"control plane ready (pid {info['pid']}, state in {home.root}); "
               "verify with `shoal check`", err=True)
