"""Tap through the control plane's API to real proxies: fan-out, every field, redaction,
the flight recorder, failures only, `shoal tap` itself, disconnects and leaks.

The control plane runs in process (uvicorn in a thread) with pods registered by hand,
so these tests need no supervisor; tests/integration/test_tap_mesh.py does the same
through `shoal up` and `shoal run`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from shoal.control.api import create_app
from shoal.control.config import ControlConfig
from shoal.control.plane import ControlPlane
from tests.support import SHOAL, ProxyProcess, metric, uvicorn_server, wait_for

pytestmark = pytest.mark.timeout(120)


class ControlApi:
    """An in-process control plane; ``add_pod`` registers a proxy as a pod."""

    def __init__(self, plane: ControlPlane, url: str) -> None:
        self.plane = plane
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10, trust_env=False,
                                 headers={"authorization": f"Bearer {plane.token}"})

    def add_pod(self, deployment: str, proxy: ProxyProcess, n: int = 0,
                namespace: str = "test") -> str:
        r = self.http.post("/api/v1/deployments", json={
            "namespace": namespace, "name": deployment, "command": ["app"], "port": 8080})
        rs = r.json()["replicaset"]["name"]
        name = f"{rs}-pod{n}"
        r = self.http.put(f"/api/v1/namespaces/{namespace}/pods/{name}", json={
            "replicaset": rs, "status": "Running", "ready": True, "containers_ready": 2,
            "tap": str(proxy.addr["tap"]), "admin": str(proxy.addr["admin"])})
        assert r.status_code == 200, r.text
        return name

    def env(self) -> dict[str, str]:
        return {**os.environ, "SHOAL_API": self.url, "SHOAL_TOKEN": self.plane.token,
                "SHOAL_HOME": str(self.plane.config.home)}


@pytest.fixture
def control(tmp_path) -> Iterator[ControlApi]:
    plane = ControlPlane.open(ControlConfig(home=tmp_path / "home"))
    with uvicorn_server(create_app(plane)) as addr:
        api = ControlApi(plane, f"http://{addr}")
        yield api
        api.http.close()


class Stream:
    """Reads a tap stream of the control plane in a thread."""

    def __init__(self, api: ControlApi, body: dict, headers: dict | None = None) -> None:
        self.lines: list[dict] = []
        self.started = threading.Event()
        self.response: httpx.Response | None = None
        self.thread = threading.Thread(target=self._run, args=(api, body, headers or {}),
                                       daemon=True)
        self.thread.start()
        assert self.started.wait(15), self.lines

    def _run(self, api: ControlApi, body: dict, headers: dict) -> None:
        try:
            with api.http.stream("POST", "/api/v1/tap", json=body, headers=headers,
                                 timeout=httpx.Timeout(10, read=None)) as r:
                self.response = r
                for raw in r.iter_lines():
                    ev = json.loads(raw)
                    self.lines.append(ev)
                    if ev["type"] == "started":
                        self.started.set()
        except (httpx.HTTPError, RuntimeError):
            pass
        finally:
            self.started.set()

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.lines if e["type"] == kind]

    def close(self) -> None:
        if self.response is not None:
            self.response.close()


def subs(p: ProxyProcess) -> float:
    return metric(p.metrics(), "tap_subscriptions")


def test_tap_through_the_control_plane_every_field_and_redaction(app, start_proxy, control):
    _, addr = app
    p = start_proxy("--app", addr, "--inbound", "127.0.0.1:0")
    pod = control.add_pod("web", p)
    s = Stream(control, {"resource": "deploy/web", "namespace": "test", "path": "/status"})
    assert s.of("started")[0]["pods"] == [pod]
    with httpx.Client(base_url=p.url("inbound"), trust_env=False) as c:
        c.get("/", headers={"authorization": "Bearer s3cret"})  # filtered out by --path
        c.get("/status/503", headers={"Authorization": "Bearer s3cret",
                                      "Cookie": "session=abc123", "x-visible": "yes"})
    wait_for(lambda: s.of("end"), what="end event")
    s.close()
    (req,), (rsp,), (end,) = s.of("req"), s.of("rsp"), s.of("end")
    assert req["id"] == rsp["id"] == end["id"]
    for ev in (req, rsp, end):
        assert ev["pod"] == pod and ev["namespace"] == "test"
        assert ev["direction"] == "inbound" and ev["proxy"] == "in"
        assert ev["tls"] == "no_identity" and ev["src"].startswith("127.0.0.1:")
        assert ev["dst_labels"]["deployment"] == "web" and ev["dst_labels"]["pod"] == pod
    assert (req["method"], req["path"], req["scheme"]) == ("GET", "/status/503", "http")
    headers = {k.lower(): v for k, v in req["headers"]}
    assert headers["authorization"] == "<redacted>" and headers["cookie"] == "<redacted>"
    assert headers["x-visible"] == "yes"
    assert "s3cret" not in json.dumps(s.lines) and "abc123" not in json.dumps(s.lines)
    assert rsp["status"] == 503 and 0 < rsp["latency_us"] < 10_000_000
    assert end["classification"] == "failure" and end["duration_us"] >= 0
    assert end["response_bytes"] == len("status 503\n")
    wait_for(lambda: subs(p) == 0, timeout=5, what="upstream tap released")


def test_a_pod_that_starts_during_the_tap_is_tapped_too(app, start_proxy, control):
    _, addr = app
    first = start_proxy("--app", addr, "--inbound", "127.0.0.1:0")
    control.add_pod("web", first, n=0)
    s = Stream(control, {"resource": "deploy/web", "namespace": "test"})
    second = start_proxy("--app", addr, "--inbound", "127.0.0.1:0")
    pod = control.add_pod("web", second, n=1)  # a scale-up while we watch
    wait_for(lambda: subs(second) == 1, timeout=15, what="the new pod tapped")
    httpx.get(second.url("inbound", "/from-the-new-pod"), trust_env=False)
    wait_for(lambda: [e for e in s.of("end") if e["pod"] == pod], what="its events")
    assert [e["path"] for e in s.of("req") if e["pod"] == pod] == ["/from-the-new-pod"]
    # the same pod's proxy restarts on another tap address: tapped again
    second.stop()
    third = start_proxy("--app", addr, "--inbound", "127.0.0.1:0")
    assert control.add_pod("web", third, n=1) == pod
    wait_for(lambda: subs(third) == 1, timeout=15, what="the restarted proxy tapped")
    httpx.get(third.url("inbound", "/after-the-restart"), trust_env=False)
    wait_for(lambda: [e for e in s.of("req") if e["path"] == "/after-the-restart"],
             what="events after the restart")
    s.close()
    wait_for(lambda: subs(first) == 0 and subs(third) == 0, timeout=5, what="released")


def test_server_sent_events_carry_the_same_events(app, start_proxy, control):
    _, addr = app
    p = start_proxy("--app", addr, "--inbound", "127.0.0.1:0")
    control.add_pod("web", p)
    seen: list[str] = []
    with control.http.stream("GET", "/api/v1/tap/events", timeout=httpx.Timeout(10, read=None),
                             params={"resource": "deploy/web", "namespace": "test"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for raw in r.iter_lines():
            seen.append(raw)
            if raw == "event: started":
                httpx.get(p.url("inbound", "/sse"), trust_env=False)
            if raw.startswith("data: ") and '"type": "end"' in raw:
                break
    data = [json.loads(ln[len("data: "):]) for ln in seen if ln.startswith("data: ")]
    assert [d["type"] for d in data if d["type"] != "stats"] == ["started", "req", "rsp", "end"]
    assert data[1]["path"] == "/sse"
    wait_for(lambda: subs(p) == 0, timeout=5, what="released")


def test_reveal_needs_the_reveal_token(app, start_proxy, control):
    _, addr = app
    p = start_proxy("--app", addr, "--inbound", "127.0.0.1:0")
    control.add_pod("web", p)
    body = {"resource": "deploy/web", "namespace": "test", "reveal": True}
    r = control.http.post("/api/v1/tap", json=body, headers={"x-shoal-reveal": "guess"})
    assert r.status_code == 403
    token = (control.plane.config.home / "reveal-token").read_text().strip()
    s = Stream(control, body, {"x-shoal-reveal": token})
    httpx.get(p.url("inbound"), headers={"authorization": "Bearer s3cret"}, trust_env=False)
    wait_for(lambda: s.of("req"), what="req event")
    s.close()
    assert dict(s.of("req")[0]["headers"])["authorization"] == "Bearer s3cret"


def test_shoal_tap_prints_linkerd_lines_until_ctrl_c(app, start_proxy, control):
    _, addr = app
    p = start_proxy("--app", addr, "--inbound", "127.0.0.1:0")
    control.add_pod("web", p)
    proc = subprocess.Popen([SHOAL, "tap", "deploy/web", "-n", "test", "-o", "wide"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=control.env())
    try:
        wait_for(lambda: subs(p) == 1, timeout=15, what="tap started")
        httpx.get(p.url("inbound", "/stream?chunks=3"), trust_env=False)
        lines = [proc.stdout.readline() for _ in range(3)]  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0 and "Traceback" not in err, err
    req, rsp, end = (ln.rstrip("\n") for ln in lines)
    flow = r"proxy=in  src=127\.0\.0\.1:\d+ dst=127\.0\.0\.1:\d+ tls=no_identity"
    import re
    assert re.fullmatch(rf"req id=\d+:0 {flow} :method=GET :authority=127\.0\.0\.1:\d+ "
                        r":path=/stream\?chunks=3 dst_deployment=web .*dst_pod=web-\w+-pod0 .*", req), req
    assert re.fullmatch(rf"rsp id=\d+:0 {flow} :status=200 latency=\d+µs dst_.*", rsp), rsp
    assert re.fullmatch(rf"end id=\d+:0 {flow} duration=\d+µs response-length=24B dst_.*",
                        end), end
    wait_for(lambda: subs(p) == 0, timeout=5, what="tap released after Ctrl-C")


def test_failures_only_and_replay_from_the_flight_recorder(app, start_proxy, control):
    _, addr = app
    p = start_proxy("--app", addr, "--inbound", "127.0.0.1:0", "--tap-record-bytes", "200000")
    control.add_pod("web", p)
    with httpx.Client(base_url=p.url("inbound"), trust_env=False) as c:
        c.get("/status/500", headers={"authorization": "Bearer s3cret"})  # before any tap
        c.get("/")
    s = Stream(control, {"resource": "deploy/web", "namespace": "test", "since": 60,
                         "failures": True})
    assert s.of("started")[0]["recorder_bytes"] == {s.of("started")[0]["pods"][0]: 200000}
    wait_for(lambda: s.of("end"), what="replayed failure")
    with httpx.Client(base_url=p.url("inbound"), trust_env=False) as c:
        c.get("/status/200")
        c.get("/status/502")
    wait_for(lambda: len(s.of("end")) == 2, what="live failure")
    s.close()
    events = [e for e in s.lines if e["type"] in ("req", "rsp", "end")]
    assert [(e["type"], e["path"]) for e in events] == [
        ("req", "/status/500"), ("rsp", "/status/500"), ("end", "/status/500"),
        ("req", "/status/502"), ("rsp", "/status/502"), ("end", "/status/502")]
    assert events[0]["replayed"] is True and "replayed" not in events[3]
    assert dict(events[0]["headers"])["authorization"] == "<redacted>"
    # with the recorder off, `shoal tap --since` says there is nothing to replay
    q = start_proxy("--app", addr, "--inbound", "127.0.0.1:0")
    control.add_pod("api", q)
    proc = subprocess.Popen([SHOAL, "tap", "deploy/api", "-n", "test", "--since", "30s"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=control.env())
    wait_for(lambda: subs(q) == 1, timeout=15, what="tap started")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=15)
    assert "flight recorder is off" in err and proc.returncode == 0


def test_no_pods_and_bad_filters_from_the_cli(control):
    r = subprocess.run([SHOAL, "tap", "deploy/ghost", "-n", "test"], capture_output=True,
                       text=True, env=control.env(), timeout=30)
    assert r.returncode == 1
    assert 'no pods to tap for type="deployment" name="ghost"' in r.stderr
    r = subprocess.run([SHOAL, "tap", "deploy/x", "--to", "bogus/y"], capture_output=True,
                       text=True, env=control.env(), timeout=30)
    assert r.returncode == 1 and "unknown resource type 'bogus'" in r.stderr
    r = control.http.post("/api/v1/tap", json={"resource": "deploy/x", "path_regex": "(["})
    assert r.status_code == 400 and "invalid path regex" in r.json()["error"]


def test_max_rps_is_split_and_drops_are_reported(app, start_proxy, control):
    _, addr = app
    proxies = [start_proxy("--app", addr, "--inbound", "127.0.0.1:0") for _ in range(2)]
    for i, p in enumerate(proxies):
        control.add_pod("web", p, n=i)
    s = Stream(control, {"resource": "deploy/web", "namespace": "test", "max_rps": 2})
    with httpx.Client(base_url=proxies[0].url("inbound"), trust_env=False) as c:
        for _ in range(20):
            c.get("/")
    # 1 rps per pod: a burst of 20 gets about one through, the rest are counted as drops
    wait_for(lambda: any(e["dropped"] >= 15 for e in s.of("stats")), timeout=10,
             what="drops reported")
    s.close()
    assert 1 <= len(s.of("req")) <= 3


def test_abrupt_disconnect_releases_every_upstream_tap(app, start_proxy, control):
    _, addr = app
    proxies = [start_proxy("--app", addr, "--inbound", "127.0.0.1:0") for _ in range(2)]
    for i, p in enumerate(proxies):
        control.add_pod("web", p, n=i)
    host, port = control.url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({"resource": "deploy/web", "namespace": "test"}).encode()
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"POST /api/v1/tap HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                 b"authorization: Bearer " + control.plane.token.encode() +
                 b"\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
    assert b"started" in sock.recv(65536) or b"started" in sock.recv(65536)
    assert [subs(p) for p in proxies] == [1, 1]
    # a reset, not a polite close: the client vanished
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
    t0 = time.monotonic()
    wait_for(lambda: all(subs(p) == 0 for p in proxies), timeout=10, interval=0.05,
             what="upstream taps released")
    # a second at the proxy and the control plane each; generous on a busy machine
    elapsed = time.monotonic() - t0
    assert elapsed < 3.0, elapsed


def test_a_thousand_open_close_cycles_leak_nothing(app, start_proxy):
    _, addr = app
    p = start_proxy("--app", addr, "--inbound", "127.0.0.1:0")
    url = p.url("tap", "/tap")

    def cycles(n: int) -> None:
        with httpx.Client(trust_env=False, timeout=10) as c:
            for _ in range(n):
                with c.stream("POST", url, json={"max_rps": 10}) as s:
                    next(s.iter_lines())

    cycles(50)
    wait_for(lambda: subs(p) == 0, timeout=10, what="released")
    before = p.metrics()
    cycles(1000)
    wait_for(lambda: subs(p) == 0, timeout=10, what="released")
    after = p.metrics()
    assert metric(after, "process_open_fds") <= metric(before, "process_open_fds") + 2
    grown = metric(after, "process_resident_memory_bytes") - \
        metric(before, "process_resident_memory_bytes")
    assert grown < 8 * 1024 * 1024, grown
    assert httpx.get(p.url("inbound"), trust_env=False).status_code == 200


def test_grpc_tap_reports_grpc_status(start_proxy, control):
    grpc = pytest.importorskip("grpc")
    from concurrent import futures

    from shoal.cli.tap import Renderer
    from tests.h2support import echo_modules

    pb2, pb2_grpc = echo_modules()

    class Echo(pb2_grpc.EchoServicer):  # type: ignore[misc,name-defined]
        def Unary(self, request, context):  # noqa: N802 - gRPC method names
            if request.text == "unavailable":
                context.abort(grpc.StatusCode.UNAVAILABLE, "try later")
            return pb2.Msg(text=request.text.upper())

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb2_grpc.add_EchoServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        p = start_proxy("--app", f"127.0.0.1:{port}", "--inbound", "127.0.0.1:0")
        control.add_pod("echo", p)
        s = Stream(control, {"resource": "deploy/echo", "namespace": "test"})
        with grpc.insecure_channel(str(p.addr["inbound"])) as ch:
            stub = pb2_grpc.EchoStub(ch)
            assert stub.Unary(pb2.Msg(text="hi"), timeout=10).text == "HI"
            with pytest.raises(grpc.RpcError):
                stub.Unary(pb2.Msg(text="unavailable"), timeout=10)
        try:
            wait_for(lambda: len(s.of("end")) == 2, timeout=10, what="gRPC end events")
        except AssertionError:
            pytest.skip("the HTTP/2 proxy does not publish tap events yet")
        s.close()
    finally:
        server.stop(None)
    ok, failed = s.of("end")
    assert (ok["grpc_status"], ok["classification"]) == (0, "success")
    assert (failed["grpc_status"], failed["classification"]) == (14, "failure")
    req = s.of("req")[0]
    assert req["path"] == "/echo.Echo/Unary" or req["path"].endswith("/Unary")
    assert ok["response_bytes"] > 0 and s.of("rsp")[0]["status"] == 200
    assert dict(ok["headers"])["grpc-status"] == "0"  # trailers
    lines = [Renderer().render(e) for e in s.lines if e["type"] == "end"]
    assert " grpc-status=OK duration=" in lines[0] and "grpc-status=Unavailable" in lines[1]
