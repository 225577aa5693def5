"""Metrics store micro-benchmark: ingest cost, size per day, query latency, memory.

    python -m bench.store            # full: 50 workloads with 6 h of data (~3 min)
    python bench/store.py --quick    # 1 h of data, for a smoke run

Proxies are real ``shoal.proxy.metrics.ProxyMetrics`` filled through their own
counting code (``shoal.viz.synthetic``); the store is the product's. Prints one
table per part; numbers are medians. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

from shoal.proxy.latency import LatencySketch
from shoal.viz.embedded import EmbeddedBackend
from shoal.viz.exposition import Sample, parse, parse_labels
from shoal.viz.queries import Queries
from shoal.viz.store import Store
from shoal.viz.synthetic import SyntheticProxy, workload

T0 = 1_700_000_000.0


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def mib(n: float) -> str:
    return f"{n / 1048576:.1f} MiB"


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def heavy_proxy(seed: int = 0) -> SyntheticProxy:
    """20 authorities x 4 status codes outbound, 3 meshed clients inbound."""
    peers = [workload(f"ns{i % 4}", f"svc{i}") for i in range(20)]
    clients = [workload("ns0", f"client{i}") for i in range(3)]
    return SyntheticProxy(workload("ns0", "heavy"), peers, clients,
                          codes=(200, 200, 200, 404, 500, 503), seed=seed)


def demo_mesh(n: int, calls: int = 3) -> list[SyntheticProxy]:
    """``n`` workloads in n/5 namespaces, each calling the next ``calls``."""
    wl = [workload(f"ns{i // 5}", f"d{i}") for i in range(n)]
    return [SyntheticProxy(wl[i], [wl[(i + k) % n] for k in range(1, calls + 1)],
                           [wl[(i - k) % n] for k in range(1, calls + 1)], seed=i)
            for i in range(n)]


# -- engines compared on the same scrapes ------------------------------------


class SqliteRows:
    """The textbook layout: a series table and one (series_id, ts, value) row per sample."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(
            "CREATE TABLE series(id INTEGER PRIMARY KEY, key TEXT UNIQUE);"
            "CREATE TABLE samples(series INTEGER, ts REAL, value REAL,"
            " PRIMARY KEY(series, ts)) WITHOUT ROWID;")
        self.ids: dict[tuple[str, str], int] = {}

    def ingest(self, ts: float, samples) -> None:
        db, ids, rows = self.db, self.ids, []
        db.execute("BEGIN")
        for s in samples:
            sid = ids.get((s.name, s.raw_labels))
            if sid is None:
                key = s.name + json.dumps(parse_labels(s.raw_labels), sort_keys=True)
                sid = ids[(s.name, s.raw_labels)] = db.execute(
                    "INSERT INTO series(key) VALUES (?)", (key,)).lastrowid
            rows.append((sid, ts, s.value))
        db.executemany("INSERT INTO samples VALUES (?,?,?)", rows)
        db.execute("COMMIT")

    def size(self) -> int:
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return os.path.getsize(self.db.execute("PRAGMA database_list").fetchone()[2])


class DuckRows:
    """The same layout in DuckDB (optional: only when duckdb is installed)."""

    def __init__(self, path: str) -> None:
        import duckdb
        self.path = path
        self.db = duckdb.connect(path)
        self.db.execute("CREATE TABLE samples(series INTEGER, ts DOUBLE, value DOUBLE)")
        self.ids: dict[tuple[str, str], int] = {}

    def ingest(self, ts: float, samples) -> None:
        ids = self.ids
        rows = []
        for s in samples:
            sid = ids.get((s.name, s.raw_labels))
            if sid is None:
                sid = ids[(s.name, s.raw_labels)] = len(ids)
            rows.append((sid, ts, s.value))
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO samples VALUES (?,?,?)", rows)
        self.db.execute("COMMIT")

    def size(self) -> int:
        self.db.execute("CHECKPOINT")
        return os.path.getsize(self.path)


def part_ingest(scrapes: int) -> dict[str, object]:
    proxy = heavy_proxy()
    tmp = tempfile.mkdtemp(prefix="shoal-bench-")
    store = Store(os.path.join(tmp, "records"))
    rows = SqliteRows(os.path.join(tmp, "rows.sqlite"))
    try:
        duck: DuckRows | None = DuckRows(os.path.join(tmp, "rows.duckdb"))
    except ImportError:
        duck = None
    expo, prs, ing, ing_rows, ing_duck, sizes = [], [], [], [], [], []
    n_samples = n_sketches = body = 0
    for i in range(scrapes):
        proxy.traffic(20)
        t = time.thread_time()
        text = proxy.exposition()
        doc = json.dumps(proxy.metrics.latency_json())
        expo.append(time.thread_time() - t)
        t = time.thread_time()
        samples = parse(text)
        sketches = [(s["labels"], s["sketch"]) for s in json.loads(doc)["series"]]
        prs.append(time.thread_time() - t)
        ts = T0 + 10 * i
        t = time.thread_time()
        store.ingest(proxy.me, ts, samples, sketches)
        ing.append(time.thread_time() - t)
        t = time.thread_time()
        rows.ingest(ts, samples)
        ing_rows.append(time.thread_time() - t)
        if duck is not None and i < 6:
            t = time.thread_time()
            duck.ingest(ts, samples)
            ing_duck.append(time.thread_time() - t)
        n_samples, n_sketches, body = len(samples), len(sketches), len(text) + len(doc)
        if i == 9:
            store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            sizes.append((store.size_bytes(), rows.size()))
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    per_scrape = (store.size_bytes() - sizes[0][0]) / (scrapes - 10)
    per_scrape_rows = (rows.size() - sizes[0][1]) / (scrapes - 10)
    out = {
        "series per scrape": n_samples, "sketch series": n_sketches,
        "exposition + latency body": f"{body / 1024:.0f} KiB",
        "proxy: build exposition": ms(statistics.median(expo)),
        "parse (fast path)": ms(statistics.median(prs)),
        "ingest, chosen store (records + sketch deltas)": ms(statistics.median(ing[1:])),
        "ingest, SQLite row per sample (counters only)": ms(statistics.median(ing_rows[1:])),
        "disk per scrape, chosen store": f"{per_scrape / 1024:.1f} KiB",
        "disk per scrape, SQLite rows (counters only)": f"{per_scrape_rows / 1024:.1f} KiB",
    }
    if duck is not None and len(ing_duck) > 2:
        out["ingest, DuckDB row per sample (executemany)"] = ms(statistics.median(ing_duck[1:]))
    store.close()
    if duck is not None:
        duck.db.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def part_demo_size(workloads: int = 20, hours: float = 2.0) -> dict[str, object]:
    """Disk use of a 20-workload demo scraped every 10 s, measured over ``hours``."""
    tmp = tempfile.mkdtemp(prefix="shoal-bench-demo-")
    store = Store(tmp)
    rnd = random.Random(2)
    proxies = [FastProxy(p, rnd) for p in demo_mesh(workloads, calls=2)]
    now = T0
    for _ in range(int(hours * 360)):
        for p in proxies:
            store.ingest(p.me, now, *p.scrape(10.0, 10))
        now += 10.0
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    payload = dict(store.db.execute(
        "SELECT tier, sum(length(vals) + coalesce(length(cold), 0)) FROM records "
        "GROUP BY tier").fetchall())
    for tier, n in store.db.execute("SELECT tier, sum(length(data)) FROM sketches "
                                    "GROUP BY tier"):
        payload[tier] = payload.get(tier, 0) + n
    overhead = store.size_bytes() / sum(payload.values())
    per_day = 24 / hours * overhead
    raw_day = (payload.get(0, 0) + payload.get(1, 0)) * per_day
    hist_day = payload.get(2, 0) * per_day
    cfg = store.config
    steady = raw_day * cfg.raw_retention / 86400 + hist_day * cfg.history_retention / 86400
    series = len(store.series)
    store.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "series per proxy": series // workloads,
        "written per day at 10 s (raw + minute rollups)": mib(raw_day),
        "history per day (10 min steps)": mib(hist_day),
        "on disk, steady state (6 h raw + 7 d history)": mib(steady),
        "file bytes per payload byte (B-tree, free pages)": f"{overhead:.2f}",
    }


class FastProxy:
    """A proxy's scrape without re-rendering its exposition: the real first scrape,
    then counters advanced by random rates and sketches fed new observations.
    Only for filling hours of history quickly; ingest costs are measured above."""

    def __init__(self, proxy: SyntheticProxy, rnd: random.Random) -> None:
        proxy.traffic(5)
        self.me = proxy.me
        self.rnd = rnd
        self.samples = parse(proxy.exposition())
        self.rates = [rnd.uniform(0.2, 2.0) if s.counter else 0.0 for s in self.samples]
        self.labels = [labels for labels, _ in proxy.sketches()]
        self.sketches = [LatencySketch() for _ in self.labels]

    def scrape(self, seconds: float, observations: int):
        r = self.rnd
        self.samples = [Sample(s.name, s.raw_labels, s.value + int(rate * seconds * r.random()),
                               s.counter) if rate else s
                        for s, rate in zip(self.samples, self.rates, strict=True)]
        for sk in self.sketches:
            for _ in range(observations):
                sk.add(r.lognormvariate(3.0, 1.0))
        return self.samples, [(lab, sk.to_json())
                              for lab, sk in zip(self.labels, self.sketches, strict=True)]


def fill(directory: str, workloads: int, hours: float) -> float:
    """``hours`` of a ``workloads`` mesh: every 60 s, then the last 30 min every 10 s."""
    store = Store(directory)
    rnd = random.Random(1)
    proxies = [FastProxy(p, rnd) for p in demo_mesh(workloads)]
    now = T0
    rounds = [(60.0, 20)] * int(max(0.0, hours - 0.5) * 60) + [(10.0, 4)] * 180
    for interval, obs in rounds:
        for p in proxies:
            samples, sketches = p.scrape(interval, obs)
            store.ingest(p.me, now, samples, sketches)
        now += interval
    store.close()
    return now - 10.0


def timed(fn, runs: int = 5) -> tuple[float, float, float]:
    """(cold CPU, warm CPU median, warm wall median) seconds."""
    t = time.thread_time()
    fn()
    cold = time.thread_time() - t
    warm, wall = [], []
    for _ in range(runs):
        t, w = time.thread_time(), time.perf_counter()
        fn()
        warm.append(time.thread_time() - t)
        wall.append(time.perf_counter() - w)
    return cold, statistics.median(warm), statistics.median(wall)


def part_queries(directory: str, now: float) -> dict[str, object]:
    """Runs in a fresh process: what the control plane holds with this data open."""
    rss0 = rss_mib()
    store = Store(directory)
    rss_open = rss_mib()
    q = Queries(EmbeddedBackend(store, 10.0, clock=lambda: now))
    cases = {
        "stat deploy -A -t 1m": lambda: q.stat("deploy", None, window="1m"),
        "stat deploy -A -t 1h": lambda: q.stat("deploy", None, window="1h"),
        "stat deploy -A -t 6h": lambda: q.stat("deploy", None, window="6h"),
        "stat po -n ns3 -t 1m": lambda: q.stat("po", "ns3", window="1m"),
        "stat deploy -n ns3 --to deploy/d17": lambda: q.stat("deploy", "ns3", to="deploy/d17"),
        "stat svc -A -t 1m": lambda: q.stat("svc", None, window="1m"),
        "edges deploy -A": lambda: q.edges("deploy", None),
        "series rps by deploy, 1h step 1m": lambda: q.series(
            "response_total", {"direction": "inbound"}, start=now - 3600, end=now, step=60,
            by=("deployment",)),
        "stat_series deploy/d7, 6h step 10m": lambda: q.stat_series(
            "deploy", "ns1", "d7", start=now - 6 * 3600 + 600, end=now, step=600),
    }
    out: dict[str, object] = {}
    for name, fn in cases.items():
        cold, warm, wall = timed(fn)
        out[name] = f"{ms(warm)} CPU warm ({ms(cold)} cold; wall {ms(wall)})"
    out["RSS: interpreter + imports"] = f"{rss0:.0f} MiB"
    out["RSS: store opened"] = f"{rss_open:.0f} MiB"
    out["RSS: after the queries"] = f"{rss_mib():.0f} MiB"
    out["series held"] = len(store.series)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    out["store on disk"] = mib(store.size_bytes())
    return out


def show(title: str, rows: dict[str, object]) -> None:
    print(f"\n## {title}")
    width = max(len(k) for k in rows)
    for k, v in rows.items():
        print(f"  {k:<{width}}  {v}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 h of data instead of 6 h")
    ap.add_argument("--workloads", type=int, default=50)
    ap.add_argument("--skip-ingest", action="store_true", help="only the query part")
    ap.add_argument("--skip-queries", action="store_true", help="only ingest and size")
    ap.add_argument("--query-only", nargs=2, metavar=("DIR", "NOW"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.query_only:
        print(json.dumps(part_queries(args.query_only[0], float(args.query_only[1]))))
        return 0
    print("# shoal metrics store benchmark")
    if not args.skip_ingest:
        show("Ingest, one proxy with 20 authorities (CPU per scrape, median of 60)",
             part_ingest(60))
        show("Store size, 20-workload demo (2 calls each, 1 rps per label set)",
             part_demo_size())
    if args.skip_queries:
        return 0
    hours = 1.0 if args.quick else 6.0
    tmp = tempfile.mkdtemp(prefix="shoal-bench-q-")
    try:
        return _fill_and_query(tmp, args.workloads, hours)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fill_and_query(tmp: str, workloads: int, hours: float) -> int:
    t = time.perf_counter()
    now = fill(tmp, workloads, hours)
    print(f"\n(filled {hours:g} h for {workloads} workloads in "
          f"{time.perf_counter() - t:.0f} s)", flush=True)
    res = subprocess.run([sys.executable, os.path.abspath(__file__), "--query-only", tmp,
                          repr(now)], capture_output=True, text=True, check=True)
    show(f"Queries, {workloads} workloads, {hours:g} h of data (fresh process)",
         json.loads(res.stdout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
