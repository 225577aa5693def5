"""``shoal demo``: the shoalvoto lab, meshed, with load, so every number has something to show.

options -> start (control plane, app, load) -> wait until metrics flow -> print where to
look -> run until Ctrl-C (or --duration) -> stop what was started.
"""

from __future__ import annotations

import click

from .client import home_option


@click.command(name="demo")
@home_option
@click.option("--rate", default=3.0, show_default=True, type=click.FloatRange(0.1, 1000),
              help="Requests per second sent by vote-bot to web.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--detach", is_flag=True, help="Leave the demo running and return.")
@click.option("--down", is_flag=True, help="Stop a detached demo.")
@click.option("--api", default="127.0.0.1:50750", show_default=True, metavar="HOST:PORT",
              help="Where a control plane started by the demo listens (port 0: any).")
@click.option("--scrape-interval", metavar="DURATION",
              help="Scrape interval of a control plane started by the demo (default 10s).")
def command(home, rate: float, duration: float | None, detach: bool, down: bool, api: str,
            scrape_interval: str | None) -> None:
    """Run the shoalvoto app meshed (web, emoji x2, voting, kv, vote-bot); print where to look.

    \b
    shoal demo                  # until Ctrl-C
    shoal demo --rate 20 --detach ; shoal demo --down
    """
    import signal
    import threading

    from shoal.control.errors import ControlError
    from shoal.demo import lab

    from .client import fail

    def say(text: str) -> None:
        click.echo(text, err=True)

    if down:
        stopped = lab.stop(home)
        click.echo("\n".join(f"{s} stopped" for s in stopped) or "no demo was running")
        return
    if lab.running(home):
        raise SystemExit(fail(ControlError(
            "a demo is already running here; stop it with `shoal demo --down`")))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    code = 0
    try:
        url = lab.start(home, rate, api, scrape_interval, say)
        say("waiting for metrics to flow (the first scrapes take a few seconds)")
        if not lab.wait_for_traffic(home):
            say(f"no traffic seen yet; logs in {home.logs / lab.NAMESPACE}")
        click.echo(lab.banner(lab.dashboard_link(home) or url))
        if detach:
            return
        stop.wait(duration)
    except KeyboardInterrupt:
        pass
    except ControlError as e:
        code = fail(e)
    finally:
        if not detach or code:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan pods
            say("stopping the demo")
            lab.stop(home)
            click.echo("shoal demo stopped.")
    raise SystemExit(code)
