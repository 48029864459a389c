"""Who may do what on the page, as one ASGI middleware in front of every route.

- Every request must name this server in its Host header (a DNS-rebinding page cannot reach us
  through another name) unless the server was bound beyond loopback, where the token guards it.
- Bound beyond loopback, every request needs a session that proved it knows the access token
  (printed on the server's console, typed into the page once).
- Every state-changing request (run, cancel, terminate a pod) must come from this page: its
  Origin header must be this server, and it must carry the session's own token.

A session is a signed cookie (`<id>.<authed>.<signature>`, keyed by a secret this process draws at
start): the server keeps nothing per visitor, so no number of requests can grow its memory, and a
restarted server simply asks the page to reload. The page's CSRF token is derived from the id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import secrets
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tasks.core.logs import redact

COOKIE = "fullcycle_session"
OPEN = ("/static/",)  # the page's own files: only the Host check
PAGE = ("/", "/login")  # they make or upgrade the session themselves


@dataclasses.dataclass(frozen=True)
class Session:
    sid: str
    csrf: str
    authed: bool


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def json_response(data: Any, code: int = 200) -> Response:
    """Every JSON answer the page gets, redacted once more on the way out."""
    return Response(redact(orjson.dumps(data).decode()), status_code=code, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


class Guard:
    """Sessions, the access token and the checks every request passes."""

    def __init__(self, host: str, port: int, token: str | None) -> None:
        self.loopback = is_loopback(host)
        self.token = token
        self.hosts = {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]", host)}
        self.key = secrets.token_bytes(32)

    def host_ok(self, request: Request) -> bool:
        return not self.loopback or request.headers.get("host", "") in self.hosts

    def from_this_page(self, request: Request) -> bool:
        return request.headers.get("origin") == f"{request.url.scheme}://{request.headers.get('host')}"

    def _sign(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def _open(self, sid: str, authed: bool) -> Session:
        return Session(sid=sid, csrf=self._sign("csrf:" + sid), authed=authed or self.token is None)

    def session(self, request: Request) -> Session | None:
        """The request's session when its cookie carries our signature, else None."""
        sid, _, rest = request.cookies.get(COOKIE, "").partition(".")
        authed, _, signature = rest.partition(".")
        if not sid or authed not in ("0", "1"):
            return None
        if not hmac.compare_digest(signature, self._sign(f"{sid}.{authed}")):
            return None
        return self._open(sid, authed == "1")

    def new_session(self, sid: str | None = None, authed: bool = False) -> tuple[str, Session]:
        """A cookie value and its session (`sid` kept when a login upgrades the session)."""
        sid = sid or secrets.token_urlsafe(18)
        value = f"{sid}.{int(authed)}"
        return f"{value}.{self._sign(value)}", self._open(sid, authed)

    def token_ok(self, given: str) -> bool:
        return bool(self.token) and secrets.compare_digest(given.encode(), self.token.encode())

    def refusal(self, request: Request, changes_state: bool) -> Response | None:
        """Why this request may not go on (a response saying so), or None when it may."""
        if not self.host_ok(request):
            return json_response({"error": "unknown Host header: open the page at the address the server printed"},
                                 421)
        session = self.session(request)
        if session is None or not session.authed:
            return json_response({"error": "not signed in: reload the page" + (
                " and give the access token" if self.token else "")}, 401)
        if changes_state:
            if not self.from_this_page(request):
                return json_response({"error": f"refused: request from origin {request.headers.get('origin')!r}, "
                                               f"not from this page"}, 403)
            sent = request.headers.get("x-fullcycle-token", "")
            if not secrets.compare_digest(sent.encode(), session.csrf.encode()):
                return json_response({"error": "refused: the page's session token is missing or wrong "
                                               "(reload the page)"}, 403)
        return None


class GuardMiddleware:
    """Applies the guard before any route runs: the page and its files check only the Host (the
    page makes the session), every /api/ route is checked in full, POSTs as state-changing."""

    def __init__(self, app: Any, guard: Guard) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path = scope["path"]
        if path in PAGE or path.startswith(OPEN):
            refused = None if self.guard.host_ok(request) else json_response({"error": "unknown Host header"}, 421)
        else:
            refused = self.guard.refusal(request, changes_state=scope["method"] not in ("GET", "HEAD"))
        if refused is not None:
            await refused(scope, receive, send)
            return
        await self.app(scope, receive, send)
