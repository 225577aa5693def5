"""`shoal demo`: the shoalvoto lab starts meshed, every service shows traffic, the failing
vote and the kv TCP dependency show up, and it stops without leaving a process behind."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections import Counter
from random import Random

from shoal.demo.kv import reply
from shoal.demo.lab import banner
from shoal.demo.vote_bot import next_request
from tests.integration.test_control_helpers import SHOAL, processes_mentioning


def test_kv_speaks_its_line_protocol():
    store: Counter[str] = Counter()
    assert [reply(store, line) for line in ("INCR :joy:\n", "INCR :joy:", "INCR :tada:",
                                            "SCAN", "PING", "GET x")] == \
        [":1", ":2", ":1", "*:joy:=2 :tada:=1", "+PONG", "-ERR unknown command"]


def test_vote_bot_mostly_votes():
    paths = [next_request(i, Random(1)) for i in range(20)]
    assert Counter(m for m, _ in paths) == {"POST": 16, "GET": 4}
    assert ("GET", "/") in paths and ("GET", "/api/results") in paths


def test_banner_names_the_commands_to_try():
    text = banner("http://127.0.0.1:50750")
    assert text.splitlines()[0] == "shoal demo is running."
    assert "  dashboard:  http://127.0.0.1:50750" in text
    assert text.splitlines()[-1] == "  stop:       Ctrl-C (or shoal demo --down)"
    assert "dashboard" not in banner(None)


def _cli(home, *args: str) -> str:
    env = {**os.environ, "SHOAL_HOME": str(home)}
    return subprocess.run([*SHOAL, *args], env=env, capture_output=True, text=True,
                          timeout=30).stdout


def _closed(addr: str) -> bool:
    host, port = addr.rsplit(":", 1)
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) != 0


def test_demo_shows_the_whole_lab_then_stops_cleanly(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "SHOAL_HOME": str(home), "PYTHONFAULTHANDLER": "1"}
    env.pop("SHOAL_API", None)
    env.pop("SHOAL_TOKEN", None)
    demo = subprocess.Popen([*SHOAL, "demo", "--duration", "35", "--rate", "10", "--api",
                             "127.0.0.1:0", "--scrape-interval", "2s"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert demo.stdout is not None
        out = []
        while not (line := demo.stdout.readline()).startswith("  stop:"):
            assert line, f"demo exited early:\n{''.join(out)}\n{demo.stderr.read()}"
            out.append(line)
        url = re.search(r"dashboard:\s+(http://[\d.:]+)", "".join(out))
        assert url and "shoal demo is running.\n" in out
        pods = json.loads(_cli(home, "get", "pods", "-n", "shoalvoto", "-o", "json"))
        assert Counter(p["deployment"] for p in pods) == \
            {"web": 1, "emoji": 2, "voting": 1, "kv": 1, "vote-bot": 1}

        deadline, missing = time.monotonic() + 30, ["not polled yet"]
        while missing and time.monotonic() < deadline:
            time.sleep(2)
            rows = {r["name"]: r for r in json.loads(
                _cli(home, "stat", "deploy", "-n", "shoalvoto", "-o", "json") or "[]")}
            bot = json.loads(_cli(home, "stat", "deploy/web", "--from", "deploy/vote-bot",
                                  "-n", "shoalvoto", "-o", "json") or "[]")
            edges = {(e["src"], e["dst"]) for e in json.loads(
                _cli(home, "edges", "deploy", "-n", "shoalvoto", "-o", "json") or "[]")}
            missing = [f"{name} rps" for name in ("web", "emoji", "voting")
                       if not (rows.get(name, {}).get("rps") or 0) > 0]
            missing += [] if bot and (bot[0].get("rps") or 0) > 0 else ["vote-bot -> web rps"]
            missing += [] if (rows.get("kv", {}).get("tcp_open_connections") or 0) > 0 \
                else ["kv tcp connections"]
            missing += [] if (rows.get("voting", {}).get("success") or 1) < 1 \
                else ["voting failures"]
            missing += [f"edge {e}" for e in (("vote-bot", "web"), ("web", "emoji"),
                                              ("web", "voting"), ("voting", "kv"))
                        if e not in edges]
        assert not missing, missing

        assert demo.wait(60) == 0, demo.stderr.read()
        assert "shoal demo stopped." in demo.stdout.read()
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
            demo.wait(60)
    assert processes_mentioning(str(home)) == []
    assert _closed(url.group(1).removeprefix("http://"))
    for pod in pods:
        assert all(_closed(pod[k]) for k in ("inbound", "outbound", "admin")), pod
