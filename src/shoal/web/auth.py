"""Who may use the dashboard: session cookies, one-time login tickets, and the
same-origin rules that keep other web pages out.

A session cookie is ``EXPIRY.MAC`` where MAC is an HMAC of the expiry keyed by the
operator token: nothing is stored, a restarted control plane accepts it, and a new
token ends every session. A ticket is a random one-time word that ``shoal dashboard``
asks for and prints inside a URL; it lives in memory for a few minutes.

Requests without a Bearer token come from browsers, so their ``Host`` must be one a
DNS-rebinding page cannot forge (an IP literal, ``localhost``, or a configured name),
and any ``Origin`` must be the request's own host.

>>> s = Sessions("token", now=lambda: 1000.0)
>>> s.valid(s.issue())
True
>>> s.valid("1000000.forged"), s.valid("")
(False, False)
>>> host_allowed("127.0.0.1:50750", ()), host_allowed("[::1]:8084", ())
(True, True)
>>> host_allowed("evil.example:50750", ()), host_allowed("shoal-web:8084", ("shoal-web",))
(False, True)
>>> origin_allowed("http://127.0.0.1:50750", "127.0.0.1:50750")
True
>>> origin_allowed("http://evil.example", "127.0.0.1:50750"), origin_allowed("null", "a:1")
(False, False)
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

COOKIE = "shoal_session"
SESSION_SECONDS = 12 * 3600
TICKET_SECONDS = 300
MAX_TICKETS = 1000


class Sessions:
    """Signed, stateless session cookies plus one-time tickets."""

    def __init__(self, token: str, now: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(b"shoal-dashboard-session\0" + token.encode()).digest()
        self._now = now
        self._tickets: dict[str, float] = {}

    def issue(self) -> str:
        expiry = str(int(self._now() + SESSION_SECONDS))
        return f"{expiry}.{self._mac(expiry)}"

    def valid(self, cookie: str | None) -> bool:
        expiry, _, mac = (cookie or "").partition(".")
        if not expiry.isdigit() or len(expiry) > 12 or not mac:
            return False
        return hmac.compare_digest(mac, self._mac(expiry)) and int(expiry) > self._now()

    def ticket(self) -> str:
        """A one-time login word, valid for TICKET_SECONDS."""
        now = self._now()
        self._tickets = {t: exp for t, exp in self._tickets.items() if exp > now}
        if len(self._tickets) >= MAX_TICKETS:  # a runaway client cannot grow this
            self._tickets.pop(next(iter(self._tickets)))
        word = secrets.token_urlsafe(24)
        self._tickets[word] = now + TICKET_SECONDS
        return word

    def redeem(self, word: str) -> bool:
        expiry = self._tickets.pop(word, None)
        return expiry is not None and expiry > self._now()

    def _mac(self, expiry: str) -> str:
        return hmac.new(self._key, expiry.encode(), hashlib.sha256).hexdigest()


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else ""
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def host_allowed(host: str, names: Iterable[str]) -> bool:
    """A Host header a rebinding attack cannot produce: an IP literal, localhost, or a
    name the operator configured."""
    name = _hostname(host.strip().lower())
    if not name:
        return False
    if name == "localhost" or name in names:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def origin_allowed(origin: str, host: str) -> bool:
    """Same origin: the Origin's host[:port] is the request's Host."""
    parts = urlsplit(origin.strip())
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.strip().lower()


def safe_next(target: str | None) -> str:
    """Where to go after login: a local path only (no ``//host`` or scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") \
            or "\\" in target or any(ord(c) < 32 for c in target):
        return "/"
    return target
