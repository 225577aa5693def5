"""A small ASGI app served by uvicorn in tests: echo, status, sleep, headers, websocket."""

from __future__ import annotations

import asyncio
import json
import random
from urllib.parse import parse_qs


class TestApp:
    """Records what it saw so tests can assert on what the proxy forwarded."""

    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []
        self.disconnects = 0

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "websocket":
            await self.websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        query = parse_qs(scope.get("query_string", b"").decode())
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        record = {"method": scope["method"], "path": path, "headers": headers}
        self.requests.append(record)
        size = 0
        body = bytearray()
        keep = path.startswith("/echo")
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                self.disconnects += 1
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if keep:
                body += chunk
            if not msg.get("more_body"):
                break
        record["size"] = size
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            await self.reply(send, code, b"status %d\n" % code)
        elif path == "/sleep":  # ms=100, or ms=20-200 for a uniform spread
            lo, _, hi = query.get("ms", ["100"])[0].partition("-")
            ms = random.uniform(float(lo), float(hi)) if hi else float(lo)
            await asyncio.sleep(ms / 1000)
            await self.reply(send, 200, b"slept\n")
        elif path == "/echo":
            await self.reply(send, 200, bytes(body))
        elif path == "/count":
            await self.reply(send, 200, str(size).encode())
        elif path == "/headers":
            await self.reply(send, 200, json.dumps(headers).encode(), "application/json")
        elif path == "/stream":
            n = int(query.get("chunks", ["5"])[0])
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain")]})
            for i in range(n):
                await send({"type": "http.response.body", "body": b"chunk %d\n" % i,
                            "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/nocontent":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            await self.reply(send, 200, b"ok\n")

    async def reply(self, send, status: int, body: bytes,  # type: ignore[no-untyped-def]
                    ctype: str = "text/plain") -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def websocket(self, scope, receive, send):  # type: ignore[no-untyped-def]
        msg = await receive()
        if msg["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("text") is not None:
                await send({"type": "websocket.send", "text": msg["text"]})
            else:
                await send({"type": "websocket.send", "bytes": msg.get("bytes") or b""})
