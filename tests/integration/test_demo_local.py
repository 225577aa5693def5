"""`shoal demo` starts, shows traffic moving, and stops without leaving processes."""

from __future__ import annotations

import os
import re
import socket
import subprocess

from tests.support import SHOAL


def test_demo_runs_and_cleans_up(tmp_path):
    env = {**os.environ, "SHOAL_HOME": str(tmp_path)}
    r = subprocess.run([SHOAL, "demo", "--duration", "5", "--rate", "20"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "shoal demo is running." in r.stdout
    counts = [int(n) for n in re.findall(r"web -> api: (\d+) responses", r.stdout)]
    assert counts and counts[-1] > 10 and counts == sorted(counts)
    assert "shoal demo stopped." in r.stdout
    # every listener it printed is closed again: the proxies are gone
    for host, port in re.findall(r"http://([\d.]+):(\d+)/metrics", r.stdout):
        with socket.socket() as s:
            assert s.connect_ex((host, int(port))) != 0
