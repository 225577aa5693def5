"""Opaque TCP, admin endpoints, graceful shutdown."""

from __future__ import annotations

import signal
import socket
import threading
import time

import httpx

from tests.support import echo_handler, metric, tcp_server, wait_for


def test_opaque_tcp_both_ways_with_half_close(start_proxy):
    with tcp_server(echo_handler) as (host, port):
        p = start_proxy("--app", f"{host}:{port}")
        with socket.create_connection(p.hostport("inbound"), timeout=10) as s:
            payload = b"SET key value\n" * 1000
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)  # half-close: we still read the echo
            got = b""
            while chunk := s.recv(65536):
                got += chunk
        assert got == payload
        wait_for(lambda: metric(p.metrics(), "tcp_close_total", direction="inbound",
                                peer="src", errno="") == 1, what="close counted")
        m = p.metrics()
        assert metric(m, "tcp_read_bytes_total", direction="inbound", peer="src") == len(payload)
        assert metric(m, "tcp_write_bytes_total", direction="inbound", peer="src") == len(payload)
        assert metric(m, "tcp_open_connections", direction="inbound", peer="src") == 0


def test_server_speaks_first_protocol_after_detect_timeout(start_proxy):
    def greeter(conn: socket.socket) -> None:
        conn.sendall(b"220 hello\r\n")
        data = conn.recv(100)
        conn.sendall(b"echo " + data)

    with tcp_server(greeter) as (host, port):
        p = start_proxy("--app", f"{host}:{port}", "--detect-timeout", "0.5")
        with socket.create_connection(p.hostport("inbound"), timeout=30) as s:
            assert s.recv(100) == b"220 hello\r\n"
            s.sendall(b"QUIT\r\n")
            assert s.recv(100) == b"echo QUIT\r\n"


def test_upstream_port_forwards_opaque_tcp(start_proxy):
    with tcp_server(echo_handler) as (host, port):
        p = start_proxy("--destination", f"kv.demo:6379={host}:{port}",
                        "--upstream", "kv.demo:6379=0")
        h, _, lport = p.addr["upstreams"]["kv.demo:6379"].rpartition(":")
        with socket.create_connection((h, int(lport)), timeout=10) as s:
            s.sendall(b"\x00\x01binary")
            assert s.recv(100) == b"\x00\x01binary"
        m = p.metrics()
        assert metric(m, "tcp_open_total", direction="outbound", peer="dst",
                      dst_service="kv", dst_namespace="demo") == 1


def test_admin_endpoints(start_proxy):
    p = start_proxy()
    assert httpx.get(p.url("admin", "/ready")).text == "ready\n"
    assert httpx.get(p.url("admin", "/live")).text == "live\n"
    assert httpx.get(p.url("admin", "/nope")).status_code == 404
    assert httpx.get(p.url("admin", "/shutdown")).status_code == 405
    body = httpx.get(p.url("admin", "/metrics")).text
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_open_fds", "process_start_time_seconds"):
        assert name in body
    lat = httpx.get(p.url("admin", "/latency")).json()
    assert lat["series"] == [] and lat["alpha"] == 0.01
    r = httpx.post(p.url("admin", "/shutdown"))
    assert r.status_code == 202
    assert p.proc.wait(15) == 0


def test_sigterm_lets_in_flight_requests_finish(app, start_proxy):
    _, addr = app
    p = start_proxy("--app", addr, "--shutdown-grace", "10")
    result = {}

    def slow() -> None:
        result["r"] = httpx.get(p.url("inbound", "/sleep?ms=1500"), timeout=10)

    t = threading.Thread(target=slow)
    t.start()
    wait_for(lambda: metric(p.metrics(), "request_total", direction="inbound") == 1,
             what="request in flight")
    p.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    # no longer accepting
    try:
        httpx.get(p.url("inbound"), timeout=1)
        accepted = True
    except httpx.HTTPError:
        accepted = False
    assert not accepted
    t.join(15)
    assert result["r"].text == "slept\n"
    assert p.proc.wait(15) == 0
    assert "draining" in p.log()


def test_bad_flags_are_clear_errors():
    import subprocess

    from tests.support import SHOAL

    r = subprocess.run([SHOAL, "proxy", "--inbound", "127.0.0.1:x", "--app", "127.0.0.1:1"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "port that is not a number" in r.stderr
    r = subprocess.run([SHOAL, "proxy", "--destination", "nonsense"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "NAME:PORT=VALUE" in r.stderr


def test_scrapes_while_new_series_appear(app, start_proxy):
    """/metrics is formatted off the event loop while traffic keeps adding series."""
    _, addr = app
    host, port = addr.rsplit(":", 1)
    p = start_proxy("--app", addr)
    stop = threading.Event()
    errors: list[str] = []

    def traffic() -> None:
        i = 0
        with httpx.Client(proxy=p.url("outbound"), timeout=10) as c:
            while not stop.is_set():
                # a new authority (and so new series) every request: the same app
                # under 127.x.y.z aliases of loopback
                i += 1
                url = f"http://127.0.{i // 250 % 250}.{i % 250 + 1}:{port}/"
                try:
                    c.get(url)
                except httpx.HTTPError as e:
                    errors.append(repr(e))

    t = threading.Thread(target=traffic)
    t.start()
    try:
        for _ in range(10):
            r = httpx.get(p.url("admin", "/metrics"), timeout=10)
            assert r.status_code == 200
            assert httpx.get(p.url("admin", "/latency"), timeout=10).status_code == 200
    finally:
        stop.set()
        t.join(15)
    assert "Traceback" not in p.log()
    assert metric(p.metrics(), "request_total", direction="outbound") > 0
