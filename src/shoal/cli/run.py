"""`shoal run`: run an app with its proxy, Kubernetes-style (deployment -> replica set -> pods).

options -> apply the deployment (control plane) -> start or signal the replica set's
supervisor -> wait until its pods are ready -> drain older replica sets (rolling update)
-> optionally stream the logs.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

import click

from .client import home_option


def _env_pairs(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
               ) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} must be KEY=VALUE")
        out[key] = value
    return out


@click.command("run", context_settings={"ignore_unknown_options": False})
@home_option
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--name", required=True, help="Deployment name (and service name).")
@click.option("--port", required=True, type=click.IntRange(1, 65535),
              help="The port the app serves; callers reach it as NAME.NAMESPACE:PORT. "
              "Locally the app listens on $PORT (allocated; `$(PORT)` in CMD is replaced).")
@click.option("--replicas", default=1, show_default=True, type=click.IntRange(0, 100))
@click.option("--service-port", type=click.IntRange(1, 65535),
              help="Port of the service NAME.NS (default: --port).")
@click.option("--mtls", type=click.Choice(["strict", "permissive"]),
              help="strict: refuse plaintext connections from outside the pod "
              "(default: the mesh's, `shoal up --mtls`; permissive unless set there).")
@click.option("--service-account", default="default", show_default=True)
@click.option("--env", "env", multiple=True, callback=_env_pairs, metavar="KEY=VALUE",
              help="Environment of the app (repeatable).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Where each pod's inbound and tap listeners bind (another host's reach: "
                   "its IP; the control plane then taps over mTLS).")
@click.option("--advertise", metavar="HOST",
              help="The address other hosts reach the pods at (needed with --host 0.0.0.0).")
@click.option("--attach", is_flag=True, help="Stream the pods' logs after they are ready.")
@click.option("--timeout", default=120.0, show_default=True,
              help="Seconds to wait for the pods to be ready.")
@click.option("--proxy-command", envvar="SHOAL_RUN_PROXY_COMMAND", hidden=True,
              help="Proxy executable to run instead of `shoal proxy` (tests).")
@click.argument("cmd", nargs=-1, required=True, metavar="-- CMD [ARGS]...")
def command(home, namespace: str, name: str, port: int, replicas: int,
            service_port: int | None, mtls: str | None, service_account: str,
            env: dict[str, str], host: str, advertise: str | None, attach: bool,
            timeout: float, proxy_command: str | None, cmd: tuple[str, ...]) -> None:
    """Run CMD meshed: one proxy per replica, supervised, registered with the control plane.

    \b
    shoal run -n emojivoto --name emoji --port 8080 --replicas 2 -- python emoji.py
    """
    from shoal.control.daemon import start_supervisor, stop_supervisor
    from shoal.control.errors import ControlError

    from .client import Client, fail

    if host in ("0.0.0.0", "::") and not advertise:
        raise click.BadParameter("with a wildcard --host, say where pods are reached: "
                                 "--advertise HOST", param_hint="--advertise")
    try:
        client = Client.from_home(home)
        applied = client.post("/api/v1/deployments", {
            "namespace": namespace, "name": name, "command": list(cmd), "port": port,
            "env": env, "replicas": replicas, "service_port": service_port,
            "service_account": service_account, "mtls": mtls})
        rs = applied["replicaset"]
        mtls = applied["deployment"]["mtls"]  # the mesh's default when not given
        spec = {"namespace": namespace, "deployment": name, "replicaset": rs["name"],
                "pod_template_hash": rs["pod_template_hash"], "replicas": replicas,
                "command": list(cmd), "env": env, "cwd": os.getcwd(),
                "service_account": service_account, "mtls": mtls,
                "proxy_command": shlex.split(proxy_command) if proxy_command else [],
                "host": host, "advertise": advertise, "port": port,
                "service_port": service_port}
        if client.endpoint.from_env:
            spec.update(api=client.endpoint.url, token=client.endpoint.token)
        home.ensure()
        supervisor = start_supervisor(home, spec)
        click.echo(f"deployment/{name} configured (replicaset/{rs['name']}, "
                   f"{replicas} replica{'s' if replicas != 1 else ''})")
        pods = wait_ready(client, namespace, rs["name"], replicas, timeout, home, supervisor)
        for pod in pods:
            click.echo(f"pod/{pod['name']} ready (inbound {pod['inbound']})")
        for old in applied["drain"]:
            stop_supervisor(home, namespace, old)
            for pod in client.get("/api/v1/pods", namespace=namespace):
                if pod["replicaset"] == old:
                    client.delete(f"/api/v1/namespaces/{namespace}/pods/{pod['name']}")
            click.echo(f"replicaset/{old} scaled down to 0")
        svc_port = service_port or port
        click.echo(f"service/{name} reachable as {name}.{namespace}:{svc_port}")
    except ControlError as e:
        raise SystemExit(fail(e)) from None
    if attach:
        follow(home, namespace, [p["name"] for p in pods])


def wait_ready(client, namespace: str, replicaset: str, replicas: int, timeout: float,
               home, supervisor: int) -> list[dict]:
    """The replica set's ready pods once there are ``replicas`` of them; fails early when
    the supervisor dies or a pod is crash-looping, pointing at the logs."""
    from shoal.control.daemon import pid_alive, tail
    from shoal.control.errors import ControlError

    deadline = time.monotonic() + timeout
    while True:
        pods = [p for p in client.get("/api/v1/pods", namespace=namespace)
                if p["replicaset"] == replicaset and p["status"] != "Terminating"]
        ready = [p for p in pods if p["ready"]]
        if len(ready) >= replicas:
            return sorted(ready, key=lambda p: p["name"])[:replicas] if replicas else []
        for pod in pods:
            if pod["status"] == "CrashLoopBackOff":
                log = home.pod_log(namespace, pod["name"], "app")
                raise ControlError(f"pod {pod['name']} is crash-looping "
                                   f"({pod['restarts']} restarts); {log}: {tail(log)}")
        if not pid_alive(supervisor):
            log = home.logs / namespace / f"{replicaset}.supervisor.log"
            raise ControlError(f"the supervisor of replicaset/{replicaset} exited; "
                               f"{log}: {tail(log)}")
        if time.monotonic() > deadline:
            raise ControlError(
                f"{len(ready)}/{replicas} pods of replicaset/{replicaset} ready after "
                f"{timeout:.0f}s; logs in {home.logs / namespace}")
        time.sleep(0.1)


def follow(home, namespace: str, pods: list[str], forever: bool = True) -> None:
    """Print every app and proxy log of ``pods``, prefixed, then follow until Ctrl-C."""
    files: dict[Path, tuple[str, int]] = {}
    for pod in pods:
        for container in ("app", "proxy"):
            path = home.pod_log(namespace, pod, container)
            files[path] = (f"[{pod} {container}] ", 0)
    try:
        while True:
            for path, (prefix, offset) in list(files.items()):
                try:
                    with open(path, "rb") as f:
                        f.seek(offset)
                        data = f.read()
                except OSError:
                    continue
                if not data:
                    continue
                complete = data.rpartition(b"\n")[0]
                if not complete:
                    continue
                files[path] = (prefix, offset + len(complete) + 1)
                for line in complete.decode(errors="replace").splitlines():
                    click.echo(prefix + line)
            if not forever:
                return
            time.sleep(0.2)
    except KeyboardInterrupt:
        click.echo("detached; the pods keep running (`shoal down` stops them)", err=True)
