"""The dashboard's server side: login, the built single-page app, and the browser
guard, added to the control plane's API app by ``install(app, plane)``.

    GET  /login[?ticket=T&next=/path]   the login page, or a one-time ticket -> session
    POST /login                         form ``token`` (+ ``next``) -> session cookie
    POST /logout                        clears the cookie
    POST /api/v1/dashboard/tickets      (operator) a one-time login URL for `shoal dashboard`
    GET  /assets/...                    the built bundle (hashed names, cached for a year)
    GET  /anything-else                 index.html with a session, else a redirect to /login

The pages call the same JSON API as the CLI with the session cookie in place of the
Bearer token. Every response carries a CSP without inline scripts or styles.
"""

from __future__ import annotations

import html
import json
import logging
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from .auth import COOKIE, SESSION_SECONDS, Sessions, host_allowed, origin_allowed, safe_next

log = logging.getLogger("shoal.web")

UI = Path(__file__).parent / "ui"
DIST = UI / "dist"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin")]
MAX_LOGIN_BODY = 4096


def install(app: FastAPI, plane: Any, operator: Any, names: tuple[str, ...] = ()) -> None:
    """Add the dashboard to ``app``; call after every API route is registered."""
    sessions = Sessions(plane.token)
    app.state.sessions = sessions
    app.add_middleware(BrowserGuard, names=names)
    if built():  # else the component shows as not running here, and the pages say why
        plane.probes["web"] = lambda: (True, "serving the dashboard")

    @app.post("/api/v1/dashboard/tickets", dependencies=[Depends(operator)],
              tags=["dashboard"])
    async def ticket(request: Request) -> dict[str, Any]:
        """A one-time login path (valid five minutes) for `shoal dashboard`."""
        return {"path": f"/login?ticket={sessions.ticket()}", "expires_in": 300}

    @app.get("/login", include_in_schema=False)
    async def login_page(request: Request, ticket: str = "", next: str = "/") -> Response:
        target = safe_next(next)
        if ticket:
            if sessions.redeem(ticket[:100]):
                return _signed_in(sessions, target)
            log.warning("dashboard: refused an unknown or used login ticket from %s",
                        _peer(request))
            return _login_html("That link was already used or has expired; run "
                               "`shoal dashboard` for a new one, or paste the token.",
                               target, 401)
        if sessions.valid(request.cookies.get(COOKIE)):
            return RedirectResponse(target, 303)
        return _login_html("", target)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_LOGIN_BODY:
            return _login_html("The form was too large.", "/", 413)
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
        token = (form.get("token") or [""])[0].strip()
        target = safe_next((form.get("next") or ["/"])[0])
        if token and secrets.compare_digest(token.encode(), plane.token.encode()):
            return _signed_in(sessions, target)
        log.warning("dashboard: wrong token from %s", _peer(request))
        return _login_html("Wrong token. It is in $SHOAL_HOME/token.", target, 401)

    @app.post("/logout", include_in_schema=False)
    async def logout() -> Response:
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @app.get("/login.css", include_in_schema=False)
    async def login_css() -> Response:
        return FileResponse(Path(__file__).parent / "login.css", media_type="text/css")

    app.mount("/assets", _Assets(), name="assets")

    @app.get("/{path:path}", include_in_schema=False)
    async def page(request: Request, path: str) -> Response:
        if path.startswith("api/"):
            return Response(b'{"error": "not found"}', 404, media_type="application/json")
        if not sessions.valid(request.cookies.get(COOKIE)):
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(here, safe='')}", 303)
        if not built():
            return _message_html("The dashboard is not built",
                                 "Run `make demo`, or `npm ci && npm run build` in "
                                 "src/shoal/web/ui, then reload.", 503)
        return FileResponse(DIST / "index.html", media_type="text/html",
                            headers={"cache-control": "no-store"})


def built() -> bool:
    return (DIST / "index.html").is_file()


def session_ok(request: Request) -> bool:
    sessions: Sessions | None = getattr(request.app.state, "sessions", None)
    return sessions is not None and sessions.valid(request.cookies.get(COOKIE))


class _Assets(StaticFiles):
    """The bundle; created lazily so that a build after start-up is served."""

    def __init__(self) -> None:
        super().__init__(directory=DIST / "assets", check_dir=False)

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["cache-control"] = "public, max-age=31536000, immutable"
        return response


class BrowserGuard:
    """ASGI middleware: refuse cross-origin requests and foreign Host names (DNS
    rebinding), and add the security headers to every response."""

    def __init__(self, app: Any, names: tuple[str, ...] = ()) -> None:
        self.app = app
        self.names = names

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        origin = headers.get(b"origin")
        bearer = headers.get(b"authorization", b"")[:7].lower() == b"bearer "
        reason = ""
        if origin is not None and not origin_allowed(origin.decode("latin-1"), host):
            reason = "cross-origin request refused"
        elif not bearer and not host_allowed(host, self.names):
            reason = (f"host {host[:100]!r} is not this dashboard's; use its IP address or "
                      "localhost, or start the control plane with --dashboard-host")
        if reason:
            log.warning("dashboard: %s (%s)", reason, _peer_of(scope))
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            body = json.dumps({"error": reason}).encode()
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()),
                                    *SECURITY_HEADERS]})
            await send({"type": "http.response.body", "body": body})
            return

        async def secured(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, secured)


def _peer(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "?"


def _peer_of(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"


def _signed_in(sessions: Sessions, target: str) -> Response:
    response = RedirectResponse(target, 303)
    response.set_cookie(COOKIE, sessions.issue(), max_age=SESSION_SECONDS, path="/",
                        httponly=True, samesite="strict")
    return response


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · shoal</title><link rel="stylesheet" href="/login.css"></head>
<body><main class="card"><h1><span class="logo">shoal</span> {title}</h1>
{body}</main></body></html>
"""


def _login_html(error: str, target: str, status: int = 200) -> HTMLResponse:
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    body = f"""{message}
<form method="post" action="/login">
<label for="token">Operator token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required
 autofocus placeholder="contents of $SHOAL_HOME/token">
<input type="hidden" name="next" value="{html.escape(target, quote=True)}">
<button type="submit">Log in</button>
</form>
<p class="hint">Or run <code>shoal dashboard</code> for a one-time link.</p>"""
    return HTMLResponse(_PAGE.format(title="dashboard login", body=body), status,
                        headers={"cache-control": "no-store"})


def _message_html(title: str, text: str, status: int) -> HTMLResponse:
    body = f"<p>{html.escape(text)}</p>"
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status,
                        headers={"cache-control": "no-store"})
