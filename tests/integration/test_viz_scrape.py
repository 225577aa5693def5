"""The scraper against real HTTP servers on loopback: good, hanging, garbage, huge."""

import asyncio
import json
import time

from shoal.viz.embedded import EmbeddedBackend
from shoal.viz.queries import Queries
from shoal.viz.scrape import ScrapeConfig, Scraper, Target
from shoal.viz.store import Store
from shoal.viz.synthetic import SyntheticProxy, workload

WEIRD = 'caf\u00e9 "quoted" back\\slash\nnew line \ufffd'


class Admin:
    """A proxy admin server whose behaviour per path is chosen by the test."""

    def __init__(self, routes):
        self.routes = routes
        self.server = None
        self.hung: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def handle(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            route = self.routes.get(path)
            if route is None:
                writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            elif route == "hang":
                self.hung.append(writer)
                await asyncio.Event().wait()
            elif route == "drip":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n")
                while True:
                    writer.write(b"#")
                    await writer.drain()
                    await asyncio.sleep(0.05)
            elif isinstance(route, tuple):  # no content-length: only the running total stops it
                writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")
                for _ in range(route[1] // 65536 + 1):
                    writer.write(b"m{a=\"1\"} 1\n" * 5958)
                    await writer.drain()
            else:
                body = route() if callable(route) else route
                writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
                             % len(body) + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client gave up (deadline) or the test is over
        finally:
            writer.close()

    async def stop(self):
        self.server.close()
        for w in self.hung:
            w.close()


def good_proxy():
    me = workload("emojivoto", "web")
    p = SyntheticProxy(me, [workload("emojivoto", "emoji")], [workload("emojivoto", "vote")])
    p.traffic(5)
    weird = p.metrics.traffic_stats({"direction": "outbound", "authority": WEIRD,
                                     "target_addr": "10.0.0.1:80", "tls": "no_identity",
                                     "no_tls_reason": "loopback"})
    weird.requests += 1
    weird.response_ended(200, "success")
    return me, p


class Admins:
    def __init__(self):
        self.started = []

    async def __call__(self, routes):
        a = Admin(routes)
        self.started.append(a)
        return await a.start()

    async def stop(self):
        for a in self.started:
            await a.stop()


def run(scenario, tmp_path):
    async def main():
        admins = Admins()
        try:
            await scenario(tmp_path, admins)
        finally:
            await admins.stop()
    asyncio.run(main())


async def one_bad_proxy(tmp_path, admins):
    me, proxy = good_proxy()
    metrics = proxy.metrics.exposition()
    good = await admins({"/metrics": metrics,
                         "/latency": json.dumps(proxy.metrics.latency_json()).encode()})
    no_latency = await admins({"/metrics": metrics})
    targets = [
        Target(good, me),
        Target(no_latency, workload("emojivoto", "web", 1)),
        Target(await admins({"/metrics": "hang", "/latency": "hang"}), workload("x", "hang")),
        Target(await admins({"/metrics": "drip"}), workload("x", "drip")),
        Target(await admins({"/metrics": b"\x00\xffgarbage {{{ <html>\n" * 100}),
               workload("x", "garbage")),
        Target(await admins({"/metrics": b"m 1\n" * 2_600_000}), workload("x", "huge")),
        Target(await admins({"/metrics": ("stream", 10_000_000)}), workload("x", "stream")),
        Target("127.0.0.1:1", workload("x", "refused")),
    ]
    store = Store(tmp_path)
    # 1 MiB: ~20 times the good proxy's exposition, a tenth of the huge ones
    scraper = Scraper(store, targets, ScrapeConfig(interval=2.0, timeout=2.0,
                                                   max_bytes=1024 * 1024))
    started = time.monotonic()
    health = await scraper.scrape_round()
    elapsed = time.monotonic() - started
    await scraper.aclose()
    assert elapsed < 3.5  # every target bounded by the 2 s deadline, concurrently

    by_pod = {k.split("/")[1].split("-")[0]: h for k, h in health.items() if k[0] == "x"}
    ok = health["emojivoto/" + me["pod"]]
    assert ok.healthy and ok.samples > 100 and ok.last_error is None
    assert health["emojivoto/" + workload("emojivoto", "web", 1)["pod"]].healthy
    assert "timed out after 2s" in by_pod["hang"].last_error
    assert "timed out" in by_pod["drip"].last_error
    assert "unparsable" in by_pod["garbage"].last_error or "malformed" in by_pod["garbage"].last_error
    assert "exceeds the limit" in by_pod["huge"].last_error
    assert "exceeds the limit" in by_pod["stream"].last_error
    assert by_pod["refused"].last_error and by_pod["refused"].consecutive_failures == 1
    assert not by_pod["hang"].healthy and by_pod["hang"].to_json()["healthy"] is False

    # workload labels were attached at scrape time, odd label values survived
    [weird] = [s for s in store.select("response_total", [])
               if s.labels.get("authority") == WEIRD and s.labels["pod"] == me["pod"]]
    assert weird.labels["pod"] == me["pod"] and weird.labels["namespace"] == "emojivoto"
    assert store.select("response_latency_ms_sketch", [])  # /latency was read


async def scrape_loop(tmp_path, admins):
    me, proxy = good_proxy()
    addr = await admins({"/metrics": lambda: proxy.metrics.exposition(),
                         "/latency": lambda: json.dumps(proxy.metrics.latency_json()).encode()})
    store = Store(tmp_path)
    clock = [1_700_000_000.0]

    def tick():
        clock[0] += 1.0
        return clock[0]

    scraper = Scraper(store, lambda: [Target(addr, me)], ScrapeConfig(interval=1.0), clock=tick)
    rounds, stop = [], asyncio.Event()
    real_round = scraper.scrape_round

    async def counting_round():
        h = await real_round()
        proxy.traffic(5)
        rounds.append(h)
        if len(rounds) == 3:
            stop.set()
        return h

    scraper.scrape_round = counting_round
    await asyncio.wait_for(scraper.run(stop), 10)
    await scraper.aclose()
    assert len(rounds) == 3
    backend = EmbeddedBackend(store, 1.0, clock=lambda: clock[0])
    rows = Queries(backend).stat("deploy", "emojivoto", window="10s")
    assert [r.name for r in rows] == ["web"] and rows[0].requests == 2 * 5 * 1


def test_one_bad_proxy_never_stalls_or_spoils_the_others(tmp_path):
    run(one_bad_proxy, tmp_path)


def test_run_scrapes_every_interval_until_stopped(tmp_path):
    run(scrape_loop, tmp_path)
