"""`shoal dashboard`: print the dashboard's address with a one-time login link, and
open it in a browser with ``--open``.

The link signs the browser in once (a session cookie follows); after five minutes,
or once used, it is refused and the login page asks for the token instead.
"""

from __future__ import annotations

import click

from .client import home_option


@click.command("dashboard")
@home_option
@click.option("--open", "open_browser", is_flag=True, help="Open it in the default browser.")
@click.option("--show", type=click.Choice(["url", "link"]), default="link", show_default=True,
              help="`url`: the plain address; `link`: with a one-time login ticket.")
@click.option("--path", default="/namespaces", show_default=True, metavar="PATH",
              help="The page to land on, e.g. /namespaces/emojivoto or /controlplane.")
def command(home, open_browser: bool, show: str, path: str) -> None:
    """Where the web dashboard is (served by the control plane).

    \b
    shoal dashboard            # prints a one-time login link
    shoal dashboard --open     # and opens it
    """
    from urllib.parse import quote

    from shoal.control.errors import ControlError

    from .client import Client, fail

    try:
        client = Client.from_home(home)
        base = client.endpoint.url.rstrip("/")
        if not path.startswith("/") or path.startswith("//"):
            raise ControlError(f"--path must be a page of the dashboard, like /namespaces "
                               f"(got {path!r})")
        health = client.get("/api/v1/health")
        url = f"{base}{path}"
        if show == "link":
            ticket = client.post("/api/v1/dashboard/tickets", {})
            url = f"{base}{ticket['path']}&next={quote(path, safe='')}"
    except ControlError as e:
        raise SystemExit(fail(e)) from None
    web = next((c for c in health["components"] if c["name"] == "web"), None)
    click.echo("shoal dashboard available at:")
    click.echo(url)
    if show == "link":
        click.echo("(a one-time link, valid 5 minutes; later, log in with the token in "
                   f"{home.token_file})", err=True)
    if web is not None and not web["healthy"]:
        click.echo(f"Warning: {web['message']}", err=True)
    if open_browser:
        import webbrowser

        if not webbrowser.open(url):
            click.echo("could not open a browser; copy the address above", err=True)
