"""Two proxies, a backend and a client loop on this machine, so metrics move.

    client loop --HTTP_PROXY--> proxy "web" (outbound) --> proxy "api" (inbound) --> backend
"""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

SHOAL = str(Path(sys.executable).parent / "shoal")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_proxy(*args: str, logs: Path, name: str) -> tuple[subprocess.Popen[str], dict]:
    err = open(logs / f"{name}.log", "w")
    proc = subprocess.Popen([SHOAL, "proxy", "--outbound", "127.0.0.1:0", "--admin",
                             "127.0.0.1:0", "--tap", "127.0.0.1:0", *args],
                            stdout=subprocess.PIPE, stderr=err, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"proxy {name} did not start; see {logs / (name + '.log')}")
    return proc, json.loads(line)


@contextmanager
def running(logs: Path) -> Iterator[dict[str, dict]]:
    """Start backend + two proxies; yield their addresses; stop everything after."""
    procs: list[subprocess.Popen] = []
    try:
        port = free_port()
        backend = subprocess.Popen([sys.executable, "-m", "shoal.demo.backend", "--port",
                                    str(port)], stderr=open(logs / "backend.log", "w"))
        procs.append(backend)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or backend.poll() is not None:
                    raise RuntimeError("demo backend did not start") from None
                time.sleep(0.05)
        api, api_addr = start_proxy("--inbound", "127.0.0.1:0", "--app", f"127.0.0.1:{port}",
                                    "--namespace", "demo", "--deployment", "api",
                                    "--pod", "api-0", logs=logs, name="proxy-api")
        procs.append(api)
        web, web_addr = start_proxy("--namespace", "demo", "--deployment", "web",
                                    "--pod", "web-0", "--destination",
                                    f"api.demo:8080={api_addr['inbound']}",
                                    logs=logs, name="proxy-web")
        procs.append(web)
        yield {"api": api_addr, "web": web_addr}
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def client_loop(outbound: str, rate: float, stop: threading.Event) -> None:
    """Calls the api through the web proxy, as an app with HTTP_PROXY set would."""
    paths = ["/api/list"] * 6 + ["/api/slow"] * 2 + ["/api/flaky"] * 2
    with httpx.Client(proxy=f"http://{outbound}", timeout=10) as c:
        while not stop.is_set():
            try:
                c.get(f"http://api.demo:8080{random.choice(paths)}")
            except httpx.HTTPError:
                pass
            stop.wait(1.0 / rate)


def summary(admin: str) -> str:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://{admin}/metrics", timeout=5).text
    total = ok = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "response_total" and s.labels.get("direction") == "outbound":
                total += s.value
                ok += s.value if s.labels.get("classification") == "success" else 0
    rate = f"{100 * ok / total:.2f}%" if total else "-"
    return f"web -> api: {int(total)} responses, success {rate}"


def run(rate: float, duration: float | None, home: Path) -> int:
    logs = home / "logs" / "demo"
    logs.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with running(logs) as addrs:
        t = threading.Thread(target=client_loop, args=(addrs["web"]["outbound"], rate, stop),
                             name="demo-client", daemon=True)
        t.start()
        print("shoal demo is running.")
        print(f"  metrics:  http://{addrs['web']['admin']}/metrics   (web, outbound)")
        print(f"            http://{addrs['api']['admin']}/metrics   (api, inbound)")
        print(f"  tap:      curl -N -XPOST -d '{{}}' http://{addrs['api']['tap']}/tap")
        print(f"  logs:     {logs}")
        print("  stop:     Ctrl-C", flush=True)
        started = time.monotonic()
        try:
            while not stop.wait(2.0):
                print("  " + summary(addrs["web"]["admin"]), flush=True)
                if duration is not None and time.monotonic() - started >= duration:
                    break
        except KeyboardInterrupt:
            pass
        stop.set()
        t.join(5)
    print("shoal demo stopped.")
    return 0



