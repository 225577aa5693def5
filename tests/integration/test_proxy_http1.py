"""HTTP/1.1 through the proxy with real clients (curl, httpx, websockets) and uvicorn."""

from __future__ import annotations

import json
import re
import subprocess

import httpx
import pytest

from tests.support import metric, raw_request, wait_for


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True,
                          text=True, timeout=30)


def test_inbound_forwards_and_counts(app, start_proxy):
    test_app, addr = app
    p = start_proxy("--app", addr)
    with httpx.Client(base_url=p.url("inbound")) as c:
        for _ in range(5):
            assert c.get("/").text == "ok\n"
        assert c.get("/status/503").status_code == 503
        assert c.get("/status/404").status_code == 404
    m = p.metrics()
    assert metric(m, "request_total", direction="inbound") == 7
    assert metric(m, "response_total", direction="inbound", classification="success") == 6
    assert metric(m, "response_total", direction="inbound", classification="failure",
                  status_code="503") == 1
    assert metric(m, "response_latency_ms_count", direction="inbound") == 7
    assert metric(m, "response_latency_ms_bucket", direction="inbound", le="+Inf") == 7
    assert metric(m, "tcp_open_total", direction="inbound", peer="src") == 1
    # keep-alive both sides: one client connection, one pooled upstream connection
    assert metric(m, "tcp_open_total", direction="inbound", peer="dst") == 1
    assert metric(m, "request_total", direction="inbound",
                  tls="no_identity", no_tls_reason="no_tls_from_remote") == 7


def test_curl_through_http_proxy_and_upstream_port(app, start_proxy):
    _, addr = app
    p = start_proxy("--app", addr, "--destination", f"web.demo:8080={addr}",
                    "--upstream", "web.demo:8080=0")
    r = curl("-x", p.url("outbound"), "http://web.demo:8080/status/201", "-w", "%{http_code}")
    assert r.stdout.endswith("201"), r
    up = p.addr["upstreams"]["web.demo:8080"]
    r = curl(f"http://{up}/", "-w", "%{http_code}")
    assert r.stdout == "ok\n200"
    env = {"HTTP_PROXY": p.url("outbound"), "http_proxy": p.url("outbound")}
    with httpx.Client(proxy=env["HTTP_PROXY"]) as c:
        assert c.get("http://web.demo:8080/").text == "ok\n"
    m = p.metrics()
    assert metric(m, "request_total", direction="outbound", authority="web.demo:8080",
                  dst_service="web", dst_namespace="demo") == 3


def test_unknown_destination_is_502_never_dns(start_proxy):
    p = start_proxy()
    r = curl("-x", p.url("outbound"), "http://example.com/", "-w", "%{http_code}")
    assert r.stdout.endswith("502")
    assert "no route to example.com" in r.stdout
    m = p.metrics()
    assert metric(m, "response_total", direction="outbound", error="no_route",
                  classification="failure", status_code="502") == 1


def test_chunked_streaming_head_and_nocontent(app, start_proxy):
    test_app, addr = app
    p = start_proxy("--app", addr)
    with httpx.Client(base_url=p.url("inbound")) as c:
        r = c.get("/stream?chunks=50")
        assert r.text == "".join(f"chunk {i}\n" for i in range(50))
        assert r.headers["transfer-encoding"] == "chunked"

        def gen():
            for _i in range(100):
                yield b"x" * 1000

        assert c.post("/count", content=gen()).text == "100000"
        assert c.head("/").status_code == 200
        assert c.get("/nocontent").status_code == 204
        assert c.get("/").text == "ok\n"  # the connection survived HEAD and 204
    assert metric(p.metrics(), "tcp_open_total", direction="inbound", peer="src") == 1


def test_expect_continue_body(app, start_proxy, tmp_path):
    _, addr = app
    p = start_proxy("--app", addr)
    body = tmp_path / "body"
    body.write_bytes(b"y" * 2_000_000)
    r = curl("-H", "Expect: 100-continue", "--data-binary", f"@{body}",
             p.url("inbound", "/count"), "-w", " %{http_code}", "-v")
    assert r.stdout == "2000000 200"
    assert "100 Continue" in r.stderr


def test_hop_by_hop_stripped_and_via_added(app, start_proxy):
    test_app, addr = app
    p = start_proxy("--app", addr)
    r = httpx.get(p.url("inbound", "/headers"),
                  headers={"Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "1",
                           "Keep-Alive": "timeout=5", "X-End": "kept"})
    seen = {k.lower(): v for k, v in json.loads(r.text)}
    assert "x-secret-hop" not in seen
    assert "keep-alive" not in seen
    assert seen["x-end"] == "kept"
    assert "shoal" in seen["via"]


def test_via_loop_is_refused(app, start_proxy):
    _, addr = app
    p = start_proxy("--app", addr, "--pod", "loopy")
    # A request that already passed this proxy's inbound side comes back: 508.
    r = httpx.get(p.url("inbound"), headers={"Via": "1.0 fred, 1.1 shoal-loopy-in"})
    assert r.status_code == 508
    assert metric(p.metrics(), "response_total", error="loop_detected") == 1


def test_websocket_upgrade_passes_through(app, start_proxy):
    import asyncio

    import websockets

    _, addr = app
    p = start_proxy("--app", addr)

    async def talk() -> list[str]:
        async with websockets.connect(f"ws://{p.addr['inbound']}/ws") as ws:
            out = []
            for i in range(3):
                await ws.send(f"hello {i}")
                out.append(await ws.recv())
            return out

    assert asyncio.run(talk()) == ["hello 0", "hello 1", "hello 2"]
    assert metric(p.metrics(), "response_total", status_code="101") == 1


def test_pipelined_requests_answered_in_order(app, start_proxy):
    _, addr = app
    p = start_proxy("--app", addr)
    reqs = (b"GET /sleep?ms=100 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /status/201 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /status/202 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    out = raw_request(p.hostport("inbound"), reqs)
    statuses = re.findall(rb"HTTP/1.1 (\d+)", out)
    assert statuses == [b"200", b"201", b"202"]


def test_large_upload_streams_in_bounded_memory(app, start_proxy):
    _, addr = app
    p = start_proxy("--app", addr)
    size = 256 * 1024 * 1024
    chunk = b"z" * (1024 * 1024)

    def gen():
        for _ in range(size // len(chunk)):
            yield chunk

    with httpx.Client(timeout=120) as c:
        r = c.post(p.url("inbound", "/count"), content=gen())
    assert r.text == str(size)
    rss = metric(p.metrics(), "process_resident_memory_bytes")
    assert rss < 150 * 1024 * 1024, rss


def test_requests_wait_for_readiness_probe(start_proxy):
    p = start_proxy()
    wait_for(lambda: httpx.get(p.url("admin", "/ready")).status_code == 200, what="ready")
    assert httpx.get(p.url("admin", "/ready")).text == "ready\n"
    assert httpx.get(p.url("admin", "/live")).text == "live\n"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_every_method_counted_once(app, start_proxy, method):
    _, addr = app
    p = start_proxy("--app", addr)
    httpx.request(method, p.url("inbound", "/status/200"))
    assert metric(p.metrics(), "request_total", direction="inbound") == 1
