"""One replica (pod) of a supervised replica set: its proxy, its app, their restarts
and readiness.

The proxy starts first on ports 0 and tells its addresses on its ready line; the app
starts once the outbound address is known (it goes into ``HTTP_PROXY``). A restarted
proxy asks for the same ports again so the app's ``HTTP_PROXY`` stays right; if it
cannot get them, it takes new ones and the app is restarted with the new address.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import time
from typing import TYPE_CHECKING, Any

import httpx

from .process import Backoff, open_log, read_ready, spawn, stop

if TYPE_CHECKING:
    from .supervisor import Supervisor

ADDRESSES = ("inbound", "outbound", "admin", "tap")
#: the listeners bound on the pod's ``--host`` and advertised for other hosts: inbound
#: for callers, admin for the control plane's scrapes (``/shutdown`` stays loopback
#: only), tap for the control plane's tap API over mTLS
REACHABLE = ("inbound", "admin", "tap")
READY_LINE_TIMEOUT = 30.0


def default_proxy_command() -> list[str]:
    return [sys.executable, "-c", "from shoal.cli.main import main; main()", "proxy"]


_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion in command arguments; ``$$(VAR)`` stays literal.

    >>> expand("--port=$(PORT)", {"PORT": "8080"}), expand("$$(PORT)", {"PORT": "1"})
    ('--port=8080', '$(PORT)')
    """
    def sub(m: re.Match[str]) -> str:
        start = m.start()
        if start > 0 and arg[start - 1] == "$":
            return m.group(0)
        return env.get(m.group(1), m.group(0))
    return _VAR.sub(sub, arg).replace("$$(", "$(")


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class Replica:
    def __init__(self, supervisor: Supervisor, name: str, app_port: int) -> None:
        self.sup = supervisor
        self.name = name
        self.app_port = app_port
        self.restarts = 0
        self.addrs: dict[str, str] = {}   # as the control plane sees them (advertised)
        self.bound: dict[str, str] = {}   # as the proxy bound them
        self.reuse_ports = False
        self.app_outbound: str | None = None
        self.proxy: asyncio.subprocess.Process | None = None
        self.app: asyncio.subprocess.Process | None = None
        self.proxy_ready = self.app_ready = False
        self.proxy_up = asyncio.Event()
        self.stopped = asyncio.Event()
        self.started = False
        self.waiting = 0.0
        self.terminating = False
        self.degraded = False  # proxy started while the control plane was away

    # -- what the control plane sees ---------------------------------------------------
    def report(self) -> dict[str, Any]:
        if self.terminating:
            status = "Terminating"
        elif self.waiting >= 2.0:
            status = "CrashLoopBackOff"
        elif self.started:
            status = "Running"
        else:
            status = "Pending"
        ready = self.proxy_ready and self.app_ready and not self.terminating
        return {"replicaset": self.sup.spec.replicaset, "status": status, "ready": ready,
                "restarts": self.restarts, "app_port": self.app_port,
                "containers_ready": int(self.proxy_ready) + int(self.app_ready),
                **{k: self.addrs.get(k) for k in ADDRESSES}}

    def _changed(self) -> None:
        self.sup.changed.set()

    # -- lifecycle ---------------------------------------------------------------------
    async def run(self) -> None:
        spec = self.sup.spec
        # registered before the proxy starts, so that a bootstrap token can name the pod
        await self.sup.uplink.report_pod(spec.namespace, self.name, self.report())
        tasks = [asyncio.create_task(coro, name=f"{label}-{self.name}")
                 for label, coro in (("proxy", self._keep_proxy()), ("app", self._keep_app()),
                                     ("probe", self._probe()))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()

    async def stop(self) -> None:
        self.terminating = True
        self.stopped.set()
        self.proxy_up.set()  # release an app loop waiting for the proxy
        for proc in (self.app, self.proxy):
            if proc is not None:
                await stop(proc)

    async def _backoff(self, backoff: Backoff, since: float) -> None:
        self.waiting = backoff.next(time.monotonic() - since)
        self._changed()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopped.wait(), self.waiting)
        self.waiting = 0.0

    def _proxy_argv(self, token: str | None) -> list[str]:
        spec = self.sup.spec
        addr = {k: (self.addrs[k] if self.reuse_ports and k in self.addrs else "127.0.0.1:0")
                for k in ADDRESSES}
        # inbound, admin and tap bind where other hosts reach them (the control plane
        # scrapes admin and taps over mTLS when that is not loopback); outbound, the
        # app's own, stays on loopback
        for k in REACHABLE:
            if not (self.reuse_ports and k in self.bound):
                addr[k] = f"{_bracket(spec.host)}:0"
            else:
                addr[k] = self.bound[k]
        argv = [*(spec.proxy_command or default_proxy_command()),
                "--inbound", addr["inbound"], "--app", f"127.0.0.1:{self.app_port}",
                "--outbound", addr["outbound"], "--admin", addr["admin"], "--tap", addr["tap"],
                "--namespace", spec.namespace, "--deployment", spec.deployment,
                "--pod", self.name, "--service-account", spec.service_account,
                "--mtls", spec.mtls]
        if spec.service_port or spec.port:
            # the workload's own service: its profile gives inbound route metrics
            argv += ["--service", f"{spec.deployment}.{spec.namespace}:"
                                  f"{spec.service_port or spec.port}"]
        # without a control plane (down right now) the proxy starts with static routes
        # only; the next restart brings discovery and identity back
        if self.sup.uplink.url and token:
            argv += ["--control-plane", self.sup.uplink.url, "--bootstrap-token", token]
        return argv

    async def _keep_proxy(self) -> None:
        spec, backoff = self.sup.spec, Backoff()
        log = open_log(self.sup.home.pod_log(spec.namespace, self.name, "proxy"))
        while not self.stopped.is_set():
            token = await self.sup.uplink.bootstrap_token(spec.namespace, self.name)
            self.degraded = token is None and self.sup.uplink.down
            since = time.monotonic()
            try:
                self.proxy = await spawn(self._proxy_argv(token), log=log, stdout_pipe=True)
                ready = await read_ready(self.proxy, log, READY_LINE_TIMEOUT)
            except OSError as e:
                log.write(f"--- cannot start proxy: {e}\n".encode())
                self.proxy, ready = None, None
            if ready is not None and not self.stopped.is_set():
                self.bound = {k: str(ready[k]) for k in ADDRESSES if ready.get(k)}
                self.addrs = self._advertised(self.bound)
                self.reuse_ports = True
                self.started = True
                self.proxy_up.set()
                self._changed()
                if self.app_outbound and self.app_outbound != self.addrs.get("outbound") \
                        and self.app is not None:
                    await stop(self.app)  # the app loop restarts it with the new address
                assert self.proxy is not None
                await self.proxy.wait()
            elif self.proxy is not None:
                self.reuse_ports = False
                await stop(self.proxy)
            if self.stopped.is_set():
                return
            code = self.proxy.returncode if self.proxy else "not started"
            log.write(f"--- proxy exited ({code})\n".encode())
            self.proxy_up.clear()
            self.proxy_ready = False
            self.restarts += 1
            await self._backoff(backoff, since)

    def _advertised(self, bound: dict[str, str]) -> dict[str, str]:
        """The addresses other hosts use (``REACHABLE``): the bound ports on the
        advertised host."""
        out = dict(bound)
        spec = self.sup.spec
        host = spec.advertise or (None if spec.host in ("127.0.0.1", "localhost") else spec.host)
        for k in REACHABLE:
            if host and k in bound:
                out[k] = f"{_bracket(host)}:{bound[k].rpartition(':')[2]}"
        return out

    def _app_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
               and not k.startswith("SHOAL_")}
        proxy = f"http://{self.addrs['outbound']}"
        env.update(PORT=str(self.app_port), HTTP_PROXY=proxy, http_proxy=proxy,
                   NO_PROXY="", no_proxy="")
        env.update(dict(self.sup.spec.env))
        return env

    async def _keep_app(self) -> None:
        spec, backoff = self.sup.spec, Backoff()
        log = open_log(self.sup.home.pod_log(spec.namespace, self.name, "app"))
        while not self.stopped.is_set():
            await self.proxy_up.wait()
            if self.stopped.is_set():
                return
            self.app_outbound = self.addrs.get("outbound")
            since = time.monotonic()
            try:
                env = self._app_env()
                argv = [expand(arg, env) for arg in spec.command]
                self.app = await spawn(argv, log=log, env=env, cwd=spec.cwd)
                self._changed()
                code: int | str = await self.app.wait()
            except OSError as e:
                code = f"cannot start: {e}"
            if self.stopped.is_set():
                return
            log.write(f"--- app exited ({code})\n".encode())
            self.app_ready = False
            self.restarts += 1
            await self._backoff(backoff, since)

    async def _probe(self) -> None:
        async with httpx.AsyncClient(trust_env=False, timeout=1.0) as client:
            while not self.stopped.is_set():
                if self.degraded and self.proxy is not None and not self.sup.uplink.down \
                        and self.sup.uplink.url:
                    # the control plane is back: restart the proxy so it gets discovery
                    # and an identity
                    self.degraded = False
                    await stop(self.proxy)
                proxy_ok = await self._proxy_ready(client)
                app_ok = await self._app_listening()
                if (proxy_ok, app_ok) != (self.proxy_ready, self.app_ready):
                    self.proxy_ready, self.app_ready = proxy_ok, app_ok
                    self._changed()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopped.wait(),
                                           1.0 if proxy_ok and app_ok else 0.2)

    async def _proxy_ready(self, client: httpx.AsyncClient) -> bool:
        if self.proxy is None or self.proxy.returncode is not None or "admin" not in self.addrs:
            return False
        try:
            return (await client.get(f"http://{self.addrs['admin']}/ready")).status_code == 200
        except httpx.HTTPError:
            return False

    async def _app_listening(self) -> bool:
        if self.app is None or self.app.returncode is not None:
            return False
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.app_port), 1.0)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
