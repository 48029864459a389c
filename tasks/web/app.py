"""`doit serve`: the web page's server (Starlette on uvicorn), bound to 127.0.0.1 unless told otherwise.

Who may do what:
- Every request must name this server in its Host header (a DNS-rebinding page cannot reach us
  through another name) unless the server was bound beyond loopback, where the token guards it.
- Bound beyond loopback, every request needs a session that proved it knows the access token
  (printed on the server's console, typed into the page once).
- Every state-changing request (run, cancel, terminate a pod) must come from this page: its
  Origin header must be this server, and it must carry the session's own token. Those requests
  take a date or a pod id, never a command: the only thing ever started is `doit full_cycle`.
- Nothing sent to the page holds a secret: the API key lives in this process's environment, the
  record it reads is redacted when written, and every outgoing body is redacted again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import hmac
import html
import ipaddress
import os
import secrets
import time
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tasks import reaper
from tasks.context import RunContext
from tasks.errors import FullcycleError
from tasks.logs import redact
from tasks.web import status
from tasks.web.runs import RunRefused, Runs

STATIC = Path(__file__).parent / "static"
COOKIE = "fullcycle_session"
TICK = 0.1  # seconds between looks at the run's files while a page watches (a look: a few stat calls)
REFRESH = 1.0  # the state is rebuilt (~2 ms) at least this often even when no file moved
KEEPALIVE = 15.0


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


class Guard:
    """Sessions, the access token and the checks every request passes.

    A session is a signed cookie (`<id>.<authed>.<signature>`, keyed by a secret this process draws
    at start): the server keeps nothing per visitor, so no number of requests can grow its memory,
    and a restarted server simply asks the page to reload. The page's CSRF token is derived from the
    session id with the same key."""

    def __init__(self, host: str, port: int, token: str | None) -> None:
        self.loopback = is_loopback(host)
        self.token = token
        self.hosts = {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]", host)}
        self.key = secrets.token_bytes(32)

    def host_ok(self, request: Request) -> bool:
        return not self.loopback or request.headers.get("host", "") in self.hosts

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

    def refusal(self, request: Request, changes_state: bool) -> Response | None:
        """Why this request may not go on (a response saying so), or None when it may."""
        if not self.host_ok(request):
            return _json({"error": "unknown Host header: open the page at the address the server printed"}, 421)
        session = self.session(request)
        if session is None or not session.authed:
            return _json({"error": "not signed in: reload the page" + (" and give the access token" if self.token
                                                                        else "")}, 401)
        if changes_state:
            origin = request.headers.get("origin")
            if origin != f"{request.url.scheme}://{request.headers.get('host')}":
                return _json({"error": f"refused: request from origin {origin!r}, not from this page"}, 403)
            sent = request.headers.get("x-fullcycle-token", "")
            if not secrets.compare_digest(sent.encode(), session.csrf.encode()):
                return _json({"error": "refused: the page's session token is missing or wrong (reload the page)"},
                             403)
        return None


def _json(data: Any, code: int = 200) -> Response:
    return Response(redact(orjson.dumps(data).decode()), status_code=code, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


def create_app(ctx: RunContext, dodo: Path, cwd: Path, host: str = "127.0.0.1", port: int = 8765,
               token: str | None = None) -> Starlette:
    settings = ctx.settings
    guard = Guard(host, port, token)
    runs = Runs(settings, dodo, cwd)
    pages = {name: (STATIC / name).read_text(encoding="utf-8") for name in ("index.html", "login.html")}

    def today() -> str:
        return dt.date.today().isoformat()

    async def body(request: Request) -> dict[str, Any]:
        try:
            data = orjson.loads(await request.body() or b"{}")
        except orjson.JSONDecodeError:
            data = None
        return data if isinstance(data, dict) else {}

    async def index(request: Request) -> Response:
        if not guard.host_ok(request):
            return _json({"error": "unknown Host header"}, 421)
        session, cookie = guard.session(request), None
        if session is None:
            cookie, session = guard.new_session()
        page = "index.html" if session.authed else "login.html"
        text = pages[page]
        for key, value in {"csrf": session.csrf, "today": today(), "provider": settings.project.provider,
                           "project": str(settings.project_root)}.items():
            text = text.replace("{{" + key + "}}", html.escape(value))
        response = HTMLResponse(text, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                               "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'"})
        if cookie:
            response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict")
        return response

    async def login(request: Request) -> Response:
        session = guard.session(request)
        if not guard.host_ok(request) or session is None:
            return _json({"error": "reload the page"}, 401)
        if request.headers.get("origin") != f"{request.url.scheme}://{request.headers.get('host')}":
            return _json({"error": "refused: not from this page"}, 403)
        given = str((await body(request)).get("token", ""))
        if guard.token and secrets.compare_digest(given.encode(), guard.token.encode()):
            cookie, _ = guard.new_session(session.sid, authed=True)
            response = _json({"ok": True})
            response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict")
            return response
        await asyncio.sleep(1.0)  # guessing stays slow
        return _json({"error": "wrong access token (it was printed where `doit serve` was started)"}, 403)

    def date_of(request: Request, data: dict[str, Any] | None = None) -> str:
        return status.valid_date(str((data or {}).get("date") or request.query_params.get("date") or today()))

    def reads_a_date(handler):
        """A read-only route about one date (?date=, default today), checked before it runs."""

        async def route(request: Request) -> Response:
            if refused := guard.refusal(request, changes_state=False):
                return refused
            try:
                date = date_of(request)
            except status.BadDate as exc:
                return _json({"error": str(exc)}, 400)
            return await handler(request, date)

        return route

    @reads_a_date
    async def state(request: Request, date: str) -> Response:
        return _json(await run_in_threadpool(status.date_state, settings, date))

    @reads_a_date
    async def events(request: Request, date: str) -> Response:
        paths = status.paths_for(settings, date)
        tail = status.LogTail(paths.trainer_log)

        def look() -> tuple[tuple, str]:
            return status.signature(paths), tail.read()

        async def stream():
            last, seen, computed, quiet_since = b"", None, 0.0, time.monotonic()
            while True:
                # The record's files are stat'ed every tick; the state is rebuilt when they moved, and
                # once a second anyway (a run's minutes and cost grow, a process may die silently).
                marks, text = look()  # a few stat calls and a bounded read: no thread hop needed
                if marks != seen or time.monotonic() - computed >= REFRESH:
                    if await request.is_disconnected():  # asked once a second: a closed tab stops costing
                        return
                    seen, computed = marks, time.monotonic()
                    now_state = orjson.dumps(await run_in_threadpool(status.date_state, settings, date))
                    if now_state != last:
                        last = now_state
                        yield b"event: state\ndata: " + redact(now_state.decode()).encode() + b"\n\n"
                        quiet_since = time.monotonic()
                if text:
                    data = "\n".join(f"data: {line}" for line in text.rstrip("\n").split("\n"))
                    yield f"event: log\n{data}\n\n".encode()
                    quiet_since = time.monotonic()
                if time.monotonic() - quiet_since > KEEPALIVE:
                    yield b": still here\n\n"
                    quiet_since = time.monotonic()
                await asyncio.sleep(TICK)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def history(request: Request) -> Response:
        if refused := guard.refusal(request, changes_state=False):
            return refused
        return _json(await run_in_threadpool(status.history, settings))

    @reads_a_date
    async def summary(request: Request, date: str) -> Response:
        text = await run_in_threadpool(status.summary_text, settings, date)
        if text is None:
            return _json({"error": "no run-summary.json for this date yet"}, 404)
        return Response(text, media_type="application/json", headers={"Cache-Control": "no-store"})

    async def on_date(request: Request, act, done: str) -> Response:
        """Run or cancel: one date from the page's JSON body, the only input either takes."""
        if refused := guard.refusal(request, changes_state=True):
            return refused
        try:
            date = date_of(request, await body(request))
            pid = await run_in_threadpool(act, date)
        except status.BadDate as exc:
            return _json({"error": str(exc)}, 400)
        except RunRefused as exc:
            return _json({"error": str(exc)}, 409)
        return _json({done: date, "pid": pid})

    async def run(request: Request) -> Response:
        return await on_date(request, runs.start, "started")

    async def cancel(request: Request) -> Response:
        return await on_date(request, runs.cancel, "cancelled")

    def pods_ctx() -> RunContext:
        return RunContext(dataclasses.replace(settings, date=today()), status.paths_for(settings, today()))

    async def pods(request: Request) -> Response:
        if refused := guard.refusal(request, changes_state=False):
            return refused
        try:
            rows = await run_in_threadpool(reaper.survey, pods_ctx())
        except FullcycleError as exc:
            return _json({"error": f"could not list pods: {exc}"}, 502)
        return _json({"provider": settings.project.provider, "pods": rows})

    async def terminate(request: Request) -> Response:
        if refused := guard.refusal(request, changes_state=True):
            return refused
        pod_id = str((await body(request)).get("pod_id") or "")
        try:
            row = await run_in_threadpool(reaper.terminate_stale, pods_ctx(), pod_id)
        except reaper.NotStale as exc:
            return _json({"error": str(exc)}, 409)
        except FullcycleError as exc:
            return _json({"error": f"could not terminate {pod_id}: {exc}"}, 502)
        return _json(row)

    return Starlette(routes=[
        Route("/", index), Route("/login", login, methods=["POST"]),
        Route("/api/state", state), Route("/api/events", events), Route("/api/history", history),
        Route("/api/summary", summary), Route("/api/pods", pods),
        Route("/api/run", run, methods=["POST"]), Route("/api/cancel", cancel, methods=["POST"]),
        Route("/api/pods/terminate", terminate, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ])


def serve(ctx: RunContext, dodo: str, host: str, port: int) -> None:
    """Run the server until Ctrl-C; runs it started go on without it."""
    import uvicorn

    token = None
    if not is_loopback(host):
        token = os.environ.get("FULLCYCLE_WEB_TOKEN") or secrets.token_urlsafe(18)
        if len(token) < 16:
            raise SystemExit("FULLCYCLE_WEB_TOKEN must be at least 16 characters")
    app = create_app(ctx, Path(dodo), Path.cwd(), host, port, token)
    shown = f"[{host}]" if ":" in host else host
    print(f"fullcycle web page: http://{'127.0.0.1' if host in ('0.0.0.0', '::') else shown}:{port}/", flush=True)
    if token:
        print(f"bound to {host}, beyond this machine: the page asks for this access token: {token}", flush=True)
    # An open live view must not hold Ctrl-C up: streams get two seconds to end.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
