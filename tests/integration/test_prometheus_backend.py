"""The Prometheus backend against Debian's `prometheus`: it scrapes the mesh through the
control plane's file_sd targets (`shoal prometheus-config`), a second control plane
answers `stat` with PromQL (`shoal up --prometheus-url`), and both backends agree on the
same traffic."""

from __future__ import annotations

import bisect
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading

import httpx
import pytest

from shoal.proxy.metrics import LATENCY_BOUNDS
from tests.integration.test_control_helpers import get_json, processes_mentioning, shoal, wait_for
from tests.integration.test_metrics_mesh import TODO

pytestmark = [pytest.mark.skipif(shutil.which("prometheus") is None,
                                 reason="prometheus is installed by `make test`"),
              pytest.mark.xdist_group("mesh")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def promql(base: str, query: str) -> float:
    try:
        r = httpx.get(f"{base}/api/v1/query", params={"query": query}, timeout=5)
        res = r.json()["data"]["result"]
    except (httpx.HTTPError, ValueError, KeyError):
        return 0.0
    return float(res[0]["value"][1]) if res else 0.0


def bucket(ms: float | None) -> int:
    assert ms is not None
    return bisect.bisect_left(LATENCY_BOUNDS, ms)


@pytest.fixture
def homes(tmp_path):
    mesh, viewer = tmp_path / "mesh", tmp_path / "viewer"
    procs: list[subprocess.Popen] = []
    try:
        yield mesh, viewer, procs
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        for home in (mesh, viewer):
            shoal(home, "down", check=False)
            for pid in processes_mentioning(str(home)):
                os.kill(pid, signal.SIGKILL)


PERCENTILES = ("latency_ms_p50", "latency_ms_p95", "latency_ms_p99")


def test_embedded_and_prometheus_backends_agree(homes, tmp_path):
    mesh, viewer, procs = homes
    (tmp_path / "todo.py").write_text(TODO)
    shoal(mesh, "up", "--api", "127.0.0.1:0", "--scrape-interval", "1s")
    for name, port in (("todoui", "8080"), ("web", "8081")):
        shoal(mesh, "run", "-n", "todo", "--name", name, "--port", port, "--",
              sys.executable, str(tmp_path / "todo.py"))
    pods = {p["deployment"]: p for p in get_json(mesh, "pods", "-n", "todo")}

    config = shoal(mesh, "prometheus-config").stdout
    targets = json.loads((mesh / "prometheus" / "targets.json").read_text())
    assert {t["labels"]["deployment"] for t in targets} == {"todoui", "web"}
    assert all(t["labels"]["pod_template_hash"] and t["labels"]["serviceaccount"]
               for t in targets)
    (tmp_path / "prometheus.yml").write_text(config)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    procs.append(subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    shoal(viewer, "up", "--api", "127.0.0.1:0", "--scrape-interval", "1s",
          "--prometheus-url", base)

    stop = threading.Event()
    sent = {"success": 0, "failure": 0}

    def traffic() -> None:  # steady load: every fourth request fails
        with httpx.Client(proxy=f"http://{pods['web']['outbound']}", timeout=10) as c:
            i = 0
            while not stop.is_set():
                c.get(f"http://todoui.todo:8080/{'fail' if i % 4 == 3 else ''}")
                sent["failure" if i % 4 == 3 else "success"] += 1
                i += 1
                stop.wait(0.04)
    loader = threading.Thread(target=traffic, name="load", daemon=True)
    loader.start()
    try:
        wait_for(lambda: promql(base, 'count_over_time(sum(response_total{deployment="todoui",'
                                      'direction="inbound"})[30s:1s]) >= 25') >= 25,
                 timeout=90, interval=0.5, what="30 s of traffic in prometheus")

        # Prometheus's percentiles come from irate(), i.e. the last scrape interval (as
        # Linkerd's do), the embedded store's from the whole window: one slow request
        # on a busy machine can sit in one and not the other for a moment. Read both
        # until they agree (a systematic difference never does), then check the last.
        last: list[tuple[list, list]] = []

        def both():
            a = json.loads(shoal(mesh, "stat", "deploy", "-n", "todo", "-t", "20s", "-o",
                                 "json").stdout)
            b = json.loads(shoal(viewer, "stat", "deploy", "-n", "todo", "-t", "20s", "-o",
                                 "json").stdout)
            if not any(r["rps"] for r in b):
                return None
            last[:] = [(a, b)]
            ea = {r["name"]: r for r in a}.get("todoui")
            pb = {r["name"]: r for r in b}.get("todoui")
            agree = ea is not None and pb is not None and all(
                ea[q] is not None and pb[q] is not None
                and abs(bucket(ea[q]) - bucket(pb[q])) <= 1 for q in PERCENTILES)
            return (a, b) if agree else None
        try:
            embedded, prometheus = wait_for(both, timeout=30, interval=0.5,
                                            what="both backends")
        except AssertionError:
            if not last:
                raise
            embedded, prometheus = last[0]  # the asserts below say what differs
    finally:
        stop.set()
        loader.join(15)
    e = {r["name"]: r for r in embedded}
    p = {r["name"]: r for r in prometheus}
    assert set(p) == set(e) == {"todoui", "web"}, (e, p)
    assert e["web"]["meshed"] == p["web"]["meshed"] == "1/1"
    a, b = e["todoui"], p["todoui"]
    assert a["meshed"] == b["meshed"] == "1/1"
    assert a["tcp_open_connections"] == b["tcp_open_connections"]
    assert a["success"] == pytest.approx(0.75, abs=0.03)
    assert b["success"] == pytest.approx(a["success"], abs=0.03)
    assert b["rps"] == pytest.approx(a["rps"], rel=0.25)
    for q in PERCENTILES:
        assert abs(bucket(a[q]) - bucket(b[q])) <= 1, (q, a[q], b[q])

    # with the load stopped, both count every request exactly: no extrapolation
    def counted(home) -> dict[str, float]:
        control = json.loads((home / "control.json").read_text())
        r = httpx.get(f"{control['url']}/api/v1/series", timeout=10, trust_env=False,
                      headers={"authorization": f"Bearer {(home / 'token').read_text().strip()}"},
                      params={"metric": "response_total", "fn": "increase", "step": "5m",
                              "selector": 'deployment="todoui",direction="inbound"',
                              "by": "classification", "window": "5m"})
        r.raise_for_status()
        return {s["labels"]["classification"]: s["points"][-1][1]
                for s in r.json()["series"]}
    want = {k: float(v) for k, v in sent.items()}
    last: dict[str, dict[str, float]] = {}

    def agree() -> bool:
        last["embedded"], last["prometheus"] = counted(mesh), counted(viewer)
        return last["embedded"] == want == last["prometheus"]
    try:
        wait_for(agree, timeout=30, interval=1, what="exact counts")
    except AssertionError:
        raise AssertionError(f"sent {want}, counted {last}") from None
    edges = shoal(viewer, "edges", "deploy", "-n", "todo").stdout.splitlines()
    assert edges[1].split() == ["web", "todoui", "todo", "todo", "√"]
    health = shoal(viewer, "check").stdout
    assert "components are healthy" in health
