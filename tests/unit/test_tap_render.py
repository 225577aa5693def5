"""`shoal tap` and `shoal top` rendering against golden files, and top's aggregation
(regenerate with SHOAL_UPDATE_GOLDEN=1)."""

from __future__ import annotations

import json

import pytest

from shoal.cli import _topmodel as topmodel
from shoal.cli import tap
from tests.unit.test_control_render import golden

WEB = {"namespace": "emojivoto", "deployment": "web", "pod": "web-5f7c8d9b4-x2k9q",
       "pod_template_hash": "5f7c8d9b4", "serviceaccount": "web"}
VOTING = {"namespace": "emojivoto", "deployment": "voting", "pod": "voting-7d4c9-abcde",
          "pod_template_hash": "7d4c9", "serviceaccount": "voting", "service": "voting"}


def events() -> list[dict]:
    """An inbound request to web that makes one outbound call to voting, and a gRPC call."""
    inbound = {"pod": "web-5f7c8d9b4-x2k9q", "namespace": "emojivoto", "direction": "inbound",
               "proxy": "in", "src": "10.244.0.23:46302", "dst": "10.244.0.30:8090",
               "tls": "true", "src_labels": {}, "dst_labels": WEB, "route_labels": {},
               "method": "POST", "scheme": "http", "authority": "web.emojivoto:80",
               "path": "/"}
    out = {**inbound, "direction": "outbound", "proxy": "out", "src": "10.244.0.30:43404",
           "dst": "10.244.0.34:8080", "src_labels": WEB, "dst_labels": VOTING,
           "route_labels": {"route": "POST /vote"}, "authority": "voting.emojivoto:8080",
           "path": "/vote/doughnut"}
    grpc = {**out, "method": "POST", "scheme": "http",
            "path": "/emojivoto.v1.VotingService/VoteDoughnut",
            "route_labels": {"route": "VoteDoughnut"}}
    return [
        {**inbound, "type": "req", "id": "6:0",
         "headers": [["authorization", "<redacted>"], ["accept", "*/*"]]},
        {**out, "type": "req", "id": "6:1", "headers": [["cookie", "<redacted>"]]},
        {**out, "type": "rsp", "id": "6:1", "status": 200, "latency_us": 7420,
         "headers": [["content-type", "application/json"]]},
        {**out, "type": "end", "id": "6:1", "duration_us": 51, "response_bytes": 20,
         "grpc_status": None, "error": "", "classification": "success"},
        {**inbound, "type": "rsp", "id": "6:0", "status": 302, "latency_us": 10038,
         "headers": [["set-cookie", "<redacted>"]]},
        {**inbound, "type": "end", "id": "6:0", "duration_us": 12, "response_bytes": 0,
         "grpc_status": None, "error": "", "classification": "success"},
        {**grpc, "type": "req", "id": "7:1", "headers": [["te", "trailers"]]},
        {**grpc, "type": "rsp", "id": "7:1", "status": 200, "latency_us": 1500},
        {**grpc, "type": "end", "id": "7:1", "duration_us": 297, "response_bytes": 34,
         "grpc_status": 0, "error": "", "classification": "success",
         "headers": [["grpc-status", "0"]]},
        {**grpc, "type": "req", "id": "7:3"},
        {**grpc, "type": "rsp", "id": "7:3", "status": 200, "latency_us": 2_500_000},
        {**grpc, "type": "end", "id": "7:3", "duration_us": 10, "response_bytes": 0,
         "grpc_status": 14, "error": "", "classification": "failure"},
        {"type": "stats", "dropped": 3},
    ]


def rendered(output: str) -> str:
    r = tap.Renderer(output)
    return "\n".join(t for t in (r.render(e) for e in events()) if t is not None)


def test_tap_line_format():
    text = rendered("")
    golden("tap_line.golden", text)
    first = text.splitlines()[0]
    assert first == ("req id=6:0 proxy=in  src=10.244.0.23:46302 dst=10.244.0.30:8090 "
                     "tls=true :method=POST :authority=web.emojivoto:80 :path=/")
    assert "rsp id=6:0 proxy=in  src=10.244.0.23:46302 dst=10.244.0.30:8090 tls=true " \
           ":status=302 latency=10038µs" in text
    assert "end id=6:0 proxy=in  src=10.244.0.23:46302 dst=10.244.0.30:8090 tls=true " \
           "duration=12µs response-length=0B" in text
    assert "grpc-status=OK duration=297µs response-length=34B" in text
    assert "grpc-status=Unavailable" in text


def test_tap_wide_format():
    text = rendered("wide")
    golden("tap_wide.golden", text)
    line = text.splitlines()[1]
    assert line.endswith(" src_deployment=web src_namespace=emojivoto src_pod=web-5f7c8d9b4-x2k9q"
                         " src_pod_template_hash=5f7c8d9b4 src_serviceaccount=web"
                         " dst_deployment=voting dst_namespace=emojivoto"
                         " dst_pod=voting-7d4c9-abcde dst_pod_template_hash=7d4c9"
                         " dst_service=voting dst_serviceaccount=voting rt_route=POST /vote")


def test_tap_json_format():
    text = rendered("json")
    golden("tap_json.golden", text)
    objs = [json.loads(chunk) for chunk in text.replace("}\n{", "}\x00{").split("\x00")]
    assert len(objs) == 12
    req, end = objs[1], objs[3]
    assert set(req) == {"source", "destination", "routeMeta", "proxyDirection",
                        "requestInitEvent"}
    assert req["proxyDirection"] == "OUTBOUND"
    assert req["source"] == {"ip": "10.244.0.30", "port": 43404, "metadata": WEB}
    assert req["requestInitEvent"]["id"] == {"base": 6, "stream": 1}
    assert req["requestInitEvent"]["headers"] == [{"name": "cookie", "valueStr": "<redacted>"}]
    assert end["responseEndEvent"]["sinceRequestInit"] == {"nanos": 7_471_000}
    assert end["responseEndEvent"]["sinceResponseInit"] == {"nanos": 51_000}
    assert end["responseEndEvent"]["responseBytes"] == 20
    assert objs[10]["responseInitEvent"]["sinceRequestInit"] == {"seconds": 2,
                                                                  "nanos": 500_000_000}
    assert objs[11]["responseEndEvent"]["grpcStatusCode"] == 14


def test_top_table():
    m = topmodel.TopModel()
    for e in events():
        m.add(e)
    for i in range(3):  # a busier row sorts first
        base = {**events()[0], "path": "/busy", "id": f"9:{i}"}
        m.add({**base, "type": "req"})
        m.add({**base, "type": "rsp", "latency_us": 800 + i})
        m.add({**base, "type": "end", "duration_us": 0, "classification":
               "failure" if i == 0 else "success"})
    rows = m.rows()
    assert [r.count for r in rows] == [3, 2, 1, 1]
    assert rows[0].cells()[4:] == ["3", "800µs", "802µs", "802µs", "66.67%"]
    text = topmodel.render(rows)
    golden("top_table.golden", text)
    assert text.splitlines()[0].split() == ["Source", "Destination", "Method", "Path",
                                            "Count", "Best", "Worst", "Last", "Success",
                                            "Rate"]
    grpc = next(r for r in rows if r.path.startswith("/emojivoto"))
    assert grpc.cells()[5:] == ["2ms", "2.5s", "2.5s", "50.00%"]
    assert grpc.source == "web-5f7c8d9b4-x2k9q" and grpc.destination == "voting-7d4c9-abcde"


def test_top_routes_and_hidden_sources():
    m = topmodel.TopModel(routes=True, hide_sources=True)
    for e in events():
        m.add(e)
    text = topmodel.render(m.rows(), routes=True, hide_sources=True)
    golden("top_routes.golden", text)
    assert text.splitlines()[0].startswith("Destination")
    assert "Route" in text and "VoteDoughnut" in text and "Source" not in text


def test_top_forgets_requests_without_end():
    m = topmodel.TopModel()
    for i in range(topmodel.PENDING_MAX + 10):
        m.add({"type": "req", "id": f"1:{i}", "pod": "p", "path": "/"})
    assert len(m.pending) == topmodel.PENDING_MAX and m.rows() == []


@pytest.mark.parametrize("us,text", [(0, "0µs"), (947, "947µs"), (1499, "1ms"),
                                     (46_000, "46ms"), (1_500_000, "1.5s")])
def test_top_latency_format(us, text):
    assert topmodel.latency(us) == text


def test_top_view_scrolls_and_clips():
    from shoal.cli.top import view

    table = "HEADER-LINE\nrow-1\nrow-2\nrow-3"
    screen = view(table, width=5, height=6, left=2, top=1)
    assert screen[3:] == ["ADER-", "w-2", "w-3"]
    assert all(len(line) <= 5 for line in screen)


def test_since_durations():
    assert tap.parse_since("30s") == 30 and tap.parse_since("2m") == 120
    assert tap.parse_since("1h") == 3600 and tap.parse_since(None) == 0
    with pytest.raises(Exception, match="duration"):
        tap.parse_since("soon")
