"""`shoal load`: open loop at a fixed rate, counted by the target; errors counted;
Ctrl-C prints the summary so far; bad flags are clear errors."""

from __future__ import annotations

import re
import signal
import subprocess

import httpx

from tests.support import SHOAL, wait_for


def load(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SHOAL, "load", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_fixed_rate_is_what_the_target_counts(app):
    test_app, addr = app
    r = load(f"http://{addr}/", "--rate", "40", "--duration", "3s")
    assert r.returncode == 0, r.stderr
    got = len(test_app.requests)
    assert 114 <= got <= 126, got  # 120 +- 5 %
    assert re.search(r"requests: 120 sent, 120 done, 120 ok, 0 errors", r.stdout), r.stdout
    assert "status:   200=120" in r.stdout and "p99=" in r.stdout


def test_percentiles_match_the_proxys(app, start_proxy):
    """Load's p50/p99 and the meshed server's agree within the metric's precision: the
    same requests, seen from both ends of one proxy hop, fall in the same Linkerd
    latency bucket or the next one up. Latency spreads over 20-400 ms, so a wrong
    quantile shows. The client adds its own time (its HTTP stack, the hop: about 5 ms
    on a quiet machine, tens of ms at p99 on a busy one), never less."""
    _, addr = app
    p = start_proxy("--app", addr)
    r = load(p.url("inbound", "/sleep?ms=20-400"), "--rate", "40", "--duration", "5s")
    assert r.returncode == 0, r.stderr
    assert "200 ok" in r.stdout, r.stdout
    found = dict(re.findall(r"(p50|p99)=([0-9.]+)ms", r.stdout.split("latency:")[1]))
    from shoal.proxy.latency import LatencySketch

    series = httpx.get(p.url("admin", "/latency")).json()["series"]
    sketch = LatencySketch()
    for s in series:
        if s["labels"].get("direction") == "inbound" and "rt_route" not in s["labels"]:
            sketch.merge(LatencySketch.from_json(s["sketch"]))
    assert sketch.count == 200
    from bisect import bisect_left

    from shoal.proxy.metrics import LATENCY_BOUNDS

    for name, q in (("p50", 0.5), ("p99", 0.99)):
        seen, proxy = float(found[name]), sketch.quantile(q)
        # never less than the server's time (but for the sketch's 1 % and rounding)
        assert seen >= proxy * 0.98 - 0.5, (name, seen, proxy)
        bucket_seen = bisect_left(LATENCY_BOUNDS, seen)
        bucket_proxy = bisect_left(LATENCY_BOUNDS, proxy)
        assert bucket_seen - bucket_proxy in (0, 1), (name, seen, proxy)


def test_interval_errors_and_headers(app):
    test_app, addr = app
    r = load(f"http://{addr}/status/503", "--interval", "0.5", "--duration", "2s",
             "-H", "X-Load: yes", "-X", "POST", "-d", "abc")
    assert r.returncode == 0, r.stderr
    assert "4 sent" in r.stdout and "4 errors" in r.stdout and "503=4" in r.stdout
    assert all(r_["method"] == "POST" and r_["size"] == 3 and ("x-load", "yes") in r_["headers"]
               for r_ in test_app.requests)


def test_ctrl_c_prints_the_summary_so_far(app):
    test_app, addr = app
    proc = subprocess.Popen([SHOAL, "load", f"http://{addr}/", "--rate", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(test_app.requests) >= 10, timeout=30, what="some load")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "requests:" in out and "Traceback" not in err


def test_bad_flags():
    assert load("ftp://x").returncode == 2
    r = load("http://127.0.0.1:1/", "--rate", "5", "--interval", "1")
    assert r.returncode == 2 and "mutually exclusive" in r.stderr
    r = load("http://127.0.0.1:1/", "--duration", "soon")
    assert r.returncode == 2 and "not a duration" in r.stderr
    r = load("http://127.0.0.1:1/", "--rate", "5", "--duration", "1s")  # nothing listens
    assert r.returncode == 0 and "5 errors" in r.stdout
