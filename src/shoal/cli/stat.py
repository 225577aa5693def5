"""`shoal stat`: golden metrics per resource, as `linkerd viz stat`.

options -> one API request per named resource -> fetch -> render (pure) -> print.
"""

from __future__ import annotations

import click

from .client import home_option

OUTPUTS = ("table", "wide", "json")


def requests(words: tuple[str, ...], namespace: str | None, **params: object
             ) -> list[dict[str, object]]:
    """The API queries for ``stat deploy/web po`` style arguments."""
    from shoal.control.metrics_views import split_resources

    return [dict(params, resource=t, name=n, namespace=namespace)
            for t, n in split_resources(list(words))]


@click.command("stat")
@home_option
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-A", "--all-namespaces", "all_ns", is_flag=True, help="Every namespace.")
@click.option("--to", "to", metavar="RESOURCE", help="Only traffic to this resource (TYPE/NAME).")
@click.option("--from", "from_", metavar="RESOURCE",
              help="Only traffic from this resource (TYPE/NAME).")
@click.option("--to-namespace", metavar="NS", help="Namespace of --to (default: -n).")
@click.option("--from-namespace", metavar="NS", help="Namespace of --from (default: -n).")
@click.option("-t", "--time-window", "window", default="1m", show_default=True,
              help="Window of the numbers: 10s, 1m, 10m, 1h...")
@click.option("-l", "--selector", metavar="SELECTOR",
              help="Label selector on workload labels, e.g. deployment=web,pod!=web-x.")
@click.option("--unmeshed", is_flag=True, help="Also show resources without a proxy.")
@click.option("-o", "--output", type=click.Choice(OUTPUTS), default="table",
              show_default=True)
@click.argument("resources", nargs=-1, required=True, metavar="TYPE[/NAME]...")
def command(home, namespace: str, all_ns: bool, to: str | None, from_: str | None,
            to_namespace: str | None, from_namespace: str | None, window: str,
            selector: str | None, unmeshed: bool, output: str,
            resources: tuple[str, ...]) -> None:
    """Success rate, request rate, latency percentiles and TCP connections per resource.

    Types: ns, deploy, rs, po, svc, all. Without --to/--from the numbers are the
    resource's inbound view; --to and --from are the callers' outbound view.

    \b
    shoal stat deploy -n emojivoto
    shoal stat deploy/web --to deploy/emoji -n emojivoto
    shoal stat po --to svc/todobackend
    """
    from shoal.control.errors import ControlError
    from shoal.viz.errors import QueryError

    from . import _viztables as t
    from .client import Client, fail

    if to and from_:
        raise SystemExit(fail(ControlError("--to and --from flags are mutually exclusive")))
    try:
        queries = requests(resources, None if all_ns else namespace, window=window, to=to,
                           to_namespace=to_namespace, from_namespace=from_namespace,
                           selector=selector, unmeshed=unmeshed or None)
        for q in queries:
            q["from"] = from_
        client = Client.from_home(home)
        rows = [row for q in queries for row in client.get("/api/v1/stat", **q)]
    except QueryError as e:
        raise SystemExit(fail(ControlError(str(e)))) from None
    except ControlError as e:
        raise SystemExit(fail(e)) from None
    if not rows and output != "json":
        click.echo("No traffic found.", err=True)
        return
    click.echo(t.stat(rows, t.StatOptions(output, all_ns)))
