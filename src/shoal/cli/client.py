"""The CLI's client of the control-plane API, shared by every command.

Where the control plane is: ``SHOAL_API`` and ``SHOAL_TOKEN`` when both are set
(another host, a container), else ``$SHOAL_HOME/control.json`` and ``$SHOAL_HOME/token``
(``$SHOAL_HOME`` defaults to ``~/.shoal``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx

from shoal.control.errors import ControlError
from shoal.control.state import Home, read_json

F = TypeVar("F", bound=Callable[..., Any])


class ApiError(ControlError):
    """The control plane could not be reached or refused the request."""

    def __init__(self, message: str, hint: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.hint = hint
        self.status = status


def home_option(f: F) -> F:
    """``--home`` (env ``SHOAL_HOME``, default ``~/.shoal``) -> ``home: Home``."""
    return click.option("--home", "home", envvar="SHOAL_HOME", default="~/.shoal",
                        show_default=True, metavar="DIR",
                        callback=lambda _c, _p, v: Home(Path(v).expanduser()),
                        help="Where shoal keeps its state ($SHOAL_HOME).")(f)


@dataclass(frozen=True)
class Endpoint:
    url: str
    token: str
    from_env: bool = False


def locate(home: Home, env: Mapping[str, str] | None = None) -> Endpoint:
    """Find the API: SHOAL_API + SHOAL_TOKEN, else the control plane recorded in home."""
    env = os.environ if env is None else env
    if env.get("SHOAL_API") and env.get("SHOAL_TOKEN"):
        api = env["SHOAL_API"].rstrip("/")
        return Endpoint(api if "://" in api else f"http://{api}", env["SHOAL_TOKEN"], True)
    info = read_json(home.control, None)
    if not isinstance(info, dict) or not info.get("url"):
        raise ApiError("control plane is not running",
                       hint=f"start it with `shoal up` (looked in {home.root})")
    try:
        token = home.token_file.read_text().strip()
    except OSError:
        raise ApiError("no token found", hint=f"expected {home.token_file}") from None
    return Endpoint(info["url"], token)


class Client:
    """``Client.from_home(home).get("/api/v1/pods", namespace="emojivoto")``"""

    def __init__(self, endpoint: Endpoint, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.endpoint = endpoint
        self.http = httpx.Client(base_url=endpoint.url, timeout=timeout, trust_env=False,
                                 transport=transport,
                                 headers={"authorization": f"Bearer {endpoint.token}"})

    @classmethod
    def from_home(cls, home: Home) -> Client:
        return cls(locate(home))

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        params = {k: v for k, v in params.items() if v is not None}
        try:
            r = self.http.request(method, path, json=body, params=params)
        except httpx.HTTPError as e:
            raise ApiError(f"cannot reach the control plane at {self.endpoint.url}",
                           hint=f"is it running? try `shoal check` ({e.__class__.__name__})"
                           ) from None
        if r.status_code >= 400:
            try:
                message = r.json().get("error") or r.text
            except ValueError:
                message = r.text or r.reason_phrase
            hint = "the token does not match; is SHOAL_TOKEN right?" \
                if r.status_code == 401 else ""
            raise ApiError(str(message), hint=hint, status=r.status_code)
        return r.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, **params)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def close(self) -> None:
        self.http.close()


def fail(error: ControlError) -> int:
    """Print an error (and its hint) to stderr; the exit status to return."""
    click.echo(f"Error: {error.message}", err=True)
    hint = getattr(error, "hint", "")
    if hint:
        click.echo(f"Hint: {hint}", err=True)
    return 1
