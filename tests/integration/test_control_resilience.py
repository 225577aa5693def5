"""The control plane under stress: SIGKILLed while pods serve, bad input on a real
socket, commands without a control plane."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

import httpx
import pytest
import uvicorn

from shoal.control.api import create_app
from shoal.control.config import ControlConfig
from shoal.control.plane import ControlPlane
from shoal.control.server import bind
from tests.integration.test_control_helpers import (
    alive,
    get_json,
    processes_mentioning,
    real_proxy_usable,
    shoal,
    wait_for,
    write_stand_in,
)

APP = """
import http.server, os
http.server.test(HandlerClass=http.server.SimpleHTTPRequestHandler,
                 port=int(os.environ["PORT"]), bind="127.0.0.1")
"""


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    env = {} if real_proxy_usable() else {"SHOAL_RUN_PROXY_COMMAND": write_stand_in(tmp_path)}
    (tmp_path / "app.py").write_text(APP)
    shoal(home, "up", "--api", "127.0.0.1:0")
    try:
        yield home, env, tmp_path
    finally:
        shoal(home, "down", check=False)
        for pid in processes_mentioning(str(home)):
            os.kill(pid, signal.SIGKILL)


def api(home):
    control = json.loads((home / "control.json").read_text())
    token = (home / "token").read_text().strip()
    return control, httpx.Client(base_url=control["url"], trust_env=False, timeout=5,
                                 headers={"authorization": f"Bearer {token}"})


def test_sigkilled_control_plane_leaves_pods_serving_and_supervisors_reconnect(home):
    home, env, tmp = home
    shoal(home, "run", "-n", "shop", "--name", "cart", "--port", "8080", "--",
          sys.executable, str(tmp / "app.py"), env=env)
    pod = get_json(home, "pods", "-n", "shop")[0]
    control, client = api(home)
    client.close()
    os.kill(control["pid"], signal.SIGKILL)
    wait_for(lambda: not alive(control["pid"]), 5, "control plane to die")

    # traffic and supervision go on without the control plane
    assert httpx.get(f"http://{pod['inbound']}/", trust_env=False).status_code == 200
    json.loads((home / "registry.json").read_text())  # whole, not torn
    assert shoal(home, "get", "pods", "-n", "shop", check=False).returncode == 1

    shoal(home, "up", "--api", "127.0.0.1:0")
    again = get_json(home, "pods", "-n", "shop")
    assert [p["name"] for p in again] == [pod["name"]]
    # the supervisor reports to the new control plane: a restart shows up there
    app_pid = next(p for p in processes_mentioning(str(tmp / "app.py"))
                   if f"PORT={pod['app_port']}" in open(f"/proc/{p}/environ").read())
    os.kill(app_pid, signal.SIGKILL)
    _, client = api(home)
    with client:
        def pod_now():
            return client.get("/api/v1/pods", params={"namespace": "shop"}).json()[0]
        wait_for(lambda: pod_now()["restarts"] == 1, 20, "the restart to reach the new control plane")
        wait_for(lambda: pod_now()["ready"], 20, "the pod to be ready again")
        # a killed proxy is restarted on the same addresses, so the app's HTTP_PROXY holds
        proxy_pid = next(p for p in processes_mentioning(pod["name"])
                         if "--inbound" in open(f"/proc/{p}/cmdline").read())
        os.kill(proxy_pid, signal.SIGKILL)
        wait_for(lambda: pod_now()["restarts"] == 2 and pod_now()["ready"], 20,
                 "the proxy to be restarted")
        assert {k: pod_now()[k] for k in ("inbound", "outbound")} == {
            k: pod[k] for k in ("inbound", "outbound")}


@pytest.fixture
def served(tmp_path):
    """The control plane's app on a real loopback socket, in a thread of this process."""
    plane = ControlPlane.open(ControlConfig(home=tmp_path / "home"))
    sock = bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(plane), log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "uvicorn to start")
    host, port = sock.getsockname()[:2]
    url = f"http://{host}:{port}"
    try:
        with httpx.Client(base_url=url, trust_env=False, timeout=5,
                          headers={"authorization": f"Bearer {plane.token}"}) as client:
            yield plane, client
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_bad_input_on_a_real_socket_changes_nothing(served):
    plane, client = served
    before = plane.registry.version
    r = client.post("/api/v1/deployments", content=b"{" * (2 << 20),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over" in r.json()["error"]
    r = client.post("/api/v1/deployments", content=b'{"namespace": ',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"].startswith("invalid request")
    r = client.get("/api/v1/pods", headers={"authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json() == {"error": "wrong token"}
    with client.stream("GET", "/api/v1/destination/watch",
                       params={"authority": "ghost.nowhere:80"}) as r:
        first = json.loads(next(r.iter_lines()))
    assert first == {"authority": "ghost.nowhere:80", "endpoints": [], "profile": None,
                     "exists": False}
    assert plane.registry.version == before
    assert client.get("/openapi.json").status_code == 200


def test_commands_without_a_control_plane_say_so(tmp_path):
    home = tmp_path / "empty"
    r = shoal(home, "run", "--name", "x", "--port", "80", "--", "true", check=False)
    assert r.returncode == 1 and "control plane is not running" in r.stderr
    assert "shoal up" in r.stderr
    r = shoal(home, "check", check=False)
    assert r.returncode == 1 and "× control plane is running" in r.stdout
    assert r.stdout.rstrip().endswith("Status check results are ×")
    assert shoal(home, "down").stdout.strip() == "nothing was running"
