"""gRPC through the HTTP/2 proxy: a real grpcio server and client, both sides, all four shapes."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from shoal.proxy.config import ProxyConfig
from tests.h2support import Proxy, credentials_for, echo_modules

pytestmark = pytest.mark.timeout(60)

pb2, pb2_grpc = echo_modules()
AUTHORITY = "svc.ns:50051"


class EchoService(pb2_grpc.EchoServicer):  # type: ignore[misc,name-defined]
    def Unary(self, request, context):  # noqa: N802 - gRPC method names
        if request.text == "notfound":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        if request.text == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, "try later")
        return pb2.Msg(text=request.text.upper(), blob=request.blob)

    def ServerStream(self, request, context):  # noqa: N802
        for i in range(request.count):
            yield pb2.Msg(text=f"{request.text}-{i}", count=i)

    def ClientStream(self, request_iterator, context):  # noqa: N802
        texts, total = [], 0
        for m in request_iterator:
            texts.append(m.text)
            total += len(m.blob)
        return pb2.Msg(text="".join(texts), count=total)

    def Bidi(self, request_iterator, context):  # noqa: N802
        for m in request_iterator:
            yield pb2.Msg(text=m.text[::-1], count=m.count, blob=m.blob)


@pytest.fixture(scope="module")
def app() -> Iterator[tuple[str, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb2_grpc.add_EchoServicer_to_server(EchoService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield ("127.0.0.1", port)
    server.stop(None)


@pytest.fixture
def inbound(app: tuple[str, int]) -> Iterator[Proxy]:
    with Proxy(ProxyConfig(app=app, inbound=("127.0.0.1", 0))) as p:
        yield p


@pytest.fixture
def outbound(app: tuple[str, int]) -> Iterator[Proxy]:
    with Proxy(ProxyConfig(destinations=((AUTHORITY, app),)), direction="outbound") as p:
        yield p


def channel(proxy: Proxy, authority: str = AUTHORITY) -> grpc.Channel:
    return grpc.insecure_channel(proxy.target, options=[("grpc.default_authority", authority)])


def all_shapes(stub: object) -> None:
    assert stub.Unary(pb2.Msg(text="hello"), timeout=10).text == "HELLO"
    got = [m.text for m in stub.ServerStream(pb2.Msg(text="s", count=5), timeout=10)]
    assert got == [f"s-{i}" for i in range(5)]
    reply = stub.ClientStream(iter([pb2.Msg(text=t, blob=b"z" * 1000) for t in "abcd"]),
                              timeout=10)
    assert (reply.text, reply.count) == ("abcd", 4000)
    got = [m.text for m in stub.Bidi(iter([pb2.Msg(text=t) for t in ("ab", "cd", "ef")]),
                                     timeout=10)]
    assert got == ["ba", "dc", "fe"]


def test_grpc_all_shapes_inbound(inbound: Proxy, app: tuple[str, int]) -> None:
    with channel(inbound) as ch:
        all_shapes(pb2_grpc.EchoStub(ch))
    target = f"{app[0]}:{app[1]}"
    assert inbound.value("request_total", direction="inbound", target_addr=target) == 4
    assert inbound.value("response_total", direction="inbound", status_code="200",
                         classification="success", grpc_status="0") == 4
    assert inbound.value("response_latency_ms_count", direction="inbound",
                         status_code="200") == 4
    # one accepted connection, one multiplexed connection to the app
    assert inbound.value("tcp_open_total", peer="src") == 1
    assert inbound.value("tcp_open_total", peer="dst") == 1
    assert inbound.value("tcp_read_bytes_total", peer="src") > 0
    assert inbound.value("tcp_write_bytes_total", peer="dst") > 0


def test_grpc_all_shapes_outbound(outbound: Proxy, app: tuple[str, int]) -> None:
    with channel(outbound) as ch:
        all_shapes(pb2_grpc.EchoStub(ch))
    labels = {"direction": "outbound", "authority": AUTHORITY,
              "target_addr": f"{app[0]}:{app[1]}", "dst_service": "svc", "dst_namespace": "ns"}
    assert outbound.value("request_total", **labels) == 4
    assert outbound.value("response_total", classification="success", grpc_status="0",
                          **labels) == 4


def test_grpc_status_classification(inbound: Proxy) -> None:
    with channel(inbound) as ch:
        stub = pb2_grpc.EchoStub(ch)
        for text, code in (("notfound", grpc.StatusCode.NOT_FOUND),
                           ("unavailable", grpc.StatusCode.UNAVAILABLE)):
            with pytest.raises(grpc.RpcError) as err:
                stub.Unary(pb2.Msg(text=text), timeout=10)
            assert err.value.code() == code
            assert err.value.details() in ("no such thing", "try later")
    assert inbound.value("response_total", grpc_status="5", classification="success") == 1
    assert inbound.value("response_total", grpc_status="14", classification="failure") == 1


def test_grpc_many_concurrent_calls_share_one_upstream_connection(inbound: Proxy) -> None:
    with channel(inbound) as ch:
        stub = pb2_grpc.EchoStub(ch)
        calls = [stub.Unary.future(pb2.Msg(text=f"m{i}", blob=b"b" * 5000), timeout=10)
                 for i in range(200)]
        assert [c.result().text for c in calls] == [f"M{i}" for i in range(200)]
    assert inbound.value("response_total", grpc_status="0") == 200
    assert inbound.value("tcp_open_total", peer="dst") == 1


def test_grpc_large_bidi_stream(outbound: Proxy) -> None:
    blob = b"q" * (1 << 20)
    with channel(outbound) as ch:
        stub = pb2_grpc.EchoStub(ch)
        replies = stub.Bidi(iter([pb2.Msg(text=str(i), blob=blob) for i in range(8)]),
                            timeout=50)
        assert sum(len(m.blob) for m in replies) == 8 * len(blob)


def test_grpc_no_route(outbound: Proxy) -> None:
    with channel(outbound, "nowhere.ns:50051") as ch:
        with pytest.raises(grpc.RpcError) as err:
            pb2_grpc.EchoStub(ch).Unary(pb2.Msg(text="x"), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert outbound.value("response_total", authority="nowhere.ns:50051", status_code="502",
                          classification="failure", error="no_route") == 1
    assert outbound.value("request_total", authority="nowhere.ns:50051") == 1


def test_grpc_connect_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[:2]  # bound, never listening: connections are refused
        with Proxy(ProxyConfig(app=closed, inbound=("127.0.0.1", 0))) as p, channel(p) as ch:
            with pytest.raises(grpc.RpcError) as err:
                pb2_grpc.EchoStub(ch).Unary(pb2.Msg(text="x"), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert p.value("response_total", status_code="502", classification="failure",
                           error="connect_refused") == 1
            assert p.value("proxy_errors_total", error="connect_refused") == 1


def test_grpc_through_two_proxy_processes(app: tuple[str, int]) -> None:
    """client -> outbound of a real `shoal proxy` -> inbound of another -> app, with detection."""
    from tests.support import ProxyProcess, metric

    with ProxyProcess("--app", f"{app[0]}:{app[1]}") as server_side:
        inbound = server_side.addr["inbound"]
        with ProxyProcess("--destination", f"{AUTHORITY}={inbound}") as client_side:
            target = str(client_side.addr["outbound"])
            with grpc.insecure_channel(
                    target, options=[("grpc.default_authority", AUTHORITY)]) as ch:
                all_shapes(pb2_grpc.EchoStub(ch))
            out = client_side.metrics()
            assert metric(out, "response_total", direction="outbound", authority=AUTHORITY,
                          grpc_status="0", classification="success") == 4
        into = server_side.metrics()
        assert metric(into, "response_total", direction="inbound", grpc_status="0",
                      classification="success") == 4
        assert "Traceback" not in server_side.log()


PROFILE = {
    "apiVersion": "linkerd.io/v1alpha2", "kind": "ServiceProfile",
    "metadata": {"name": "svc.ns.svc.cluster.local", "namespace": "ns"},
    "spec": {"routes": [
        {"name": "unary", "condition": {"method": "POST", "pathRegex": "/shoal.test.Echo/Unary"}},
        {"name": "streams", "condition": {"method": "POST", "pathRegex": "/shoal.test.Echo/.*Stream"},
         "responseClasses": [{"condition": {"status": {"min": 200, "max": 200}},
                              "isFailure": True}]},
    ]},
}


def test_grpc_calls_count_on_their_profile_routes(app: tuple[str, int]) -> None:
    from shoal.profiles import parse
    from shoal.proxy.routes import RouteTable

    with Proxy(ProxyConfig(destinations=((AUTHORITY, app),)), direction="outbound") as p:
        rt = p.runtime
        p.call(rt.resolver.static_routes.__setitem__, "svc.ns",
               RouteTable(parse(PROFILE), rt.metrics, "outbound"))
        with channel(p) as ch:
            stub = pb2_grpc.EchoStub(ch)
            stub.Unary(pb2.Msg(text="a"), timeout=10)
            stub.Unary(pb2.Msg(text="b"), timeout=10)
            list(stub.ServerStream(pb2.Msg(text="s", count=2), timeout=10))
            stub.ClientStream(iter([pb2.Msg(text="x")]), timeout=10)
            list(stub.Bidi(iter([pb2.Msg(text="y")]), timeout=10))
        assert p.value("route_request_total", rt_route="unary") == 2
        assert p.value("route_response_total", rt_route="unary",
                       classification="success") == 2
        # the profile calls a 200 on these routes a failure, whatever gRPC says
        assert p.value("route_response_total", rt_route="streams",
                       classification="failure") == 2
        assert p.value("response_total", authority=AUTHORITY, classification="failure") == 2
        assert p.value("route_actual_response_total", rt_route="unary") == 2
        assert p.value("route_request_total", dst="svc.ns.svc.cluster.local") == 5


def test_first_call_waits_for_discovery(app: tuple[str, int]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from shoal.proxy.destination import Target

    with Proxy(ProxyConfig(), direction="outbound") as p:
        rt = p.runtime

        def pending_target() -> Target:
            t = Target(AUTHORITY, [])
            t.pending = asyncio.get_running_loop().create_future()
            rt.resolver.update(AUTHORITY, t)
            return t

        def answer(t: Target) -> None:
            t.endpoints.append(rt.resolver.endpoint(AUTHORITY, app, {"dst_service": "svc"}))
            assert t.pending is not None
            t.pending.set_result(None)

        def waiting() -> int:
            return sum(len(c.streams) for c in rt.connections)  # type: ignore[attr-defined]

        target = p.call(pending_target)
        with channel(p) as ch, ThreadPoolExecutor(1) as pool:
            call = pool.submit(pb2_grpc.EchoStub(ch).Unary, pb2.Msg(text="late"), timeout=10)
            deadline = time.monotonic() + 5
            while p.call(waiting) == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not call.done()
            p.call(answer, target)
            assert call.result(10).text == "LATE"
        assert p.value("response_total", authority=AUTHORITY, grpc_status="0") == 1
        assert p.value("request_total", error="no_route") == 0


def test_discovery_without_endpoints_answers_no_endpoints(app: tuple[str, int]) -> None:
    from shoal.proxy.destination import Target

    with Proxy(ProxyConfig(connect_timeout=0.2), direction="outbound") as p:
        rt = p.runtime

        def pending_target() -> None:
            t = Target(AUTHORITY, [])
            t.pending = asyncio.get_running_loop().create_future()
            rt.resolver.update(AUTHORITY, t)

        p.call(pending_target)
        with channel(p) as ch:
            with pytest.raises(grpc.RpcError) as err:
                pb2_grpc.EchoStub(ch).Unary(pb2.Msg(text="x"), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert p.value("response_total", authority=AUTHORITY, status_code="502",
                       error="no_route") == 1


def test_grpc_between_proxies_over_mtls(app: tuple[str, int], tmp_path: Path) -> None:
    """outbound proxy -> mTLS h2 -> inbound proxy (detection, TLS termination) -> app."""
    from shoal.proxy.destination import Target

    server_creds = credentials_for(tmp_path, "web", "ns")
    client_creds = credentials_for(tmp_path, "client", "ns")
    with Proxy(ProxyConfig(app=app, inbound=("127.0.0.1", 0)), detect=True,
               credentials=server_creds) as server_side, \
            Proxy(ProxyConfig(), direction="outbound", credentials=client_creds) as client_side:
        rt = client_side.runtime

        def route() -> None:
            ep = rt.resolver.endpoint(AUTHORITY, server_side.addr, {"dst_service": "svc"},
                                      identity=server_creds.name)
            rt.resolver.update(AUTHORITY, Target(AUTHORITY, [ep]))

        client_side.call(route)
        with channel(client_side) as ch:
            all_shapes(pb2_grpc.EchoStub(ch))
        assert client_side.value("response_total", tls="true", server_id=server_creds.name,
                                 grpc_status="0") == 4
        assert client_side.value("tcp_open_total", peer="dst", tls="true") == 1
        assert server_side.value("response_total", direction="inbound", tls="true",
                                 client_id=client_creds.name, grpc_status="0") == 4


def test_grpc_through_http_proxy_connect_and_upstream_port(app: tuple[str, int],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """An unmodified grpcio client with http_proxy set tunnels through CONNECT; the proxy
    detects HTTP/2 inside the tunnel and still sees each call. A client that honours
    no proxy setting uses a named upstream port instead."""
    from tests.support import ProxyProcess, metric

    with ProxyProcess("--app", f"{app[0]}:{app[1]}") as server_side:
        with ProxyProcess("--destination", f"{AUTHORITY}={server_side.addr['inbound']}",
                          "--upstream", f"{AUTHORITY}=0") as client_side:
            for var in ("no_proxy", "NO_PROXY", "no_grpc_proxy", "grpc_proxy"):
                monkeypatch.delenv(var, raising=False)
            monkeypatch.setenv("http_proxy", f"http://{client_side.addr['outbound']}")
            with grpc.insecure_channel(AUTHORITY) as ch:  # resolved by the proxy, not DNS
                all_shapes(pb2_grpc.EchoStub(ch))
            monkeypatch.delenv("http_proxy")
            port = client_side.addr["upstreams"][AUTHORITY]
            with grpc.insecure_channel(port, options=[("grpc.enable_http_proxy", 0)]) as ch:
                all_shapes(pb2_grpc.EchoStub(ch))
            out = client_side.metrics()
            # each call counted as a request with its grpc-status, not one opaque tunnel
            assert metric(out, "response_total", direction="outbound", authority=AUTHORITY,
                          grpc_status="0", classification="success") == 8
            assert metric(out, "request_total", direction="outbound",
                          authority=f"{AUTHORITY}") == 8
        assert metric(server_side.metrics(), "response_total", direction="inbound",
                      grpc_status="0") == 8
