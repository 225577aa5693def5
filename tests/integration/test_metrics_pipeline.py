"""The control plane's metrics part in process: registry pods -> scrape loop -> store ->
query API, against real admin servers on loopback (good, hanging, garbage, 10 MB)."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from shoal.control.api import create_app
from shoal.control.config import ControlConfig
from shoal.control.metrics import Metrics, MetricsConfig
from shoal.control.plane import ControlPlane
from shoal.control.registry import DeploymentSpec
from shoal.viz.synthetic import SyntheticProxy
from tests.integration.test_viz_scrape import WEIRD, Admin

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def deploy(plane: ControlPlane, ns: str, name: str) -> str:
    _, rs, _ = plane.registry.apply(DeploymentSpec(ns, name, ("app",), 8080))
    return rs["name"]


def pod(plane: ControlPlane, ns: str, rs: str, n: int, admin: str) -> dict[str, str]:
    name = f"{rs}-p{n:04d}"
    p = plane.registry.report_pod(ns, name, rs, {"status": "Running", "ready": True,
                                                 "containers_ready": 2, "admin": admin,
                                                 "inbound": f"127.0.0.1:{41000 + n}"})
    return {"namespace": ns, "deployment": p.deployment, "pod": p.name,
            "pod_template_hash": p.pod_template_hash, "serviceaccount": p.serviceaccount}


@pytest.fixture
def plane(tmp_path):
    plane = ControlPlane.open(ControlConfig(home=tmp_path / "home"))
    clock = Clock()
    m = Metrics.attach(plane, MetricsConfig(scrape_interval=10.0, scrape_timeout=1.0))
    m.scraper.clock = clock
    m.backend.clock = clock
    plane.test_clock = clock  # type: ignore[attr-defined]
    yield plane
    m.close()


def test_scrape_loop_feeds_the_api_and_reports_bad_targets(plane):
    web_rs, emoji_rs = deploy(plane, "emojivoto", "web"), deploy(plane, "emojivoto", "emoji")
    m: Metrics = plane.metrics
    clock: Clock = plane.test_clock
    admins: list[Admin] = []
    proxies: dict[str, SyntheticProxy] = {}

    async def start(routes) -> str:
        a = Admin(routes)
        admins.append(a)
        return await a.start()

    async def scenario() -> list[dict]:
        # register the pods first: the proxies need their workload labels
        web_addr = await start({})
        emoji_addr = await start({})
        web = pod(plane, "emojivoto", web_rs, 0, web_addr)
        emoji = pod(plane, "emojivoto", emoji_rs, 1, emoji_addr)
        proxies["web"] = SyntheticProxy(web, [emoji], [None], codes=(200, 200, 200, 500))
        proxies["emoji"] = SyntheticProxy(emoji, [], [web], codes=(200,))
        weird = proxies["web"].metrics.traffic_stats({
            "direction": "outbound", "authority": WEIRD, "target_addr": "10.0.0.1:80",
            "tls": "no_identity", "no_tls_reason": "loopback"})
        weird.requests += 1
        weird.response_ended(200, "success")
        for a, name in ((admins[0], "web"), (admins[1], "emoji")):
            p = proxies[name]
            a.routes.update({"/metrics": lambda p=p: p.metrics.exposition(),
                             "/latency": lambda p=p: json.dumps(p.metrics.latency_json()).encode()})
        # three bad proxies in another deployment
        bad_rs = deploy(plane, "emojivoto", "bad")
        pod(plane, "emojivoto", bad_rs, 2, await start({"/metrics": "hang"}))
        pod(plane, "emojivoto", bad_rs, 3, await start({"/metrics": b"\x00garbage{{{\n" * 50}))
        pod(plane, "emojivoto", bad_rs, 4, await start({"/metrics": ("big", 10 << 20)}))
        m.scraper.config = type(m.scraper.config)(interval=10.0, timeout=1.0,
                                                  max_bytes=1 << 20)
        healths = []
        for _ in range(4):
            for p in proxies.values():
                p.traffic(10)
            loop = asyncio.get_running_loop()
            began = loop.time()
            healths.append(await m.scraper.scrape_round())
            assert loop.time() - began < 5, "a bad target held the round"
            clock.now += 10
        for a in admins:
            await a.stop()
        return healths

    healths = asyncio.run(scenario())
    last = healths[-1]
    good = [h for h in last.values() if h.healthy]
    assert len(good) == 2
    errors = sorted(h.last_error for h in last.values() if not h.healthy)
    assert any("timed out" in e for e in errors), errors
    assert any("limit" in e for e in errors), errors
    assert len(errors) == 3

    client = TestClient(create_app(plane), base_url="http://127.0.0.1")
    h = {"authorization": f"Bearer {plane.token}"}
    health = client.get("/api/v1/health", headers=h).json()
    metrics = next(c for c in health["components"] if c["name"] == "metrics")
    assert not metrics["healthy"] and "3 of 5 scrape targets failing" in metrics["message"]
    targets = client.get("/api/v1/metrics/targets", headers=h).json()
    assert len(targets["targets"]) == 5 and targets["backend"] == "embedded"

    rows = client.get("/api/v1/stat", params={"resource": "deploy", "namespace": "emojivoto",
                                              "window": "30s"}, headers=h).json()
    by = {r["name"]: r for r in rows}
    assert set(by) == {"bad", "emoji", "web"}
    # web's inbound: 30 requests in the window from its one client, ~3/4 successes
    assert 0.4 < by["web"]["success"] < 1.0
    assert by["web"]["rps"] == pytest.approx(1.0)
    assert by["emoji"]["success"] == 1.0 and by["emoji"]["meshed"] == "1/1"
    assert by["bad"]["rps"] is None and by["bad"]["meshed"] == "3/3"
    assert by["web"]["latency_ms_p50"] is not None
    # the callers' view: web -> emoji
    to = client.get("/api/v1/stat", params={"resource": "deploy/web", "namespace": "emojivoto",
                                            "to": "deploy/emoji", "window": "30s"},
                    headers=h).json()
    assert isinstance(to, list), to
    assert [r["name"] for r in to] == ["web"] and 0.4 < to[0]["success"] < 1.0
    edges = client.get("/api/v1/edges", params={"resource": "deploy",
                                                "namespace": "emojivoto"}, headers=h).json()
    assert [(e["src"], e["dst"], e["secured"]) for e in edges] == [("web", "emoji", True)]
    assert edges[0]["client_id"].startswith("default.emojivoto.serviceaccount.")
    # a label value with quotes, backslashes and a newline survived the round trip
    series = client.get("/api/v1/series", params={
        "metric": "response_total", "fn": "increase", "by": "authority",
        "selector": '{direction="outbound",target_addr="10.0.0.1:80"}',
        "start": T0, "end": T0 + 30, "step": "10s"}, headers=h).json()
    assert [s["labels"]["authority"] for s in series["series"]] == [WEIRD]
    hist = client.get("/api/v1/stat/series", params={
        "resource": "deploy/web", "namespace": "emojivoto", "start": T0 + 10,
        "end": T0 + 30, "step": "10s"}, headers=h).json()
    assert [p["rps"] for p in hist] == [pytest.approx(1.0)] * 3
    overview = client.get("/api/v1/overview", headers=h).json()
    assert overview == [{"namespace": "emojivoto", "pods": 5, "meshed": 5, "deployments": 3,
                         "services": 3}]
    sd = json.loads((plane.config.home / "prometheus" / "targets.json").read_text())
    assert len(sd) == 5 and {g["labels"]["deployment"] for g in sd} == {"web", "emoji", "bad"}


@pytest.mark.parametrize(("params", "reason"), [
    ({"resource": "deploy", "window": "5s"}, "shorter than the scrape interval"),
    ({"resource": "deploy", "window": "1x"}, "malformed duration"),
    ({"resource": "deploy", "window": "-5m"}, "malformed duration"),
    ({"resource": "bogus"}, "unknown resource type"),
    ({"resource": "authority"}, "stat does not support"),
    ({"resource": "deploy", "selector": "a~b"}, "malformed selector"),
    ({"resource": "deploy", "to": "deploy/a", "from": "deploy/b"}, "mutually exclusive"),
    ({"resource": "deploy", "to": "deploy"}, "expected TYPE/NAME"),
    ({"resource": "deploy", "to_namespace": "x"}, "--to-namespace requires --to"),
])
def test_bad_stat_queries_are_400_with_the_reason(plane, params, reason):
    client = TestClient(create_app(plane), base_url="http://127.0.0.1")
    r = client.get("/api/v1/stat", params=params,
                   headers={"authorization": f"Bearer {plane.token}"})
    assert r.status_code == 400 and reason in r.json()["error"], r.text


def test_bad_ranges_are_400(plane):
    client = TestClient(create_app(plane), base_url="http://127.0.0.1")
    h = {"authorization": f"Bearer {plane.token}"}
    for params, reason in (({"start": T0, "end": T0 - 10}, "end must be after"),
                           ({"start": T0, "end": T0 + 100, "step": "1s"}, "shorter than"),
                           ({"start": T0, "end": T0 + 9e6, "step": "10s"}, "longer than")):
        r = client.get("/api/v1/series", params={"metric": "response_total", **params},
                       headers=h)
        assert r.status_code == 400 and reason in r.json()["error"], r.text
    assert client.get("/api/v1/stat", params={"resource": "deploy"}).status_code == 401
