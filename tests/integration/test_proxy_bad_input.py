"""Hostile and broken input: a clear error or a clean close, a log line, a metric,
and every other connection keeps working."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import httpx

from tests.support import metric, raw_request, tcp_server, wait_for

GOOD = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def still_serving(p) -> None:
    assert httpx.get(p.url("inbound"), timeout=5).text == "ok\n"


def status_of(resp: bytes) -> int:
    return int(resp.split(b" ", 2)[1]) if resp.startswith(b"HTTP/1.1 ") else 0


def test_malformed_request_line_is_400_and_close(app, start_proxy):
    test_app, addr = app
    p = start_proxy("--app", addr)
    out = raw_request(p.hostport("inbound"), b"GET /\x00bad HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status_of(out) == 400
    out = raw_request(p.hostport("inbound"), b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
    assert status_of(out) == 400
    assert metric(p.metrics(), "proxy_errors_total", error="bad_request") == 2
    assert "error=bad_request" in p.log()
    assert test_app.requests == []
    still_serving(p)


def test_header_section_over_limit_is_431(app, start_proxy):
    _, addr = app
    p = start_proxy("--app", addr, "--max-header-bytes", "8192")
    big = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    assert status_of(raw_request(p.hostport("inbound"), big)) == 431
    many = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(
        b"X-%d: %s\r\n" % (i, b"v" * 50) for i in range(400)) + b"\r\n"
    assert status_of(raw_request(p.hostport("inbound"), many)) == 431
    still_serving(p)


def test_request_smuggling_is_refused_not_forwarded(app, start_proxy):
    test_app, addr = app
    p = start_proxy("--app", addr)
    cl_te = (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n")
    dup_cl = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"
    bad_chunk = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n"
    for attack in (cl_te, dup_cl, bad_chunk):
        assert status_of(raw_request(p.hostport("inbound"), attack)) == 400
    assert not any(r["path"] == "/smuggled" for r in test_app.requests)
    assert all(r["method"] != "POST" or r.get("size") is not None for r in test_app.requests)
    still_serving(p)


def test_slow_headers_get_408(app, start_proxy):
    _, addr = app
    p = start_proxy("--app", addr, "--header-timeout", "1")
    with socket.create_connection(p.hostport("inbound"), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")  # ...and never the blank line
        data = s.recv(4096)
    assert status_of(data) == 408
    assert metric(p.metrics(), "proxy_errors_total", error="request_timeout") == 1
    still_serving(p)


def test_client_vanishing_mid_body_aborts_upstream(app, start_proxy):
    test_app, addr = app
    p = start_proxy("--app", addr)
    with socket.create_connection(p.hostport("inbound")) as s:
        s.sendall(b"POST /count HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        wait_for(lambda: test_app.requests, what="request reached the app")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    wait_for(lambda: test_app.disconnects == 1, what="app saw the abort")
    # No half request stays on a pooled connection: the next one is clean.
    for _ in range(3):
        r = httpx.post(p.url("inbound", "/count"), content=b"abc")
        assert r.text == "3"


def test_app_refusing_connection_is_502_counted_as_failure(start_proxy):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    p = start_proxy("--app", f"127.0.0.1:{port}")
    r = httpx.get(p.url("inbound"))
    assert r.status_code == 502
    assert "connect_refused" in r.text
    m = p.metrics()
    assert metric(m, "response_total", direction="inbound", classification="failure",
                  error="connect_refused", status_code="502") == 1
    assert "error=connect_refused" in p.log()


def _reset_mid_response(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial")
    time.sleep(0.05)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_app_reset_mid_response_closes_client_and_counts_failure(start_proxy):
    with tcp_server(_reset_mid_response) as (host, port):
        p = start_proxy("--app", f"{host}:{port}")
        out = raw_request(p.hostport("inbound"), GOOD)
        assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"partial")
        wait_for(lambda: metric(p.metrics(), "response_total", classification="failure",
                                error="upstream_reset") == 1, what="failure counted")


def _echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


def test_tls_hello_and_random_bytes_are_opaque(start_proxy):
    with tcp_server(_echo) as (host, port):
        p = start_proxy("--app", f"{host}:{port}")
        hello = bytes.fromhex("160301") + os.urandom(200)
        with socket.create_connection(p.hostport("inbound"), timeout=5) as s:
            s.sendall(hello)
            got = b""
            while len(got) < len(hello):
                got += s.recv(65536)
        assert got == hello
        noise = os.urandom(5000)
        with socket.create_connection(p.hostport("inbound"), timeout=5) as s:
            s.sendall(noise)
            got = b""
            while len(got) < len(noise):
                got += s.recv(65536)
        assert got == noise
        m = p.metrics()
        assert metric(m, "tcp_read_bytes_total", direction="inbound", peer="src") >= 5203


def test_connection_limit_refuses_cleanly_and_keeps_others(app, start_proxy):
    _, addr = app
    p = start_proxy("--app", addr, "--max-connections", "300", "--detect-timeout", "60")
    keep = httpx.Client(base_url=p.url("inbound"))
    assert keep.get("/").text == "ok\n"  # an established keep-alive connection
    idle = []
    for _ in range(400):
        s = socket.create_connection(p.hostport("inbound"))
        idle.append(s)
    wait_for(lambda: metric(p.metrics(), "proxy_errors_total", error="connection_limit") >= 90,
             what="refusals counted")
    refused = 0
    for s in idle:
        s.settimeout(0.01)
        try:
            if s.recv(1) == b"":
                refused += 1
        except (TimeoutError, BlockingIOError):
            pass
        except ConnectionResetError:
            refused += 1
    assert 90 <= refused <= 110
    assert keep.get("/").text == "ok\n"  # the established one still works
    for s in idle:
        s.close()
    wait_for(lambda: _get_ok(p), what="new connections accepted again")
    keep.close()


def _get_ok(p) -> bool:
    try:
        return httpx.get(p.url("inbound"), timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_ten_thousand_idle_connections(app, start_proxy):
    _, addr = app
    p = start_proxy("--app", addr, "--max-connections", "6000", "--detect-timeout", "120")
    idle = []
    try:
        for _ in range(10_000):
            idle.append(socket.create_connection(p.hostport("inbound")))
        wait_for(lambda: metric(p.metrics(), "proxy_errors_total",
                                error="connection_limit") >= 3900, timeout=30,
                 what="refusals over the limit")
        with httpx.Client() as c:
            # the proxy is alive and its admin answers while saturated
            assert c.get(p.url("admin", "/live")).status_code == 200
    finally:
        for s in idle:
            s.close()
    wait_for(lambda: _get_ok(p), timeout=30, what="serving again")


def test_bad_input_floods_do_not_disturb_a_concurrent_client(app, start_proxy):
    _, addr = app
    p = start_proxy("--app", addr)
    stop = threading.Event()
    errors = []

    def attacker() -> None:
        while not stop.is_set():
            try:
                raw_request(p.hostport("inbound"), os.urandom(64) + b"\r\n\r\n", timeout=1,
                            shut=True)
                raw_request(p.hostport("inbound"), b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X" * 70000)
            except OSError as e:
                errors.append(e)

    t = threading.Thread(target=attacker)
    t.start()
    try:
        with httpx.Client(base_url=p.url("inbound")) as c:
            for _ in range(50):
                assert c.get("/").text == "ok\n"
    finally:
        stop.set()
        t.join()


def test_unrouted_authorities_cannot_grow_metrics_without_bound(start_proxy):
    from shoal.proxy.runtime import MAX_UNROUTED

    p = start_proxy()
    host, port = p.hostport("outbound")
    with socket.create_connection((host, port)) as s:
        for i in range(MAX_UNROUTED + 50):
            s.sendall(b"GET http://n%d.nowhere/ HTTP/1.1\r\nHost: n%d.nowhere\r\n\r\n" % (i, i))
            resp = b""
            while b"\r\n\r\n" not in resp:
                resp += s.recv(4096)
            assert resp.startswith(b"HTTP/1.1 502")
            if b"connection: close" in resp:
                s.close()
                s = socket.create_connection((host, port))
    m = p.metrics()
    authorities = {dict(lbl).get("authority") for (name, lbl) in m
                   if name == "request_total" and dict(lbl).get("target_addr") == ""}
    assert len(authorities) == MAX_UNROUTED + 1  # the first thousand, then <other>
    assert metric(m, "request_total", authority="<other>") == 50
