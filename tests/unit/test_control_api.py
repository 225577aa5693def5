"""The API in process: auth, bad input refused with 4xx and nothing changed, the
supervisor/proxy flows, and destination watches reaching 50 subscribers quickly."""

from __future__ import annotations

import asyncio
import json
import time
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shoal.control.api import create_app
from shoal.control.config import ControlConfig
from shoal.control.plane import ControlPlane
from shoal.control.registry import DeploymentSpec

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ID = "default.emojivoto.serviceaccount.identity.shoal.local"
DEPLOY = {"namespace": "emojivoto", "name": "emoji", "command": ["python", "emoji.py"],
          "port": 8080, "replicas": 2}


@pytest.fixture
def plane(tmp_path):
    return ControlPlane.open(ControlConfig(home=tmp_path, watch_heartbeat=0.2))


@pytest.fixture
def client(plane):
    with TestClient(create_app(plane), base_url="http://127.0.0.1") as c:
        c.headers["authorization"] = f"Bearer {plane.token}"
        yield c


def csr(name: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    req = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
           .sign(key, hashes.SHA256()))
    return req.public_bytes(serialization.Encoding.PEM).decode()


def pod(client, plane, ready=True, suffix="abcde"):
    rs = client.post("/api/v1/deployments", json=DEPLOY).json()["replicaset"]["name"]
    name = f"{rs}-{suffix}"
    r = client.put(f"/api/v1/namespaces/emojivoto/pods/{name}", json={
        "replicaset": rs, "status": "Running", "ready": ready, "containers_ready": 2,
        "inbound": "127.0.0.1:4143", "app_port": 5000})
    assert r.status_code == 200, r.text
    return name


def test_every_route_needs_the_token(client, plane):
    for method, path in [("GET", "/api/v1/health"), ("GET", "/api/v1/pods"),
                         ("POST", "/api/v1/deployments"),
                         ("GET", "/api/v1/destination?authority=a.b:1"),
                         ("POST", "/api/v1/identity/rotate")]:
        for headers in ({"authorization": ""}, {"authorization": "Bearer nope"},
                        {"authorization": "Basic abc"}):
            r = client.request(method, path, headers=headers, json=DEPLOY)
            assert r.status_code == 401, (method, path, r.text)
            assert "token" in r.json()["error"]
    assert plane.registry.listing("deployments") == []
    assert len(plane.identity.authority.anchors) == 1


@pytest.mark.parametrize("body,status,message", [
    (b"{not json", 422, "json"),
    (json.dumps({**DEPLOY, "surprise": 1}).encode(), 422, "surprise"),
    (json.dumps({**DEPLOY, "port": 0}).encode(), 422, "port"),
    (json.dumps({**DEPLOY, "namespace": "Bad_NS"}).encode(), 422, "namespace"),
    (json.dumps({**DEPLOY, "name": "-x"}).encode(), 400, "name"),
    (json.dumps({**DEPLOY, "command": []}).encode(), 422, "command"),
    (json.dumps([1, 2]).encode(), 422, "invalid request"),
    (b"x" * (1 << 20 + 1), 413, "over"),
])
def test_bad_deployments_change_nothing(client, plane, body, status, message):
    r = client.post("/api/v1/deployments", content=body,
                    headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert plane.registry.version == 0 and not plane.config.home.joinpath("registry.json").exists()


def test_a_chunked_huge_body_is_refused(client):
    def chunks():
        for _ in range(20):
            yield b"x" * 65536
    r = client.post("/api/v1/deployments", content=chunks(),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_resources_listing(client, plane):
    name = pod(client, plane)
    pods = client.get("/api/v1/pods", params={"namespace": "emojivoto"}).json()
    assert [p["name"] for p in pods] == [name]
    for key in ("name", "namespace", "deployment", "replicaset", "status", "ready",
                "restarts", "app_port", "inbound", "outbound", "admin", "tap"):
        assert key in pods[0]
    assert client.get("/api/v1/pods", params={"namespace": "other"}).json() == []
    assert client.get("/api/v1/widgets").status_code == 422
    health = client.get("/api/v1/health").json()
    assert health["healthy"] and health["pods"] == {"total": 1, "ready": 1}
    assert {c["name"] for c in health["components"]} >= {"destination", "identity", "metrics",
                                                         "tap", "web"}


def test_certify_through_the_api(client, plane):
    name = pod(client, plane)
    token = client.post("/api/v1/identity/tokens",
                        json={"namespace": "emojivoto", "pod": name}).json()["token"]
    proxy = {"authorization": f"Bearer {token}"}
    # another identity: refused, token unspent
    r = client.post("/api/v1/identity/certify", headers=proxy,
                    json={"csr": csr("default.other.serviceaccount.identity.shoal.local"),
                          "token": token})
    assert r.status_code == 403 and "this token is for" in r.json()["error"]
    r = client.post("/api/v1/identity/certify", headers=proxy,
                    json={"csr": "garbage", "token": token})
    assert r.status_code == 400 and "malformed csr" in r.json()["error"]
    r = client.post("/api/v1/identity/certify", headers=proxy, json={"csr": csr(ID), "token": token})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) >= {"certificate", "chain", "trust_anchors", "expiry", "renew_token"}
    r = client.post("/api/v1/identity/certify", headers=proxy, json={"csr": csr(ID), "token": token})
    assert r.status_code == 401 and "already used" in r.json()["error"]
    # the proxy's token also opens the destination API, and nothing else
    assert client.get("/api/v1/destination", params={"authority": "emoji.emojivoto:8080"},
                      headers=proxy).status_code == 200
    assert client.get("/api/v1/pods", headers=proxy).status_code == 401
    # deleting the pod revokes its tokens
    client.delete(f"/api/v1/namespaces/emojivoto/pods/{name}")
    assert client.get("/api/v1/destination", params={"authority": "emoji.emojivoto:8080"},
                      headers=proxy).status_code == 401


def test_tokens_only_for_registered_pods(client):
    r = client.post("/api/v1/identity/tokens", json={"namespace": "emojivoto", "pod": "ghost"})
    assert r.status_code == 404 and "ghost" in r.json()["error"]


def test_rotation_through_the_api(client):
    r = client.post("/api/v1/identity/rotate", json={})
    assert r.status_code == 200 and len(r.json()["trust_anchors"]) == 2
    assert client.post("/api/v1/identity/rotate", json={"finish": True}).json()["removed"] == 1


async def _collect(gen, lines, ready):
    async for line in gen:
        lines.append(json.loads(line))
        ready.set()


def test_watch_changes_reach_50_subscribers_within_a_second(plane):
    async def scenario():
        spec = DeploymentSpec(namespace="emojivoto", name="emoji", command=("x",), port=8080)
        rs = plane.registry.apply(spec)[1]["name"]
        streams = []
        for _ in range(50):
            lines, ready = [], asyncio.Event()
            task = asyncio.create_task(_collect(
                plane.destination.watch("emoji.emojivoto:8080"), lines, ready))
            streams.append((lines, ready, task))
        for lines, ready, _ in streams:
            await asyncio.wait_for(ready.wait(), 1)
            assert lines[0]["endpoints"] == [] and lines[0]["exists"] is True
        start = time.monotonic()
        plane.registry.report_pod("emojivoto", f"{rs}-abcde", rs, {
            "status": "Running", "ready": True, "inbound": "127.0.0.1:4143"})
        while not all(any(line.get("endpoints") for line in lines) for lines, _, _ in streams):
            assert time.monotonic() - start < 1.0, "change did not reach every subscriber"
            await asyncio.sleep(0.005)
        # an unrelated change sends nothing new; idle streams get heartbeats
        await asyncio.sleep(0.5)
        for lines, _, task in streams:
            snapshots = [line for line in lines if line]
            assert len(snapshots) == 2 and {} in lines
            task.cancel()
        assert plane.destination.watchers <= 50
    asyncio.run(scenario())
