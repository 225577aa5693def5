"""`shoal profile`: apply, get, list and delete service profiles; generate them.

    shoal profile apply -f todoui-profile.yaml
    shoal profile list [-A]            shoal profile get todoui -n web [-o json]
    shoal profile delete todoui -n web
    shoal profile --template todoui -n web
    shoal profile --open-api spec.yaml books -n lib
    shoal profile --proto cart.proto cart -n shop
"""

from __future__ import annotations

import json
import sys

import click

from .client import home_option

VERBS = ("apply", "get", "list", "delete")


def generate(service: str, namespace: str, template: bool, open_api: str | None,
             proto: str | None) -> dict:
    from shoal import profilegen
    from shoal.profiles import template as make_template

    if open_api:
        import yaml  # type: ignore[import-untyped]

        with open(open_api, encoding="utf-8") as f:
            return profilegen.from_openapi(yaml.safe_load(f), service, namespace)
    if proto:
        with open(proto, encoding="utf-8") as f:
            return profilegen.from_proto(f.read(), service, namespace)
    return make_template(service, namespace)


def render(doc: object, output: str) -> str:
    if output == "json":
        return json.dumps(doc, indent=2)
    import yaml

    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).rstrip("\n")


@click.command("profile")
@home_option
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-A", "--all-namespaces", "all_ns", is_flag=True, help="list: every namespace.")
@click.option("-f", "--filename", metavar="FILE", help="apply: YAML or JSON documents ('-': stdin).")
@click.option("--template", is_flag=True, help="Print a starting profile for SERVICE.")
@click.option("--open-api", metavar="FILE", type=click.Path(exists=True, dir_okay=False),
              help="Print a profile for SERVICE with a route per path and method of FILE.")
@click.option("--proto", metavar="FILE", type=click.Path(exists=True, dir_okay=False),
              help="Print a profile for SERVICE with a route per gRPC method of FILE.")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml",
              show_default=True)
@click.argument("args", nargs=-1, metavar="[apply|get|list|delete] [SERVICE]")
def command(home, namespace: str, all_ns: bool, filename: str | None, template: bool,
            open_api: str | None, proto: str | None, output: str,
            args: tuple[str, ...]) -> None:
    """Service profiles: per-route metrics, timeouts and retries for a service."""
    from shoal.control.errors import ControlError
    from shoal.profiles import ProfileError, parse_documents

    from . import render as r
    from .client import Client, fail

    try:
        if sum(map(bool, (template, open_api, proto))) > 1:
            raise ControlError("--template, --open-api and --proto are mutually exclusive")
        if template or open_api or proto:
            if len(args) != 1:
                raise ControlError("name the service: shoal profile --template SERVICE -n NS")
            click.echo(render(generate(args[0], namespace, template, open_api, proto), output))
            return
        if not args or args[0] not in VERBS:
            raise ControlError(f"expected one of {', '.join(VERBS)}, or --template, "
                               "--open-api, --proto")
        verb, rest = args[0], args[1:]
        client = Client.from_home(home)
        if verb == "apply":
            if not filename or rest:
                raise ControlError("apply needs -f FILE (and no other argument)")
            text = sys.stdin.read() if filename == "-" else open(filename, encoding="utf-8").read()
            profiles = parse_documents(text)  # refuse locally first, naming the field
            if not profiles:
                raise ControlError(f"no ServiceProfile document in {filename}")
            for p in client.post("/api/v1/profiles", [p.to_json() for p in profiles]):
                click.echo(f"serviceprofile/{p['name']} configured "
                           f"({len(p['routes'])} routes)")
        elif verb == "list":
            items = client.get("/api/v1/profiles", namespace=None if all_ns else namespace)
            if output == "json":
                click.echo(r.to_json(items))
            elif not items:
                where = "" if all_ns else f" in {namespace} namespace"
                click.echo(f"No service profiles found{where}.", err=True)
            else:
                rows = [[i["service"], len(i["routes"]), i["name"]] for i in items]
                headers = ["NAME", "ROUTES", "PROFILE"]
                if all_ns:
                    headers, rows = ["NAMESPACE", *headers], [
                        [i["namespace"], *row] for i, row in zip(items, rows, strict=True)]
                click.echo(r.table(headers, rows))
        else:
            if len(rest) != 1:
                raise ControlError(f"{verb} needs the SERVICE name")
            service = rest[0]
            if verb == "get":
                click.echo(render(client.get(f"/api/v1/profiles/{namespace}/{service}"),
                                  output))
            else:
                gone = client.delete(f"/api/v1/profiles/{namespace}/{service}")
                click.echo(f"serviceprofile/{gone['name']} deleted")
    except ProfileError as e:
        raise SystemExit(fail(ControlError(f"invalid service profile: {e}"))) from None
    except OSError as e:
        raise SystemExit(fail(ControlError(f"cannot read {e.filename}: {e.strerror}"))) from None
    except ControlError as e:
        raise SystemExit(fail(e)) from None
