"""`shoal tap` and `shoal top` on a mesh started with `shoal up` and `shoal run`: both
sides of a meshed call with mTLS, real Authorization/Cookie headers redacted, `--to`,
and `top` driven in tmux."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.integration.test_control_helpers import SHOAL, get_json, processes_mentioning, shoal
from tests.support import SHOAL as SHOAL_BIN
from tests.support import wait_for

pytestmark = pytest.mark.timeout(180)

APP = r'''
import http.server, json, os, urllib.request
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/call") and os.environ.get("TARGET"):
            # the app calls its dependency through its proxy (HTTP_PROXY), with secrets
            req = urllib.request.Request(os.environ["TARGET"] + self.path[5:], headers={
                "Authorization": "Bearer s3cret-token", "Cookie": "session=c00kie"})
            try:
                urllib.request.urlopen(req, timeout=10).read()
            except Exception:
                pass
        code = 500 if "fail" in self.path else 200
        body = json.dumps({"path": self.path}).encode()
        self.send_response(code)
        self.send_header("content-length", str(len(body)))
        self.send_header("set-cookie", "id=s3t")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tapmesh")
    home = tmp / "home"
    (tmp / "app.py").write_text(APP)
    shoal(home, "up", "--api", "127.0.0.1:0")
    try:
        shoal(home, "run", "-n", "emojivoto", "--name", "voting", "--port", "8080", "--",
              sys.executable, str(tmp / "app.py"),
              env={"SHOAL_PROXY_TAP_RECORD_BYTES": "1000000"})
        shoal(home, "run", "-n", "emojivoto", "--name", "web", "--port", "8081",
              "--env", "TARGET=http://voting.emojivoto:8080", "--",
              sys.executable, str(tmp / "app.py"))
        pods = {p["deployment"]: p for p in get_json(home, "pods", "-n", "emojivoto")}
        # the first call to a service waits for discovery; the proxy taps it before
        # it knows the destination, so warm up first
        assert call(pods["web"], "/call/warm-up") == 200
        yield home, pods
    finally:
        shoal(home, "down", check=False)
        for pid in processes_mentioning(str(home)):
            os.kill(pid, signal.SIGKILL)


def env(home) -> dict[str, str]:
    e = {**os.environ, "SHOAL_HOME": str(home)}
    e.pop("SHOAL_API", None)
    e.pop("SHOAL_TOKEN", None)
    return e


def tap_subs(pod: dict) -> float:
    text = httpx.get(f"http://{pod['admin']}/metrics", timeout=5, trust_env=False).text
    line = [ln for ln in text.splitlines() if ln.startswith("tap_subscriptions ")]
    return float(line[0].split()[1]) if line else 0.0


def call(pod: dict, path: str) -> int:
    return httpx.get(f"http://{pod['inbound']}{path}", timeout=10, trust_env=False).status_code


class Tap:
    """`shoal tap ...` in the background; ``lines`` grows as it prints."""

    def __init__(self, home, *args: str, watch: dict, taps: int = 1) -> None:
        """``taps``: the subscriptions ``watch`` has once this one started."""
        self.proc = subprocess.Popen([*SHOAL, "tap", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env(home))
        wait_for(lambda: tap_subs(watch) >= taps, timeout=20, what="tap started")

    def stop(self) -> tuple[list[str], str]:
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=20)
        assert self.proc.returncode == 0 and "Traceback" not in err, err
        return out.splitlines(), err


def test_tap_sees_both_sides_of_a_meshed_call_with_secrets_redacted(mesh):
    home, pods = mesh
    web, voting = pods["web"], pods["voting"]
    t = Tap(home, "deploy/web", "-n", "emojivoto", "-o", "json", watch=web)
    assert call(web, "/call/vote/doughnut") == 200
    time.sleep(0.5)  # let the stream flush the last events before Ctrl-C
    lines, _ = t.stop()
    import json
    text = "\n".join(lines)
    objs = [json.loads(c) for c in text.replace("}\n{", "}\x00{").split("\x00") if c.strip()]
    by = {(o["proxyDirection"], k): o for o in objs for k in
          ("requestInitEvent", "responseInitEvent", "responseEndEvent") if k in o}
    out_req = by[("OUTBOUND", "requestInitEvent")]
    assert out_req["requestInitEvent"]["authority"] == "voting.emojivoto:8080"
    assert out_req["requestInitEvent"]["path"] == "/vote/doughnut"
    headers = {h["name"].lower(): h["valueStr"] for h in out_req["requestInitEvent"]["headers"]}
    assert headers["authorization"] == "<redacted>" and headers["cookie"] == "<redacted>"
    assert "s3cret-token" not in text and "c00kie" not in text and "s3t" not in text
    assert out_req["source"]["metadata"]["deployment"] == "web"
    assert out_req["destination"]["metadata"]["deployment"] == "voting"
    assert out_req["destination"]["metadata"]["pod"] == voting["name"]
    in_rsp = by[("INBOUND", "responseInitEvent")]["responseInitEvent"]
    assert in_rsp["httpStatus"] == 200
    set_cookie = {h["name"].lower(): h["valueStr"] for h in in_rsp["headers"]}["set-cookie"]
    assert set_cookie == "<redacted>"
    out_end = by[("OUTBOUND", "responseEndEvent")]["responseEndEvent"]
    assert out_end["responseBytes"] == len('{"path": "/vote/doughnut"}')
    # the inbound request took longer than the outbound call it made
    assert by[("INBOUND", "responseInitEvent")]["responseInitEvent"]["sinceRequestInit"] \
        ["nanos"] > by[("OUTBOUND", "responseInitEvent")]["responseInitEvent"] \
        ["sinceRequestInit"].get("nanos", 0)
    wait_for(lambda: tap_subs(web) == 0, timeout=5, what="tap released")


def voting_port(voting: dict) -> int:
    return int(voting["app_port"])


def test_tap_lines_of_the_callee_show_mtls_and_to_filters_the_caller(mesh):
    home, pods = mesh
    web, voting = pods["web"], pods["voting"]
    t = Tap(home, "deploy/voting", "-n", "emojivoto", watch=voting)
    to = Tap(home, "deploy/web", "-n", "emojivoto", "--to", "deploy/voting", "-o", "wide",
             watch=web)
    wide = Tap(home, "deploy/voting", "-n", "emojivoto", "-o", "wide", watch=voting, taps=2)
    assert call(web, "/call/vote/x") == 200
    assert call(web, "/direct") == 200  # web's own inbound: not to voting
    time.sleep(0.5)
    lines, _ = t.stop()
    to_lines, _ = to.stop()
    wide_lines, _ = wide.stop()
    # every caller is 127.0.0.1 here: the callee names it from its mTLS certificate
    assert f"src_pod={web['name']}" in wide_lines[0], wide_lines
    assert "src_deployment=web src_namespace=emojivoto" in wide_lines[0], wide_lines
    flow = rf"proxy=in  src=127\.0\.0\.1:\d+ dst=127\.0\.0\.1:{voting_port(voting)} tls=true"
    assert re.fullmatch(rf"req id=\d+:\d+ {flow} :method=GET "
                        r":authority=voting\.emojivoto:8080 :path=/vote/x", lines[0]), lines
    assert re.fullmatch(rf"rsp id=\d+:\d+ {flow} :status=200 latency=\d+µs", lines[1]), lines
    size = len('{"path": "/vote/x"}')
    assert re.fullmatch(rf"end id=\d+:\d+ {flow} duration=\d+µs response-length={size}B",
                        lines[2]), lines
    assert len(to_lines) == 3 and all("proxy=out" in ln and "tls=true" in ln
                                      for ln in to_lines), to_lines
    assert "src_deployment=web" in to_lines[0] and "dst_deployment=voting" in to_lines[0]
    assert f"dst_pod={voting['name']}" in to_lines[0]


def test_since_replays_the_flight_recorder_and_failures_only(mesh):
    home, pods = mesh
    voting = pods["voting"]
    assert call(voting, "/fail/before") == 500  # before anyone taps
    assert call(voting, "/ok/before") == 200
    t = Tap(home, "deploy/voting", "-n", "emojivoto", "--since", "1m", "--failures",
            watch=voting)
    assert call(voting, "/ok/after") == 200
    assert call(voting, "/fail/after") == 500
    time.sleep(0.5)
    lines, _ = t.stop()
    paths = [re.search(r":path=(\S+)", ln).group(1) for ln in lines if ln.startswith("req")]
    assert "/fail/before" in paths and "/fail/after" in paths
    assert not any("/ok" in p for p in paths)
    assert [ln[:3] for ln in lines[-3:]] == ["req", "rsp", "end"]


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_top_in_tmux_shows_rows_and_quits_on_q(mesh, tmp_path):
    home, pods = mesh
    web = pods["web"]
    session = f"shoaltop{os.getpid()}"
    command = f"SHOAL_HOME={home} {SHOAL_BIN} top deploy/web -n emojivoto"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24",
                    command], check=True, env=env(home))
    try:
        wait_for(lambda: tap_subs(web) >= 1, timeout=20, what="top tapping")
        for _ in range(3):
            assert call(web, "/call/vote/top") == 200

        def screen() -> str:
            return subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                  capture_output=True, text=True).stdout

        def row_shown() -> str:
            text = screen()
            return text if any(ln.split()[3:4] == ["/vote/top"]
                               for ln in text.splitlines()) else ""

        text = wait_for(row_shown, timeout=15, what="a row on screen")
        assert "Source" in text and "Destination" in text and "(press q to quit)" in text
        row = next(ln for ln in text.splitlines() if ln.split()[3:4] == ["/vote/top"])
        assert row.split()[:4] == [web["name"], pods["voting"]["name"], "GET", "/vote/top"]
        assert "\x1b" not in text and all(len(ln) <= 80 for ln in text.splitlines())
        subprocess.run(["tmux", "send-keys", "-t", session, "d"], check=True)
        wait_for(lambda: not screen().splitlines()[3].startswith("Source"), timeout=10,
                 what="scrolled right")
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        wait_for(lambda: subprocess.run(["tmux", "has-session", "-t", session],
                                        capture_output=True).returncode != 0,
                 timeout=10, what="top quit on q")
        wait_for(lambda: tap_subs(web) == 0, timeout=5, what="top's tap released")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_top_piped_prints_plain_snapshots(mesh):
    home, pods = mesh
    web = pods["web"]
    proc = subprocess.Popen([*SHOAL, "top", "deploy/web", "-n", "emojivoto"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(home))
    try:
        wait_for(lambda: tap_subs(web) >= 1, timeout=20, what="top tapping")
        assert call(web, "/direct/piped") == 200
        seen: list[str] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any("/direct/piped" in ln for ln in seen):
            seen.append(proc.stdout.readline())  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert "Traceback" not in err
    text = "".join(seen)
    assert "\x1b" not in text
    assert re.search(r"^Source\s+Destination\s+Method\s+Path\s+Count\s+Best\s+Worst\s+Last"
                     r"\s+Success Rate$", text, re.M)
    row = next(ln for ln in seen if "/direct/piped" in ln).split()
    assert row[1:5] == [web["name"], "GET", "/direct/piped", "1"] and row[-1] == "100.00%"
