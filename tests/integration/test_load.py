"""`shoal load`: open loop at a fixed rate, counted by the target; errors counted;
Ctrl-C prints the summary so far; bad flags are clear errors."""

from __future__ import annotations

import re
import signal
import subprocess

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
