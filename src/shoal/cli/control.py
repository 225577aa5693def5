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
def command(home, api: str, cert_lifetime: str | None, pod_stale_after: str | None) -> None:
    """Run the control plane (API, destination, identity) in the foreground."""
    from shoal.control.config import ControlConfig
    from shoal.control.errors import ControlError
    from shoal.control.server import run

    from .client import fail

    settings = {"home": str(home.root), "api": api, "cert_lifetime": cert_lifetime or "",
                "pod_stale_after": pod_stale_after or ""}
    try:
        raise SystemExit(run(ControlConfig.parse(settings)))
    except ControlError as e:
        raise SystemExit(fail(e)) from None
