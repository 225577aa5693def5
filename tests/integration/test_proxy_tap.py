"""The proxy's tap listener: live events, filters, redaction, clean-up."""

from __future__ import annotations

import json
import threading

import httpx

from tests.support import wait_for


class Tapper:
    """Reads a tap stream in a thread and collects its events."""

    def __init__(self, url: str, spec: dict) -> None:
        self.events: list[dict] = []
        self.started = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url, spec), daemon=True)
        self.thread.start()
        assert self.started.wait(10)

    def _run(self, url: str, spec: dict) -> None:
        try:
            with httpx.stream("POST", url, json=spec, timeout=30) as r:
                for line in r.iter_lines():
                    ev = json.loads(line)
                    if ev["type"] == "started":
                        self.started.set()
                    elif ev["type"] in ("req", "rsp", "end"):
                        self.events.append(ev)
                    if self.stop.is_set():
                        return
        except httpx.HTTPError:
            pass  # the proxy stopped under us at the end of the test

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]


def test_tap_streams_events_with_redaction(app, start_proxy):
    _, addr = app
    p = start_proxy("--app", addr, "--tap-redact", "x-api-key")
    t = Tapper(p.url("tap", "/tap"), {"filter": {"path_prefix": "/status"}})
    with httpx.Client(base_url=p.url("inbound")) as c:
        c.get("/", headers={"authorization": "Bearer s3cret"})  # filtered out by path
        c.get("/status/503", headers={"authorization": "Bearer s3cret", "cookie": "a=b",
                                      "x-api-key": "k", "x-visible": "yes"})
    wait_for(lambda: t.of("end"), what="end event")
    t.stop.set()
    (req,), (rsp,), (end,) = t.of("req"), t.of("rsp"), t.of("end")
    assert req["id"] == rsp["id"] == end["id"]
    assert req["method"] == "GET" and req["path"] == "/status/503" and req["proxy"] == "in"
    assert req["direction"] == "inbound" and req["tls"] == "no_identity"
    headers = {k.lower(): v for k, v in req["headers"]}
    assert headers["authorization"] == "<redacted>"
    assert headers["cookie"] == "<redacted>"
    assert headers["x-api-key"] == "<redacted>"
    assert headers["x-visible"] == "yes"
    assert "s3cret" not in json.dumps(t.events)
    assert rsp["status"] == 503 and rsp["latency_us"] > 0
    assert end["classification"] == "failure" and end["response_bytes"] == len("status 503\n")


def test_tap_rejects_bad_filters_and_cleans_up(app, start_proxy):
    _, addr = app
    p = start_proxy("--app", addr)
    r = httpx.post(p.url("tap", "/tap"), json={"filter": {"path_regex": "(["}})
    assert r.status_code == 400 and "invalid" in r.text
    r = httpx.post(p.url("tap", "/tap"), json={"filter": {"colour": "blue"}})
    assert r.status_code == 400 and "colour" in r.text
    r = httpx.post(p.url("tap", "/tap"), content=b"{not json")
    assert r.status_code == 400
    # open and drop 50 taps abruptly; the proxy must forget every one
    for _ in range(50):
        with httpx.stream("POST", p.url("tap", "/tap"), json={}, timeout=10) as s:
            next(s.iter_lines())
    httpx.get(p.url("inbound"))
    wait_for(lambda: _subs(p) == 0, timeout=10, what="subscriptions released")


def _subs(p) -> int:
    # a tapped request would be delivered to live subscriptions; none must remain
    body = httpx.get(p.url("admin", "/metrics")).text
    line = [ln for ln in body.splitlines() if ln.startswith("tap_subscriptions ")]
    return int(float(line[0].split()[1])) if line else 0
