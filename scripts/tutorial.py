"""Regenerate docs/TUTORIAL.md: walk the lab with shoal and capture every command's
real output, so the tutorial never goes stale.

    .venv/bin/python scripts/tutorial.py            # writes docs/TUTORIAL.md (~2 minutes)

It runs the demo in a temporary $SHOAL_HOME on a free port and stops it at the end.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHOAL = str(Path(sys.executable).parent / "shoal")
NS = "shoalvoto"

PROFILE = f"""apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  name: web.{NS}.svc.cluster.local
  namespace: {NS}
spec:
  routes:
  - name: GET /api/results
    condition: {{method: GET, pathRegex: /api/results}}
    timeout: 100ms
  - name: POST /api/vote
    condition: {{method: POST, pathRegex: /api/vote}}
  - name: GET /api/list
    condition: {{method: GET, pathRegex: /api/list}}
"""


class Lab:
    def __init__(self, home: Path) -> None:
        self.env = {**os.environ, "SHOAL_HOME": str(home)}
        self.env.pop("SHOAL_API", None)
        self.env.pop("SHOAL_TOKEN", None)
        self.home = home
        self.parts: list[str] = []

    def sh(self, *args: str, timeout: float = 120, stdin: str | None = None,
           allow_timeout: bool = False) -> str:
        try:
            r = subprocess.run([SHOAL, *args], env=self.env, capture_output=True, text=True,
                               timeout=timeout, input=stdin)
            out = r.stdout + (r.stderr if not r.stdout else "")
        except subprocess.TimeoutExpired as e:
            if not allow_timeout:
                raise
            out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return _clean(out)

    def say(self, text: str) -> None:
        self.parts.append(text.strip() + "\n")

    def show(self, command: str, output: str, lines: int | None = None) -> None:
        out = output.rstrip("\n").splitlines()
        if lines is not None:
            out = out[:lines]
        self.parts.append(f"```\n$ {command}\n" + "\n".join(out) + "\n```\n")


#: (file, title, path, what to wait for, what to do first)
PAGES = [
    ("dashboard-namespaces.jpg", "Namespaces: HTTP and TCP metrics per namespace",
     "/namespaces", '[data-testid="table-http"] [data-testid="row"]', None),
    ("dashboard-namespace.jpg", "Namespace shoalvoto: the topology graph, then its workloads",
     f"/namespaces/{NS}", '[data-testid="topology"][data-ready="true"]', None),
    ("dashboard-deployment.jpg", "Deployment web: its neighbours, live calls and routes",
     f"/namespaces/{NS}/deployments/web", '[data-testid="octopus"][data-ready="true"]', None),
    ("dashboard-pod.jpg", "Pod page: one of emoji's two replicas",
     f"/namespaces/{NS}/pods/{{emoji_pod}}", '[data-testid="octopus"][data-ready="true"]', None),
    ("dashboard-top.jpg", "Top: live calls per path, with the CLI command it matches",
     f"/top?namespace={NS}&resource=deploy/web", None, "start"),
    ("dashboard-tap.jpg", "Tap: every request; a row opens to its headers",
     f"/tap?namespace={NS}&resource=deploy/web&to_resource=deploy/voting", None, "tap"),
    ("dashboard-controlplane.jpg", "Control plane: components, proxies and `shoal check`",
     "/controlplane", '[data-testid="component"]', "check"),
    ("dashboard-history.jpg", "History of deployment web (15 minutes; drag to zoom)",
     f"/history?scope=deployment&namespace={NS}&name=web&range=15m",
     '[data-testid="chart"]', None),
]


def screenshots(lab: Lab) -> list[tuple[str, str]]:
    """Screenshots of the dashboard's pages into docs/img/, with headless Chromium."""
    import httpx
    from playwright.sync_api import sync_playwright

    control = json.loads((lab.home / "control.json").read_text())
    token = (lab.home / "token").read_text().strip()
    ticket = httpx.post(control["url"] + "/api/v1/dashboard/tickets", json={},
                        headers={"authorization": f"Bearer {token}"}, trust_env=False).json()
    pods = httpx.get(control["url"] + "/api/v1/pods", params={"namespace": NS},
                     headers={"authorization": f"Bearer {token}"}, trust_env=False).json()
    emoji_pod = next(p["name"] for p in pods if p["deployment"] == "emoji")
    out = ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    shots = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(control["url"] + ticket["path"])
        for name, title, path, ready, action in PAGES:
            page.goto(control["url"] + path.format(emoji_pod=emoji_pod))
            if ready:
                page.locator(ready).first.wait_for(timeout=30000)
            if action in ("start", "tap"):
                page.get_by_test_id("start").click()
                page.get_by_test_id("tap-row" if action == "tap" else "row").first.wait_for()
                time.sleep(4)
            if action == "tap":
                page.get_by_test_id("stop").click()
                page.get_by_test_id("tap-row").nth(2).click()
                page.get_by_test_id("tap-detail").wait_for()
                page.get_by_test_id("tap-detail").scroll_into_view_if_needed()
            if action == "check":
                page.get_by_test_id("run-check").click()
                page.get_by_test_id("check-results").wait_for()
            time.sleep(2.5)  # a refresh or two, and the charts' last frame
            page.screenshot(path=str(out / name), type="jpeg", quality=80)
            shots.append((name, title))
        browser.close()
    return shots


def _clean(text: str) -> str:
    """Drop this run's temporary paths from captured output."""
    return re.sub(r"/tmp/[^\s'\"]+", "<tmp>", text)


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="shoal-tutorial-"))
    lab = Lab(home)
    try:
        walk(lab)
    finally:
        subprocess.run([SHOAL, "demo", "--down"], env=lab.env, capture_output=True, timeout=120)
        subprocess.run([SHOAL, "down"], env=lab.env, capture_output=True, timeout=120)
    (ROOT / "docs" / "TUTORIAL.md").write_text("\n".join(lab.parts))
    print("wrote docs/TUTORIAL.md")
    return 0


def walk(lab: Lab) -> None:
    lab.say("""# Seeing the traffic between your services, with shoal

This tutorial walks the lab "Monitoring traffic flows with a service mesh" with shoal
instead of Linkerd: start an app with load, then watch it with `stat`, `top`, `tap`,
`edges` and `routes`, put a timeout on a slow route, roll out a new version, and kill
the control plane to see traffic carry on. Every output below was captured from a
real run by `scripts/tutorial.py`; run it again to refresh this page.""")

    lab.say("""## 1. Start the app and its load

The lab deploys a multi-service app and starts `generate-service-mesh-load.sh`. With
shoal, one command starts the control plane, a small voting app (web over HTTP, emoji
and voting over gRPC, kv over raw TCP) and `vote-bot`, its load generator, every pod
meshed.""")
    out = lab.sh("demo", "--detach", "--api", "127.0.0.1:0", "--scrape-interval", "2s",
                 timeout=300)
    lab.show("shoal demo", re.sub(r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:50750",
                                  out[out.find("shoal demo is running"):]))
    lab.show("shoal get pods -n shoalvoto", lab.sh("get", "pods", "-n", NS))
    time.sleep(30)  # let a few scrapes of traffic accumulate

    lab.say("""## 2. The golden metrics: `stat`

As `linkerd viz stat deployments`: success rate, requests per second and latency
percentiles per deployment, from the callee's side. `vote-bot` only calls out and `kv`
speaks raw TCP, so they have no request rate of their own; `kv` shows its connection.""")
    lab.show("shoal stat deploy -n shoalvoto", lab.sh("stat", "deploy", "-n", NS))
    lab.say("""Per pod, with their status. The balancer (power of two choices on peak-EWMA
latency) favours the faster `emoji` replica and keeps probing the other, so the split
evens out over minutes rather than alternating call by call:""")
    lab.show("shoal stat po -n shoalvoto", lab.sh("stat", "po", "-n", NS))
    lab.say("""The callers' view of one edge (`--to`), as in `linkerd viz stat deploy/web
--to deploy/voting`. Votes for :doughnut: fail on purpose, so the success rate is below
100 %:""")
    lab.show("shoal stat deploy/web --to deploy/voting -n shoalvoto",
             lab.sh("stat", "deploy/web", "--to", "deploy/voting", "-n", NS))

    lab.say("""## 3. Who talks to whom: `edges`

Every edge is secured with mutual TLS; `-o wide` shows both identities.""")
    lab.show("shoal edges deploy -n shoalvoto -o wide",
             lab.sh("edges", "deploy", "-n", NS, "-o", "wide"))

    lab.say("""## 4. Live calls: `top`

`shoal top` is a full-screen table in a terminal (`q` quits); piped, it prints a plain
snapshot every second.""")
    lab.show("shoal top deploy/web -n shoalvoto | cat",
             lab.sh("top", "deploy/web", "-n", NS, timeout=6, allow_timeout=True)
             .split("\n\n")[0], lines=12)

    lab.say("""## 5. Every request: `tap`

One line per request, response and end, as `linkerd viz tap`. Headers such as
`authorization` and `cookie` are redacted inside the proxy.""")
    lab.show("shoal tap deploy/web -n shoalvoto --to deploy/voting",
             lab.sh("tap", "deploy/web", "-n", NS, "--to", "deploy/voting", timeout=5,
                    allow_timeout=True), lines=6)
    raw = lab.sh("tap", "deploy/web", "-n", NS, "--to", "deploy/voting", "-o", "json",
                 timeout=5, allow_timeout=True)
    first = raw.split("\n}\n")[0] + "\n}" if raw.strip().startswith("{") else raw
    lab.show("shoal tap deploy/web -n shoalvoto --to deploy/voting -o json", first, lines=40)

    lab.say("""## 6. The dashboard

`shoal dashboard` prints a one-time login link (`--open` opens a browser). The same
numbers, live, in the browser: the namespace page starts with the topology graph,
every table row links to its resource and its history.""")
    lab.show("shoal dashboard", re.sub(r"http://127\.0\.0\.1:\d+/login\?ticket=\S+",
                                       "http://127.0.0.1:50750/login?ticket=...",
                                       lab.sh("dashboard")))
    for name, title in screenshots(lab):
        lab.say(f"**{title}**\n\n![{title}](img/{name})")

    lab.say("""## 7. A timeout on a slow route: service profiles and `routes`

Some results take hundreds of milliseconds. A service profile names web's routes and
gives `GET /api/results` a 100 ms timeout: vote-bot's proxy now answers 504 for the
slow ones instead of waiting, and `routes` shows each route (and `[DEFAULT]` for the
rest).""")
    lab.show("shoal profile apply -f web-profile.yaml",
             lab.sh("profile", "apply", "-n", NS, "-f", "-", stdin=PROFILE))
    pods = json.loads(lab.sh("get", "pods", "-n", NS, "-o", "json"))
    bot = next(p for p in pods if p["deployment"] == "vote-bot")
    lab.say("""Ask for results ten times a second for a few seconds from vote-bot's pod (through
its proxy, as the app itself would): the slow answers are now cut at 100 ms.""")
    out = subprocess.run([SHOAL, "load", f"http://web.{NS}:8080/api/results", "--rate", "10",
                          "--duration", "4s"], capture_output=True, text=True, timeout=60,
                         env={**lab.env, "HTTP_PROXY": f"http://{bot['outbound']}"}).stdout
    lab.show("HTTP_PROXY=http://<vote-bot's outbound> shoal load "
             "http://web.shoalvoto:8080/api/results --rate 10 --duration 4s", _clean(out))
    time.sleep(10)
    lab.show("shoal routes deploy/vote-bot --to deploy/web -n shoalvoto",
             lab.sh("routes", "deploy/vote-bot", "--to", "deploy/web", "-n", NS))

    lab.say("""## 8. A rolling update

Running `shoal run` again with a changed spec rolls out a new replica set; while it
happens, and after, both replica sets are listed (the old one with no pods), as the
lab shows for Kubernetes deployments.""")
    lab.sh("run", "-n", NS, "--name", "web", "--port", "8080", f"--env=SHOAL_HOME={lab.home}",
           "--env=COLOR=blue", "--", sys.executable, "-m", "shoal.demo.web", timeout=300)
    lab.show("shoal get rs -n shoalvoto", lab.sh("get", "rs", "-n", NS))

    lab.say("""## 9. The control plane goes away; traffic does not

Kill the control plane outright. Proxies keep their endpoints and certificates, so
calls carry on; their own metrics show the counts still rising.""")
    pods = json.loads(lab.sh("get", "pods", "-n", NS, "-o", "json"))
    web = next(p for p in pods if p["deployment"] == "web" and p["ready"])
    control = json.loads((lab.home / "control.json").read_text())
    os.kill(control["pid"], signal.SIGKILL)
    counts = []
    for _ in range(2):
        text = subprocess.run(["curl", "-s", f"http://{web['admin']}/metrics"],
                              capture_output=True, text=True, timeout=10).stdout
        counts.append(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                          if line.startswith("request_total{") and 'direction="inbound"' in line))
        time.sleep(5)
    lab.show("kill -9 <control plane>; curl -s <web pod admin>/metrics | grep request_total "
             "(twice, 5 s apart)",
             f"inbound requests served by web: {counts[0]:.0f}, then {counts[1]:.0f}")
    lab.sh("up", "--api", control["url"].rsplit("//", 1)[1], timeout=120)
    lab.say("""`shoal up` brings it back; supervisors and proxies reconnect on their own.

## 10. Stop

`shoal demo --down` (or Ctrl-C on a foreground `shoal demo`) stops everything it
started.""")


if __name__ == "__main__":
    sys.exit(main())
