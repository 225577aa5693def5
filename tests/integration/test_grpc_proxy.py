"""gRPC through the HTTP/2 proxy: a real grpcio server and client, both sides, all four shapes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from shoal.proxy.config import ProxyConfig
from tests.h2support import Proxy, echo_modules

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
        replies = stub.Bidi(iter([pb2.Msg(text=str(i), blob=blob) for i in range(20)]),
                            timeout=30)
        assert sum(len(m.blob) for m in replies) == 20 * len(blob)


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
