"""`shoal prometheus-config`: a prometheus.yml that scrapes the mesh as Linkerd's does.

The targets come from the control plane's ``file_sd`` file, which carries each
proxy's workload labels and follows the pods as they come and go.
"""

from __future__ import annotations

import click

from .client import home_option


@click.command("prometheus-config")
@home_option
def command(home) -> None:
    """Print a Prometheus scrape configuration for every proxy of the mesh.

    \b
    shoal prometheus-config > prometheus.yml
    prometheus --config.file=prometheus.yml &
    shoal down && shoal up --prometheus-url http://127.0.0.1:9090
    """
    from shoal.control.errors import ControlError

    from .client import Client, fail

    try:
        answer = Client.from_home(home).get("/api/v1/metrics/prometheus-config")
    except ControlError as e:
        raise SystemExit(fail(e)) from None
    click.echo(answer["config"], nl=False)
