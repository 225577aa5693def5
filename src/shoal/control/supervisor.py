"""The supervisor of one replica set: a detached process that keeps its pods running.

For each replica (pod) it starts the proxy, waits for the proxy's ready line, then
starts the app with ``PORT``, ``HTTP_PROXY``/``http_proxy`` and the deployment's env;
restarts either one with back-off when it exits (counting RESTARTS); probes the
proxy's ``/ready`` and the app's port; and reports every pod to the control plane,
on change and as a heartbeat, so a restarted control plane learns the pods again.
It lives apart from the control plane so a control plane that dies takes neither
supervision nor traffic with it.

``python -m shoal.control.supervisor --home H --namespace NS --replicaset RS``
reads its spec from ``H/supervisors/NS/RS.json``; SIGHUP re-reads it (scaling),
SIGTERM stops every pod and removes them from the control plane.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .names import pod_name
from .process import rotate_log
from .replica import Replica
from .state import Home, atomic_write, read_json
from .uplink import Uplink

HEARTBEAT = 5.0


@dataclass(frozen=True)
class SupervisorSpec:
    namespace: str
    deployment: str
    replicaset: str
    pod_template_hash: str
    replicas: int
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str
    service_account: str = "default"
    mtls: str = "permissive"
    proxy_command: tuple[str, ...] = ()
    host: str = "127.0.0.1"     # where the inbound listener binds
    advertise: str | None = None  # the address other hosts reach it at (default: host)
    api: str | None = None      # set when the CLI used SHOAL_API instead of $SHOAL_HOME
    port: int = 0               # the app's port (0: unknown, older specs)
    service_port: int | None = None
    token: str | None = None

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> SupervisorSpec:
        return cls(**{**raw, "command": tuple(raw["command"]),
                      "env": tuple(sorted(dict(raw.get("env", {})).items())),
                      "proxy_command": tuple(raw.get("proxy_command", ()))})

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.update(command=list(self.command), env=dict(self.env),
                 proxy_command=list(self.proxy_command))
        return d


class Supervisor:
    def __init__(self, home: Home, spec: SupervisorSpec) -> None:
        self.home = home
        self.spec = spec
        self.uplink = Uplink(home, spec.api, spec.token)
        self.replicas: dict[str, tuple[Replica, asyncio.Task[None]]] = {}
        self.changed = asyncio.Event()
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        self.scale(self.spec.replicas)
        reporter = asyncio.create_task(self.report_loop(), name="report-pods")
        await self.stopping.wait()
        reporter.cancel()
        await self.shutdown()

    def reload(self) -> None:
        raw = read_json(self.home.supervisor_file(self.spec.namespace, self.spec.replicaset))
        if raw:
            self.spec = SupervisorSpec.parse(raw["spec"])
            self.scale(self.spec.replicas)

    def scale(self, replicas: int) -> None:
        while len(self.replicas) < replicas:
            name = pod_name(self.spec.replicaset)
            replica = Replica(self, name, free_port())
            task = asyncio.create_task(replica.run(), name=f"replica-{name}")
            self.replicas[name] = (replica, task)
        for name in list(self.replicas)[replicas:]:
            replica, task = self.replicas.pop(name)
            stopper = asyncio.create_task(self.retire(replica, task), name=f"retire-{name}")
            _BACKGROUND.add(stopper)
            stopper.add_done_callback(_BACKGROUND.discard)
        self.changed.set()

    async def retire(self, replica: Replica, task: asyncio.Task[None]) -> None:
        await replica.stop()
        task.cancel()
        await self.uplink.delete_pod(self.spec.namespace, replica.name)

    async def report_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), HEARTBEAT)
            self.changed.clear()
            for replica, _ in list(self.replicas.values()):
                await self.uplink.report_pod(self.spec.namespace, replica.name,
                                             replica.report())
                for part in ("proxy", "app"):
                    rotate_log(self.home.pod_log(self.spec.namespace, replica.name, part))

    async def shutdown(self) -> None:
        for replica, _ in self.replicas.values():
            replica.terminating = True
            await self.uplink.report_pod(self.spec.namespace, replica.name, replica.report())
        await asyncio.gather(*(r.stop() for r, _ in self.replicas.values()))
        for name, (_, task) in self.replicas.items():
            task.cancel()
            await self.uplink.delete_pod(self.spec.namespace, name)
        await self.uplink.close()


_BACKGROUND: set[asyncio.Task[None]] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out; the app binds it right after (local mode)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shoal-supervisor")
    parser.add_argument("--home", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--replicaset", required=True)
    args = parser.parse_args(argv)
    home = Home(Path(args.home))
    raw = read_json(home.supervisor_file(args.namespace, args.replicaset))
    if not raw:
        print(f"no spec for replica set {args.replicaset} in namespace {args.namespace}")
        return 2
    pid_file = home.supervisor_file(args.namespace, args.replicaset).with_suffix(".pid")
    atomic_write(pid_file, f"{os.getpid()}\n".encode())
    try:
        asyncio.run(Supervisor(home, SupervisorSpec.parse(raw["spec"])).run())
    finally:
        with contextlib.suppress(OSError):
            if pid_file.read_text().strip() == str(os.getpid()):
                pid_file.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
