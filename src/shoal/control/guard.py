"""BodyLimit: an ASGI middleware that refuses request bodies over a cap with 413.

The body is read whole before the app runs (bodies here are small JSON), so an
oversized request is refused before any handler sees a byte of it, whether it
declared a Content-Length or came chunked.
"""

from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]
DRAIN_LIMIT = 16 << 20  # past this, a client is cut off rather than read


class BodyLimit:
    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            if declared.isdigit() and int(declared) <= DRAIN_LIMIT:
                await _drain(receive, DRAIN_LIMIT)
            await self._refuse(send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                if more:
                    await _drain(receive, DRAIN_LIMIT - size)
                await self._refuse(send)
                return
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _refuse(self, send: Any) -> None:
        payload = json.dumps({"error": f"request body over {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


async def _drain(receive: Any, budget: int) -> None:
    # Reading what the client still sends lets it see the 413: closing a socket with
    # unread data makes the kernel answer with a reset instead.
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _replay(messages: list[dict[str, Any]], receive: Any) -> Any:
    async def replay() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        return await receive()
    return replay
