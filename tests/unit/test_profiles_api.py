"""Service profiles through the API: all-or-nothing apply, persistence, discovery push;
and the generators behind `shoal profile --template/--open-api/--proto`."""

from __future__ import annotations

import copy

import pytest
from fastapi.testclient import TestClient

from shoal.control.api import create_app
from shoal.control.config import ControlConfig
from shoal.control.plane import ControlPlane
from shoal.control.registry import DeploymentSpec
from shoal.profilegen import from_openapi, from_proto, path_regex
from shoal.profiles import parse

STRESS = {"apiVersion": "linkerd.io/v1alpha2", "kind": "ServiceProfile",
          "metadata": {"name": "todoui.todo.svc.cluster.local"},
          "spec": {"routes": [
              {"name": "GET /", "condition": {"method": "GET", "pathRegex": "/"}},
              {"name": "GET /stress", "timeout": "100ms",
               "condition": {"method": "GET", "pathRegex": "/stress"}}]}}


def api(home):
    plane = ControlPlane.open(ControlConfig(home=home))
    plane.registry.apply(DeploymentSpec("todo", "todoui", ("app",), 8080))
    client = TestClient(create_app(plane), base_url="http://127.0.0.1")
    client.headers["authorization"] = f"Bearer {plane.token}"
    return plane, client


def broken(path: list, value) -> dict:
    doc = copy.deepcopy(STRESS)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def test_apply_pushes_to_discovery_and_survives_a_restart(tmp_path):
    plane, client = api(tmp_path)
    r = client.post("/api/v1/profiles", json=STRESS)
    assert r.status_code == 200, r.text
    assert r.json() == [{"namespace": "todo", "service": "todoui",
                         "name": "todoui.todo.svc.cluster.local",
                         "routes": ["GET /", "GET /stress"]}]
    snap = plane.destination.snapshot("todoui.todo:8080")
    assert parse(snap["profile"]).route_for("GET", "/stress").timeout == 0.1
    assert client.get("/api/v1/profiles/todo/todoui").json() == STRESS
    # a new control plane on the same home serves and pushes the same profile
    plane2, client2 = api(tmp_path)
    assert client2.get("/api/v1/profiles", params={"namespace": "todo"}).json()[0][
        "service"] == "todoui"
    assert plane2.destination.snapshot("todoui.todo:8080")["profile"] == STRESS
    assert client2.delete("/api/v1/profiles/todo/todoui").status_code == 200
    assert plane2.destination.snapshot("todoui.todo:8080")["profile"] is None
    assert client2.get("/api/v1/profiles/todo/todoui").status_code == 404
    assert not (tmp_path / "profiles" / "todo" / "todoui.json").exists()


@pytest.mark.parametrize(("doc", "field", "reason"), [
    (broken(["spec", "routes", 1, "condition", "pathRegex"], "/("), "pathRegex", "bad regex"),
    (broken(["spec", "routes", 1, "timeout"], "soon"), "routes[1].timeout", "not a duration"),
    (broken(["spec", "retryBudget"], {"retryRatio": 0.2}), "retryBudget.ttl", "needs a ttl"),
    (broken(["spec", "routes", 0, "responseClasses"],
            [{"condition": {"status": {"min": 500, "max": 700}}, "isFailure": True}]),
     "status.max", "outside 100-599"),
    (broken(["metadata", "name"], "../../etc.x"), "metadata.name", "must not be empty"),
    (broken(["metadata", "name"], "Evil_Svc.todo"), "metadata.name", "lowercase"),
    (broken(["kind"], "Deployment"), "kind", "ServiceProfile"),
])
def test_invalid_profiles_are_refused_and_the_one_in_force_stays(tmp_path, doc, field, reason):
    plane, client = api(tmp_path)
    assert client.post("/api/v1/profiles", json=STRESS).status_code == 200
    ok = copy.deepcopy(STRESS)
    ok["metadata"]["name"] = "other.todo.svc.cluster.local"
    r = client.post("/api/v1/profiles", json=[ok, doc])
    assert r.status_code == 400, r.text
    assert field in r.json()["error"] and reason in r.json()["error"]
    assert "document 2" in r.json()["error"]
    assert plane.destination.snapshot("todoui.todo:8080")["profile"] == STRESS
    assert [p["service"] for p in client.get("/api/v1/profiles").json()] == ["todoui"]


def test_openapi_routes_follow_paths_and_methods():
    spec = {"openapi": "3.0.0", "paths": {
        "/books/{id}": {"get": {"x-linkerd-timeout": "2s"}, "delete": {},
                        "parameters": []},
        "/books": {"post": {"x-linkerd-retryable": True}}}}
    doc = from_openapi(spec, "books", "lib")
    p = parse(doc)
    assert p.name == "books.lib.svc.cluster.local"
    assert [r.name for r in p.routes] == ["POST /books", "DELETE /books/{id}", "GET /books/{id}"]
    assert p.route_for("GET", "/books/42").timeout == 2.0
    assert p.route_for("GET", "/books/42/x") is None
    assert p.route_for("POST", "/books").is_retryable
    assert path_regex("/a.b/{x}") == "/a\\.b/[^/]*"


def test_proto_routes_are_grpc_paths():
    text = """
    syntax = "proto3";
    package emojivoto.v1;  // the package
    /* service Ghost { rpc Nope (A) returns (B); } */
    service VotingService {
      rpc VoteDoughnut (VoteRequest) returns (VoteResponse);
      rpc Results(ResultsRequest) returns (ResultsResponse) {}
    }
    service EmojiService { rpc ListAll (ListAllEmojiRequest) returns (ListAllEmojiResponse); }
    """
    p = parse(from_proto(text, "voting", "emojivoto"))
    assert [r.name for r in p.routes] == [
        "POST /emojivoto.v1.VotingService/VoteDoughnut",
        "POST /emojivoto.v1.VotingService/Results",
        "POST /emojivoto.v1.EmojiService/ListAll"]
    assert p.route_for("POST", "/emojivoto.v1.VotingService/VoteDoughnut") is p.routes[0]
    assert p.route_for("POST", "/emojivoto.v1xVotingService/VoteDoughnut") is None
