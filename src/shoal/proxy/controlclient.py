"""A small HTTP/1.1 client (h11) for the control plane API: requests and NDJSON streams.

The proxy talks to the control plane rarely (a certificate a day, one watch per
service), so this stays tiny and dependency-free rather than pulling in httpx.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import h11

MAX_RESPONSE = 4 * 1024 * 1024


class ControlError(Exception):
    """The control plane could not be reached or refused a request."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ControlClient:
    """``await client.request("POST", "/api/v1/identity/certify", {...})``."""

    def __init__(self, url: str, token: str = "", timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"control plane URL {url!r} must be http://HOST:PORT")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.token = token
        self.timeout = timeout

    def _headers(self, body: bytes | None) -> list[tuple[str, str]]:
        h = [("host", f"{self.host}:{self.port}"), ("accept", "application/json")]
        if self.token:
            h.append(("authorization", f"Bearer {self.token}"))
        if body is not None:
            h += [("content-type", "application/json"), ("content-length", str(len(body)))]
        return h

    async def _open(self, method: str, path: str, body: bytes | None
                    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection,
                               h11.Response]:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.timeout)
        except (OSError, TimeoutError) as e:
            raise ControlError(f"control plane unreachable: {e}") from None
        conn = h11.Connection(h11.CLIENT)
        writer.write(conn.send(h11.Request(method=method, target=path,
                                           headers=self._headers(body))))
        if body is not None:
            writer.write(conn.send(h11.Data(data=body)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(reader.read(65536), self.timeout)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                return reader, writer, conn, event
            if isinstance(event, h11.ConnectionClosed):
                writer.close()
                raise ControlError("control plane closed the connection")

    async def request(self, method: str, path: str, payload: Any = None,
                      query: dict[str, str] | None = None) -> Any:
        """Send a JSON request; return the decoded JSON body or raise ControlError."""
        if query:
            path = f"{path}?{urlencode(query)}"
        body = json.dumps(payload).encode() if payload is not None else None
        try:
            reader, writer, conn, resp = await self._open(method, path, body)
            data = bytearray()
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await asyncio.wait_for(reader.read(65536), self.timeout))
                elif isinstance(event, h11.Data):
                    data += event.data
                    if len(data) > MAX_RESPONSE:
                        raise ControlError("control plane response too large")
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
            writer.close()
        except (OSError, TimeoutError, h11.ProtocolError) as e:
            raise ControlError(f"control plane request failed: {e}") from None
        if resp.status_code >= 400:
            raise ControlError(_message(bytes(data)) or f"status {resp.status_code}",
                               resp.status_code)
        return json.loads(data) if data else None

    async def stream(self, path: str, query: dict[str, str] | None = None,
                     idle_timeout: float = 30.0) -> AsyncIterator[Any]:
        """Yield one decoded JSON value per line of an NDJSON response."""
        if query:
            path = f"{path}?{urlencode(query)}"
        reader, writer, conn, resp = await self._open("GET", path, None)
        try:
            if resp.status_code >= 400:
                raise ControlError(f"watch refused: status {resp.status_code}",
                                   resp.status_code)
            pending = b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await asyncio.wait_for(reader.read(65536), idle_timeout)
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Data):
                    pending += event.data
                    if len(pending) > MAX_RESPONSE:
                        raise ControlError("watch line too long")
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield json.loads(line)
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    raise ControlError("watch ended")
        except (OSError, TimeoutError, h11.ProtocolError, ValueError) as e:
            raise ControlError(f"watch failed: {e}") from None
        finally:
            writer.close()


def _message(body: bytes) -> str:
    try:
        value = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:200]
    if isinstance(value, dict):
        return str(value.get("error") or value.get("detail") or value)[:200]
    return str(value)[:200]
