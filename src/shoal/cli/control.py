"""`shoal control`: run the control plane in the foreground (what `shoal up` detaches)."""

from __future__ import annotations

import click

from .client import home_option


@click.command("control")
@home_option
@click.option("--api", default="127.0.0.1:50750", show_default=True, metavar="HOST:PORT",
              envvar="SHOAL_CONTROL_API", help="Where the API listens (port 0: any free port).")
@click.option("--cert-lifetime", envvar="SHOAL_CONTROL_CERT_LIFETIME", metavar="SECONDS",
              help="Lifetime of proxy certificates (default 86400).")
@click.option("--pod-stale-after", envvar="SHOAL_CONTROL_POD_STALE_AFTER", metavar="SECONDS",
              help="A pod whose supervisor stays silent this long becomes Unknown.")
@click.option("--scrape-interval", envvar="SHOAL_SCRAPE_INTERVAL", metavar="DURATION",
              help="How often the proxies are scraped (1s..10m, default 10s).")
@click.option("--prometheus-url", envvar="SHOAL_PROMETHEUS_URL", metavar="URL",
              help="Answer metrics queries from this Prometheus instead of the embedded store.")
@click.option("--mtls", type=click.Choice(["strict", "permissive"]),
              envvar="SHOAL_CONTROL_MTLS",
              help="Mesh-wide default of `shoal run --mtls` (default permissive).")
@click.option("--dashboard-host", "dashboard_hosts", multiple=True,
              envvar="SHOAL_DASHBOARD_HOSTS", metavar="NAME",
              help="A host name browsers use for the dashboard (IP addresses and localhost "
              "always work; other names are refused against DNS rebinding). Repeatable.")
def command(home, api: str, cert_lifetime: str | None, pod_stale_after: str | None,
            scrape_interval: str | None, prometheus_url: str | None, mtls: str | None,
            dashboard_hosts: tuple[str, ...]) -> None:
    """Run the control plane (API, destination, identity) in the foreground."""
    from shoal.control.config import ControlConfig
    from shoal.control.errors import ControlError
    from shoal.control.server import run

    from .client import fail

    settings = {"home": str(home.root), "api": api, "cert_lifetime": cert_lifetime or "",
                "pod_stale_after": pod_stale_after or "", "mtls": mtls or "",
                "dashboard_hosts": ",".join(dashboard_hosts)}
    try:
        from shoal.control.metrics import MetricsConfig

        metrics = MetricsConfig.parse({"scrape_interval": scrape_interval or "",
                                       "prometheus_url": prometheus_url or ""})
        raise SystemExit(run(ControlConfig.parse(settings), metrics))
    except ControlError as e:
        raise SystemExit(fail(e)) from None
