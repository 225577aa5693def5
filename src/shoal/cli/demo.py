"""``shoal demo``: a meshed demo with load, so every number has something to show."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click


@click.command(name="demo")
@click.option("--rate", default=10.0, show_default=True, help="Requests per second of load.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
def command(rate: float, duration: float | None) -> None:
    """Start a backend, two proxies and a client loop; print where to look."""
    from shoal.demo.local import run

    home = Path(os.environ.get("SHOAL_HOME", Path.home() / ".shoal"))
    sys.exit(run(rate, duration, home))
