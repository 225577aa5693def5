"""`shoal get`: list resources like kubectl (pods, deploy, rs, svc, ns, sa); -o json|wide.

options -> which kind (aliases as kubectl) -> fetch from the API -> render (pure) -> print.
"""

from __future__ import annotations

import time

import click

from .client import home_option

KINDS = {
    "po": "pods", "pod": "pods", "pods": "pods",
    "deploy": "deployments", "deployment": "deployments", "deployments": "deployments",
    "rs": "replicasets", "replicaset": "replicasets", "replicasets": "replicasets",
    "svc": "services", "service": "services", "services": "services",
    "ns": "namespaces", "namespace": "namespaces", "namespaces": "namespaces",
    "sa": "serviceaccounts", "serviceaccount": "serviceaccounts",
    "serviceaccounts": "serviceaccounts",
}


def render(kind: str, items: list[dict], pods: list[dict], now: float, all_ns: bool,
           output: str | None) -> str:
    from . import render as r

    if output == "json":
        return r.to_json(items)
    if not items:
        return ""
    if kind == "pods":
        return r.pods(items, now, all_ns, wide=output == "wide")
    if kind == "deployments":
        return r.deployments(items, pods, now, all_ns)
    if kind == "replicasets":
        return r.replicasets(items, pods, now, all_ns)
    if kind == "services":
        return r.services(items, now, all_ns)
    if kind == "serviceaccounts":
        return r.serviceaccounts(items, now, all_ns)
    return r.namespaces(items, now)


@click.command("get")
@home_option
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-A", "--all-namespaces", "all_ns", is_flag=True, help="Every namespace.")
@click.option("-o", "--output", type=click.Choice(["json", "wide"]), help="Output format.")
@click.argument("resource")
@click.argument("name", required=False)
def command(home, namespace: str, all_ns: bool, output: str | None, resource: str,
            name: str | None) -> None:
    """List resources: pods (po), deploy, rs, svc, ns, sa; `TYPE NAME` or `TYPE/NAME`.

    \b
    shoal get pods -n emojivoto
    shoal get deploy -A -o json
    """
    from shoal.control.errors import ControlError

    from .client import Client, fail

    word, _, slash_name = resource.partition("/")
    kind = KINDS.get(word.lower())
    if kind is None:
        raise click.BadParameter(f"unknown resource type {word!r}; one of "
                                 "pods, deploy, rs, svc, ns, sa", param_hint="RESOURCE")
    name = name or slash_name or None
    scope = None if all_ns or kind == "namespaces" else namespace
    try:
        client = Client.from_home(home)
        items = client.get(f"/api/v1/{kind}", namespace=scope)
        pods = client.get("/api/v1/pods", namespace=scope) \
            if kind in ("deployments", "replicasets") else []
    except ControlError as e:
        raise SystemExit(fail(e)) from None
    if name is not None:
        items = [i for i in items if i["name"] == name]
        if not items:
            where = "" if kind == "namespaces" else f" in namespace {namespace}"
            raise SystemExit(fail(ControlError(f"{word} {name!r} not found{where}")))
    text = render(kind, items, pods, time.time(), all_ns, output)
    if not text:
        where = "" if kind == "namespaces" or all_ns else f" in {namespace} namespace"
        click.echo(f"No resources found{where}.", err=True)
        return
    click.echo(text)
