"""A store killed with SIGKILL in the middle of ingesting loses at most the last scrape."""

import os
import signal
import subprocess
import sys
import textwrap

from shoal.viz.embedded import EmbeddedBackend
from shoal.viz.queries import Queries
from shoal.viz.store import Store

WRITER = textwrap.dedent("""
    import sys
    from shoal.viz.store import Store
    from shoal.viz.synthetic import Mesh, SyntheticProxy, workload
    store = Store(sys.argv[1])
    proxies = [SyntheticProxy(workload("ns", f"d{i}"), [workload("ns", "db")], seed=i)
               for i in range(4)]
    mesh = Mesh(store, proxies, start=1_700_000_000.0, interval=10.0)
    n = 0
    while True:
        for p in proxies:
            p.traffic(3)
            store.ingest(p.me, mesh.now, mesh._parse(p.exposition()), p.sketches())
            n += 1
            print(n, mesh.now, flush=True)  # committed
        mesh.now += mesh.interval
""")


def test_sigkill_mid_ingest_loses_at_most_the_last_scrape(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    committed = 0
    try:
        for line in proc.stdout:
            committed = int(line.split()[0])
            if committed >= 150:  # past minute and history rollups, mid-stream
                break
        proc.send_signal(signal.SIGKILL)
        # lines already in the pipe were committed too
        for line in proc.stdout.read().splitlines():
            committed = max(committed, int(line.split()[0]))
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL

    store = Store(tmp_path)
    assert store.db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    records = store.db.execute("SELECT count(*) FROM records WHERE tier=0").fetchone()[0]
    # every scrape reported as committed is there; at most one more got in before the kill
    assert committed <= records <= committed + 1
    last = store.now
    q = Queries(EmbeddedBackend(store, 10.0, clock=lambda: last))
    rows = q.stat("deploy", "ns", window="1m")
    assert {r.name for r in rows} == {"d0", "d1", "d2", "d3"}
    assert all(r.requests > 0 and r.latency_ms_p50 for r in rows)
    # and it carries on where it stopped
    store.ingest({"namespace": "ns", "pod": "late"}, last + 10, [])
    store.close()
