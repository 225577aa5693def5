"""Service profiles: parsing Linkerd's documents, validation errors, matching, budget."""

from __future__ import annotations

import doctest

import pytest

import shoal.profiles as profiles
import shoal.proxy.budget as budget_mod
from shoal.profiles import ProfileError, parse, parse_documents, parse_duration, template
from shoal.proxy.budget import RetryBudget

DOC = {
    "apiVersion": "linkerd.io/v1alpha2", "kind": "ServiceProfile",
    "metadata": {"name": "webapp.default.svc.cluster.local", "namespace": "default"},
    "spec": {
        "routes": [
            {"name": "GET /books/{id}", "condition": {"method": "GET", "pathRegex": r"/books/\d+"},
             "isRetryable": True, "timeout": "300ms",
             "responseClasses": [{"condition": {"status": {"min": 500, "max": 599}},
                                  "isFailure": True},
                                 {"condition": {"status": {"min": 404, "max": 404}},
                                  "isFailure": True}]},
            {"name": "not GET", "condition": {"not": {"method": "GET"}}},
            {"name": "any", "condition": {"any": [{"pathRegex": "/a"}, {"pathRegex": "/b"}]}},
        ],
        "retryBudget": {"retryRatio": 0.2, "minRetriesPerSecond": 10, "ttl": "10s"},
    },
}


def test_doctests():
    for mod in (profiles, budget_mod):
        assert doctest.testmod(mod).failed == 0


def test_linkerd_profile_parses_and_matches_in_order():
    p = parse(DOC)
    assert (p.service, p.namespace) == ("webapp", "default")
    r = p.route_for("GET", "/books/12")
    assert r.name == "GET /books/{id}" and r.timeout == 0.3 and r.is_retryable
    assert r.failure(404) is True and r.failure(200) is None
    assert p.route_for("GET", "/books/12/x") is None  # pathRegex is anchored
    assert p.route_for("POST", "/books/12").name == "not GET"
    assert p.route_for("GET", "/b").name == "any"
    assert p.route_for("GET", "/c") is None
    assert p.retry_budget.ttl == 10.0


@pytest.mark.parametrize("mutate,where", [
    (lambda d: d["spec"]["routes"][0]["condition"].update(pathRegex="(["),
     "spec.routes[0].condition.pathRegex"),
    (lambda d: d["spec"]["routes"][0].update(timeout="soon"), "spec.routes[0].timeout"),
    (lambda d: d["spec"]["retryBudget"].pop("ttl"), "spec.retryBudget.ttl"),
    (lambda d: d["spec"]["routes"][0]["responseClasses"][0]["condition"]["status"].update(max=600),
     "spec.routes[0].responseClasses[0].condition.status.max"),
    (lambda d: d.update(kind="Deployment"), "kind"),
    (lambda d: d["spec"]["routes"][1].pop("condition"), "spec.routes[1].condition"),
    (lambda d: d["spec"]["routes"][2]["condition"].update(colour="red"),
     "spec.routes[2].condition.colour"),
])
def test_invalid_profiles_name_the_field(mutate, where):
    import copy

    doc = copy.deepcopy(DOC)
    mutate(doc)
    with pytest.raises(ProfileError) as e:
        parse(doc)
    assert e.value.where == where


def test_yaml_documents_and_template():
    import yaml

    text = yaml.safe_dump(DOC) + "---\n" + yaml.safe_dump(template("emoji", "emojivoto"))
    ps = parse_documents(text)
    assert [p.service for p in ps] == ["webapp", "emoji"]
    with pytest.raises(ProfileError, match="document 1"):
        parse_documents("kind: ServiceProfile\n")


def test_durations():
    assert parse_duration("1h2m3s") == 3723
    assert parse_duration("1.5s") == 1.5
    for bad in ("", "10", "ms", "1x", None):
        with pytest.raises(ProfileError):
            parse_duration(bad)


def test_budget_floor_ratio_and_expiry():
    t = [100.0]
    b = RetryBudget(0.5, 1, 2.0, clock=lambda: t[0])
    assert b.withdraw() and b.withdraw()  # the floor: 1/s over a 2 s window
    assert not b.withdraw()
    for _ in range(4):
        b.deposit()
    assert b.withdraw() and b.withdraw() and not b.withdraw()  # +50 % of 4
    t[0] += 3.0  # everything expired
    assert b.withdraw() and b.withdraw() and not b.withdraw()
