"""The supervisor's line to the control plane: pod reports, deletions, tokens.

The address and token are re-read from $SHOAL_HOME after every failure, so a
supervisor finds a control plane that came back (even on another port). Failures
are logged once per outage and otherwise ignored: the pods keep running.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from .state import Home, read_json

log = logging.getLogger("shoal.supervisor")


class Uplink:
    def __init__(self, home: Home, api: str | None = None, token: str | None = None) -> None:
        self.home = home
        self.fixed_api, self.fixed_token = api, token
        self.client: httpx.AsyncClient | None = None
        self.url: str | None = None
        self.down = False

    def _connect(self) -> httpx.AsyncClient | None:
        if self.client is not None:
            return self.client
        try:
            api = self.fixed_api or (read_json(self.home.control, {}) or {}).get("api")
            token = self.fixed_token or self.home.token_file.read_text().strip()
        except Exception:
            return None
        if not api:
            return None
        self.url = api if api.startswith("http") else f"http://{api}"
        self.client = httpx.AsyncClient(base_url=self.url, trust_env=False, timeout=5.0,
                                        headers={"authorization": f"Bearer {token}"})
        return self.client

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """The decoded answer, or None when the control plane is unreachable or says no."""
        client = self._connect()
        if client is None:
            return self._failed(f"{method} {path}: control plane address unknown")
        try:
            r = await client.request(method, path, json=body)
        except httpx.HTTPError as e:
            await self._reset()
            return self._failed(f"{method} {path}: {e!r}")
        if self.down:
            log.warning("control plane reachable again at %s", self.url)
            self.down = False
        if r.status_code >= 400:
            log.warning("%s %s: %s %s", method, path, r.status_code, r.text[:200])
            return None
        return r.json()

    def _failed(self, message: str) -> None:
        if not self.down:
            log.warning("control plane unreachable: %s", message)
            self.down = True
        return None

    async def _reset(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def report_pod(self, namespace: str, pod: str, report: dict[str, Any]) -> Any:
        return await self.call("PUT", f"/api/v1/namespaces/{namespace}/pods/{pod}", report)

    async def delete_pod(self, namespace: str, pod: str) -> Any:
        return await self.call("DELETE", f"/api/v1/namespaces/{namespace}/pods/{pod}")

    async def bootstrap_token(self, namespace: str, pod: str) -> str | None:
        answer = await self.call("POST", "/api/v1/identity/tokens",
                                 {"namespace": namespace, "pod": pod})
        return answer.get("token") if isinstance(answer, dict) else None

    async def close(self) -> None:
        await self._reset()
