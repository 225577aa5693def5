"""``shoal load``: open-loop HTTP load at a fixed rate, with live progress and a summary."""

from __future__ import annotations

import asyncio
import re

import click

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")


def _seconds(text: str, what: str) -> float:
    m = _DURATION.match(text.strip())
    if not m:
        raise click.BadParameter(f"{text!r} is not a duration like 30s, 5m or 1h",
                                 param_hint=what)
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


@click.command(name="load")
@click.argument("url")
@click.option("--rate", type=float, help="Requests per second (default 10).")
@click.option("--interval", help="Seconds between requests (instead of --rate), e.g. 2.")
@click.option("--duration", help="How long: 30s, 5m, 1h (default: until Ctrl-C).")
@click.option("--concurrency", type=click.IntRange(1, 10000), default=64, show_default=True,
              help="Requests in flight at most.")
@click.option("-X", "--method", default="GET", show_default=True)
@click.option("-d", "--data", help="Request body.")
@click.option("-H", "--header", "headers", multiple=True, help="'Name: value' (repeatable).")
@click.option("--timeout", type=float, default=10.0, show_default=True)
def command(url: str, rate: float | None, interval: str | None, duration: str | None,
            concurrency: int, method: str, data: str | None, headers: tuple[str, ...],
            timeout: float) -> None:
    """Send requests to URL on a fixed schedule (open loop: it does not slow down when
    the target does, so latency stays honest). Meshed names work through HTTP_PROXY.

    \b
    shoal load http://web.shoalvoto:8080/api/vote --rate 50 --duration 5m
    shoal load http://127.0.0.1:8080/ --interval 2        # one request every 2 s
    """
    from shoal.demo.load import LoadConfig, run

    if not url.startswith(("http://", "https://")):
        raise click.BadParameter("must start with http:// or https://", param_hint="URL")
    if rate is not None and interval is not None:
        raise click.UsageError("--rate and --interval are mutually exclusive")
    per_second = 10.0 if rate is None else rate
    if interval is not None:
        per_second = 1.0 / max(_seconds(interval, "--interval"), 1e-3)
    if not 0 < per_second <= 100_000:
        raise click.BadParameter("must be between 0 and 100000", param_hint="--rate")
    parsed = []
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"{h!r} must be 'Name: value'", param_hint="--header")
        parsed.append((name.strip(), value.strip()))
    cfg = LoadConfig(url, per_second, _seconds(duration, "--duration") if duration else None,
                     concurrency, method.upper(), data.encode() if data is not None else None,
                     tuple(parsed), timeout)
    click.echo(f"sending {method.upper()} {url} at {per_second:g}/s"
               + (f" for {duration}" if duration else " until Ctrl-C"), err=True)
    async def main() -> object:
        import signal

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)  # Ctrl-C: stop, then summarise
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        return await run(cfg, stop=stop)

    tally = asyncio.run(main())
    click.echo(tally.summary())  # type: ignore[attr-defined]
