"""End to end on loopback: shoal up -> run -> get -> watch -> kill a replica ->
rolling update -> check -> down, with real processes and a tmp $SHOAL_HOME."""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.integration.test_control_helpers import (
    alive,
    get_json,
    processes_mentioning,
    real_proxy_usable,
    recorded_pids,
    shoal,
    wait_for,
    write_stand_in,
)

APP = r'''
import http.server, json, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"pid": os.getpid(), "port": os.environ["PORT"],
                           "color": os.environ.get("COLOR"),
                           "http_proxy": os.environ.get("HTTP_PROXY"),
                           "no_proxy": os.environ.get("NO_PROXY")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''

POD_KEYS = {"name", "namespace", "deployment", "replicaset", "status", "ready", "restarts",
            "app_port", "inbound", "outbound", "admin", "tap"}
USE_REAL_PROXY = real_proxy_usable()


@pytest.fixture
def mesh(tmp_path):
    """A running control plane in a tmp $SHOAL_HOME; everything is stopped afterwards."""
    home = tmp_path / "home"
    env = {} if USE_REAL_PROXY else {"SHOAL_RUN_PROXY_COMMAND": write_stand_in(tmp_path)}
    (tmp_path / "app.py").write_text(APP)
    pre = shoal(home, "check", "--pre", "--api", "127.0.0.1:0")
    assert "Status check results are √" in pre.stdout
    up = shoal(home, "up", "--api", "127.0.0.1:0", env=env)
    assert up.stdout.strip().startswith("http://127.0.0.1:")
    try:
        yield home, env, tmp_path
    finally:
        shoal(home, "down", check=False)
        for pid in processes_mentioning(str(home)):  # only if the test already failed
            os.kill(pid, signal.SIGKILL)


def call(inbound: str) -> dict:
    r = httpx.get(f"http://{inbound}/", timeout=5, trust_env=False)
    assert r.status_code == 200, r.text
    return r.json()


class Watch:
    """Reads a destination watch stream in a thread; ``next(pred)`` waits for a line."""

    def __init__(self, home: Path, authority: str) -> None:
        control = json.loads((home / "control.json").read_text())
        token = (home / "token").read_text().strip()
        self.lines: queue.Queue[dict] = queue.Queue()
        self.client = httpx.Client(base_url=control["url"], trust_env=False, timeout=None,
                                   headers={"authorization": f"Bearer {token}"})
        self.thread = threading.Thread(target=self._read, args=(authority,), daemon=True)
        self.thread.start()

    def _read(self, authority: str) -> None:
        try:
            with self.client.stream("GET", "/api/v1/destination/watch",
                                    params={"authority": authority}) as r:
                assert r.status_code == 200
                for line in r.iter_lines():
                    self.lines.put(json.loads(line))
        except Exception:
            pass

    def next(self, predicate, timeout: float = 15.0) -> dict:
        def found():
            try:
                line = self.lines.get(timeout=0.05)
            except queue.Empty:
                return None
            return line if line and predicate(line) else None
        return wait_for(found, timeout, "a matching snapshot", interval=0)

    def close(self) -> None:
        self.client.close()


class Api:
    """The API with the operator token, for what the CLI is not under test for."""

    def __init__(self, home: Path) -> None:
        control = json.loads((home / "control.json").read_text())
        token = (home / "token").read_text().strip()
        self.client = httpx.Client(base_url=control["url"], trust_env=False, timeout=10,
                                   headers={"authorization": f"Bearer {token}"})

    def get(self, kind: str, **params: str) -> list[dict]:
        r = self.client.get(f"/api/v1/{kind}", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    def close(self) -> None:
        self.client.close()


def addrs(snapshot: dict) -> set[str]:
    return {e["addr"] for e in snapshot["endpoints"]}


def test_up_run_get_watch_restart_update_check_down(mesh):
    home, env, tmp = mesh
    cmd = [sys.executable, str(tmp / "app.py")]
    run = shoal(home, "run", "-n", "emojivoto", "--name", "emoji", "--port", "8080",
                "--replicas", "2", "--", *cmd, env=env)
    assert "service/emoji reachable as emoji.emojivoto:8080" in run.stdout

    pods = get_json(home, "pods", "-n", "emojivoto")
    assert len(pods) == 2
    for pod in pods:
        assert POD_KEYS <= set(pod)
        assert pod["ready"] is True and pod["status"] == "Running" and pod["restarts"] == 0
        assert pod["name"].startswith(pod["replicaset"] + "-")
        answer = call(pod["inbound"])
        assert answer["port"] == str(pod["app_port"])
        assert answer["http_proxy"] == f"http://{pod['outbound']}" and answer["no_proxy"] == ""
    table = shoal(home, "get", "pods", "-n", "emojivoto").stdout
    assert table.splitlines()[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert table.count("2/2") == 2

    watch = Watch(home, "emoji.emojivoto:8080")
    try:
        inbounds = {p["inbound"] for p in pods}
        first = watch.next(lambda s: True)
        assert first["exists"] is True and addrs(first) == inbounds
        victim = pods[0]
        os.kill(call(victim["inbound"])["pid"], signal.SIGKILL)
        assert addrs(watch.next(lambda s: len(s["endpoints"]) == 1)) == {pods[1]["inbound"]}
        assert addrs(watch.next(lambda s: len(s["endpoints"]) == 2)) == inbounds
    finally:
        watch.close()
    api = Api(home)
    restarted = {p["name"]: p for p in api.get("pods", namespace="emojivoto")}
    assert restarted[victim["name"]]["restarts"] == 1

    # a changed env is a new pod template: a rolling update
    old_rs = pods[0]["replicaset"]
    shoal(home, "run", "-n", "emojivoto", "--name", "emoji", "--port", "8080",
          "--replicas", "2", "--env", "COLOR=blue", "--", *cmd, env=env)
    sets = {rs["name"]: rs for rs in get_json(home, "rs", "-n", "emojivoto")}
    assert len(sets) == 2 and sets[old_rs]["replicas"] == 0
    pods = api.get("pods", namespace="emojivoto")
    assert len(pods) == 2 and all(p["replicaset"] != old_rs and p["ready"] for p in pods)
    assert all(call(p["inbound"])["color"] == "blue" for p in pods)
    deploy = api.get("deployments")
    assert [(d["namespace"], d["name"], d["replicas"]) for d in deploy] == [
        ("emojivoto", "emoji", 2)]
    assert [s["name"] for s in api.get("services", namespace="emojivoto")] == ["emoji"]
    assert [n["name"] for n in api.get("namespaces")] == ["emojivoto"]
    api.close()

    rotated = shoal(home, "identity", "rotate")
    assert "2 anchors trusted during the overlap" in rotated.stdout
    check = shoal(home, "check")
    assert "√ data plane proxies are ready (2 registered)" in check.stdout
    assert check.stdout.rstrip().endswith("Status check results are √")

    pids = recorded_pids(home)
    assert len(pids) == 2  # the control plane and one supervisor
    down = shoal(home, "down")
    assert "control plane stopped" in down.stdout
    assert not [p for p in pids if alive(p)]
    assert processes_mentioning(str(home)) == []
    assert shoal(home, "get", "pods", check=False).returncode == 1
