"""The lab behind ``shoal demo``: start the app meshed, wait for metrics, stop it again.

    vote-bot --HTTP--> web --gRPC--> emoji (x2)
                           --gRPC--> voting --TCP--> kv

Every service runs through ``shoal run`` in namespace ``shoalvoto``, so each gets a
proxy and reaches the others by name. ``$SHOAL_HOME/demo.json`` records whether the
demo started the control plane, so stopping it (Ctrl-C or ``shoal demo --down``)
leaves a control plane it found running alone.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from shoal.control import daemon
from shoal.control.errors import ControlError
from shoal.control.state import Home, read_json, write_json

NAMESPACE = "shoalvoto"


@dataclass(frozen=True)
class Service:
    name: str
    module: str
    port: int
    replicas: int = 1


#: Started in two waves: the services, then the load once they answer.
SERVICES = (Service("kv", "kv", 6379), Service("emoji", "emoji", 8080, replicas=2),
            Service("voting", "voting", 8080), Service("web", "web", 8080))
LOAD = Service("vote-bot", "vote_bot", 8080)

TRY = """\
shoal demo is running.
{control}  try:        shoal stat deploy -n shoalvoto
              shoal top deploy/web -n shoalvoto
              shoal tap deploy/web -n shoalvoto --to deploy/voting
              shoal edges deploy -n shoalvoto
              shoal routes deploy/web -n shoalvoto
  stop:       Ctrl-C (or shoal demo --down)"""


def banner(dashboard_url: str | None) -> str:
    """What ``shoal demo`` prints once metrics flow."""
    control = (f"  dashboard:  {dashboard_url}\n"
               "              (a one-time login link; `shoal dashboard` prints a new one)\n"
               if dashboard_url else "")
    return TRY.format(control=control)


def dashboard_link(home: Home) -> str | None:
    """A one-time login link to the demo's namespace page."""
    out = _shoal(home, "dashboard", "--path", f"/namespaces/{NAMESPACE}", timeout=30)
    lines = [x for x in out.splitlines() if x.startswith("http")]
    return lines[0] if lines else None


def _shoal(home: Home, command: str, *args: str, stdin: str | None = None,
           timeout: float = 180) -> str:
    r = subprocess.run([*daemon.CLI, command, "--home", str(home.root), *args], input=stdin,
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        last = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["failed"]
        raise ControlError(f"shoal {command} {' '.join(args[:4])}: {last[0]}")
    return r.stdout


#: web's routes; emoji's and voting's come from their protos (one route per method).
WEB_ROUTES = (("GET", "/"), ("GET", "/api/list"), ("POST", "/api/vote"), ("GET", "/api/results"))


def apply_profiles(home: Home) -> None:
    """Service profiles, so `shoal routes` has per-route rows from the start."""
    import json

    from shoal.demo.protos import PROTOS

    web = {"apiVersion": "linkerd.io/v1alpha2", "kind": "ServiceProfile",
           "metadata": {"name": f"web.{NAMESPACE}.svc.cluster.local", "namespace": NAMESPACE},
           "spec": {"routes": [{"name": f"{m} {p}", "condition": {"method": m, "pathRegex": p}}
                               for m, p in WEB_ROUTES]}}
    docs = [json.dumps(web)]
    for service in ("emoji", "voting"):
        docs.append(_shoal(home, "profile", "-n", NAMESPACE, "--proto",
                           str(PROTOS / f"{service}.proto"), service, "-o", "json"))
    for doc in docs:
        _shoal(home, "profile", "apply", "-n", NAMESPACE, "-f", "-", stdin=doc)


def run_service(home: Home, svc: Service, env: dict[str, str]) -> None:
    """``shoal run`` one service of the demo, waiting until its pods are ready."""
    envs = [f"--env={k}={v}" for k, v in {"SHOAL_HOME": str(home.root), **env}.items()]
    _shoal(home, "run", "-n", NAMESPACE, "--name", svc.name, "--port", str(svc.port),
           "--replicas", str(svc.replicas), *envs, "--", sys.executable, "-m",
           f"shoal.demo.{svc.module}")


def start(home: Home, rate: float, api: str, scrape_interval: str | None,
          say: Callable[[str], None]) -> str:
    """Control plane (reused when running), the app, then the load; returns the API URL."""
    import os

    from shoal.demo.protos import generate

    home.ensure()
    info = daemon.running_control(home)
    started = not (info and daemon.healthy(info["url"], home.token()))
    if started:
        if scrape_interval:
            os.environ["SHOAL_SCRAPE_INTERVAL"] = scrape_interval
        say("starting the control plane")
        info = daemon.start_control(home, api)
    assert info is not None
    write_json(home.root / "demo.json", {"control_plane_started": started,
                                         "namespace": NAMESPACE})
    apply_profiles(home)
    generate(home.root)  # once here, so replicas starting together find it ready
    say(f"starting {', '.join(s.name for s in SERVICES)} in namespace {NAMESPACE}")
    with ThreadPoolExecutor(len(SERVICES)) as pool:
        for f in [pool.submit(run_service, home, s, {}) for s in SERVICES]:
            f.result()
    say(f"starting {LOAD.name} at {rate:g} requests/s")
    run_service(home, LOAD, {"RATE": f"{rate:g}"})
    return str(info["url"])


def wait_for_traffic(home: Home, timeout: float = 120.0) -> bool:
    """True once stat shows web serving requests (metrics are flowing)."""
    from shoal.cli.client import Client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            rows = Client.from_home(home).get("/api/v1/stat", resource="deploy", name="web",
                                              namespace=NAMESPACE, window="1m")
            if any((r.get("rps") or 0) > 0 for r in rows):
                return True
        except ControlError:
            pass
        time.sleep(1.0)
    return False


def running(home: Home) -> bool:
    """A demo was started here and some of its pods are still supervised."""
    record = read_json(home.root / "demo.json", None)
    if not isinstance(record, dict):
        return False
    namespace = record.get("namespace", NAMESPACE)
    return any(s["pid"] for s in daemon.supervisors(home)
               if s.get("spec", {}).get("namespace") == namespace)


def stop(home: Home) -> list[str]:
    """Stop the demo's pods, and the control plane when the demo started it."""
    record = read_json(home.root / "demo.json", None) or {}
    namespace = record.get("namespace", NAMESPACE)
    ours = [s for s in daemon.supervisors(home) if s.get("spec", {}).get("namespace") == namespace]
    stopped = []
    with ThreadPoolExecutor(max(len(ours), 1)) as pool:
        for s, done in zip(ours, pool.map(
                lambda s: daemon.stop_supervisor(home, namespace, s["spec"]["replicaset"]),
                ours), strict=True):
            if done:
                stopped.append(f"replicaset/{s['spec']['replicaset']}")
    if record.get("control_plane_started"):
        info = daemon.running_control(home)
        if info and daemon.stop_pid(info["pid"]):
            stopped.append("control plane")
        home.control.unlink(missing_ok=True)
    (home.root / "demo.json").unlink(missing_ok=True)
    return stopped
