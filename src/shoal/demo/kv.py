"""kv: a tiny key-value server over raw TCP, so the demo has a non-HTTP dependency.

One command per line, one reply line each::

    INCR key      ->  :7          the new value
    SCAN          ->  *a=3 b=1    every key with its value
    PING          ->  +PONG
    anything else ->  -ERR unknown command

Run it as ``python -m shoal.demo.kv`` (listens on ``$PORT``).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter


def reply(store: Counter[str], line: str) -> str:
    """The reply to one command line (pure, for tests)."""
    words = line.split()
    if len(words) == 2 and words[0].upper() == "INCR":
        store[words[1]] += 1
        return f":{store[words[1]]}"
    if words == ["SCAN"]:
        return "*" + " ".join(f"{k}={v}" for k, v in sorted(store.items()))
    if words == ["PING"]:
        return "+PONG"
    return "-ERR unknown command"


async def main(port: int) -> None:
    store: Counter[str] = Counter()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(reply(store, line.decode(errors="replace")).encode() + b"\n")
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(os.environ.get("PORT", "6379"))))
