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
@click.option("--scrape-interval", metavar="DURATION",
              help="How often the proxies are scraped (1s..10m, default 10s).")
@click.option("--prometheus-url", metavar="URL",
              help="Answer metrics queries from this Prometheus (it scrapes the targets in "
              "$SHOAL_HOME/prometheus/targets.json; see `shoal prometheus-config`).")
@click.option("--mtls", type=click.Choice(["strict", "permissive"]),
              help="Mesh-wide default of `shoal run --mtls`: strict refuses plaintext "
              "connections to every pod whose deployment does not say otherwise "
              "(default permissive).")
def command(home, api: str, foreground: bool, timeout: float, scrape_interval: str | None,
            prometheus_url: str | None, mtls: str | None) -> None:
    """Start the control plane; prints its URL once it answers."""
    from shoal.control import daemon
    from shoal.control.config import ControlConfig
    from shoal.control.errors import ControlError

    from .client import fail

    try:
        import os

        from shoal.control.metrics import MetricsConfig

        metrics = MetricsConfig.parse({"scrape_interval": scrape_interval or "",
                                       "prometheus_url": prometheus_url or ""})
        # the detached control plane reads them from its environment
        for key, value in (("SHOAL_SCRAPE_INTERVAL", scrape_interval),
                           ("SHOAL_PROMETHEUS_URL", prometheus_url),
                           ("SHOAL_CONTROL_MTLS", mtls)):
            if value:
                os.environ[key] = value
        config = ControlConfig.parse({"home": str(home.root), "api": api, "mtls": mtls or ""})
        running = daemon.running_control(home)
        if running and daemon.healthy(running["url"], home.token()):
            click.echo(running["url"])
            click.echo(f"control plane already running (pid {running['pid']})", err=True)
            return
        if foreground:
            from shoal.control.server import run
            raise SystemExit(run(config, metrics))
        info = daemon.start_control(home, api, timeout)
    except ControlError as e:
        raise SystemExit(fail(e)) from None
    click.echo(info["url"])
    click.echo(f"control plane ready (pid {info['pid']}, state in {home.root}); "
               "verify with `shoal check`", err=True)
