"""vote-bot: the demo's load, calling web continuously through the proxy.

Open loop at ``$RATE`` requests per second (default 3): mostly votes for a random
emoji (``:doughnut:`` among them, which fails), now and then the list and the results,
as a browser would. It answers ``GET /`` on ``$PORT`` with its own tally, so the mesh
can probe it like any app.

Run it as ``python -m shoal.demo.vote_bot`` with ``HTTP_PROXY`` set.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter

from shoal.demo.emoji import EMOJI

WEB = os.environ.get("WEB_URL", "http://web.shoalvoto:8080")


def next_request(i: int, rng: random.Random) -> tuple[str, str]:
    """The i-th request: (method, path). Mostly votes; now and then the page, the list
    and the results."""
    if i % 20 == 19:
        return "GET", "/"
    if i % 10 == 9:
        return "GET", "/api/results"
    if i % 5 == 4:
        return "GET", "/api/list"
    return "POST", f"/api/vote?choice={rng.choice(list(EMOJI))}"


async def main(port: int, rate: float) -> None:
    import httpx

    tally: Counter[str] = Counter()

    async def status(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        body = json.dumps(dict(tally)).encode()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(status, "127.0.0.1", port)
    rng = random.Random()
    tasks: set[asyncio.Task[None]] = set()
    async with server, httpx.AsyncClient(base_url=WEB, timeout=10, trust_env=True) as client:

        async def one(method: str, path: str) -> None:
            try:
                r = await client.request(method, path)
                tally[str(r.status_code)] += 1
            except httpx.HTTPError as e:
                tally[type(e).__name__] += 1

        start, i = time.monotonic(), 0
        while True:  # open loop: each request leaves on schedule, whatever web does
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            task = asyncio.get_running_loop().create_task(one(*next_request(i, rng)),
                                                          name=f"vote-{i}")
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1


if __name__ == "__main__":
    asyncio.run(main(int(os.environ.get("PORT", "8080")), float(os.environ.get("RATE", "3"))))
