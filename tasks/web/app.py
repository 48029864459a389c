"""`doit serve`: the web page's server (Starlette on uvicorn), bound to 127.0.0.1 unless told otherwise.

Who may do what is tasks/web/guard.py's, applied before any route runs; the live view's stream is
tasks/web/stream.py; what the page shows is read from the record (tasks/web/status.py). The routes
here take a date or a pod id, never a command: the only thing ever started is `doit full_cycle`.
Nothing sent to the page holds a secret: the API key lives in this process's environment, the
record it reads is redacted when written, and every outgoing body is redacted again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import html
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tasks.context import RunContext
from tasks.core.dates import BadDate
from tasks.core.errors import FullcycleError
from tasks.core.secrets import WEB_TOKEN_ENV
from tasks.pipeline import assemble
from tasks.pod import reaper
from tasks.web import status, stream
from tasks.web.guard import COOKIE, Guard, GuardMiddleware, is_loopback, json_response
from tasks.web.launcher import Launcher, RunRefused

STATIC = Path(__file__).parent / "static"
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'"}

DateHandler = Callable[[Request, str], Awaitable[Response]]


def today() -> str:
    return dt.date.today().isoformat()


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        data = None
    return data if isinstance(data, dict) else {}


def _date_of(request: Request, data: dict[str, Any] | None = None) -> str:
    return status.valid_date(str((data or {}).get("date") or request.query_params.get("date") or today()))


def _about_a_date(handler: DateHandler) -> Callable[[Request], Awaitable[Response]]:
    """A read-only route about one date (?date=, default today): a bad date is a 400 before it runs."""

    async def route(request: Request) -> Response:
        try:
            date = _date_of(request)
        except BadDate as exc:
            return json_response({"error": str(exc)}, 400)
        return await handler(request, date)

    return route


def create_app(ctx: RunContext, dodo: Path, cwd: Path, host: str = "127.0.0.1", port: int = 8765,
               token: str | None = None) -> Starlette:
    settings = ctx.settings
    guard = Guard(host, port, token)
    launcher = Launcher(settings, dodo, cwd)
    pages = {name: (STATIC / name).read_text(encoding="utf-8") for name in ("index.html", "login.html")}

    async def index(request: Request) -> Response:
        session, cookie = guard.session(request), None
        if session is None:
            cookie, session = guard.new_session()
        text = pages["index.html" if session.authed else "login.html"]
        for key, value in {"csrf": session.csrf, "today": today(), "provider": settings.project.provider,
                           "project": str(settings.project_root)}.items():
            text = text.replace("{{" + key + "}}", html.escape(value))
        response = HTMLResponse(text, headers=PAGE_HEADERS)
        if cookie:
            response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict")
        return response

    async def login(request: Request) -> Response:
        session = guard.session(request)
        if session is None:
            return json_response({"error": "reload the page"}, 401)
        if not guard.from_this_page(request):
            return json_response({"error": "refused: not from this page"}, 403)
        if guard.token_ok(str((await _body(request)).get("token", ""))):
            cookie, _ = guard.new_session(session.sid, authed=True)
            response = json_response({"ok": True})
            response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict")
            return response
        await asyncio.sleep(1.0)  # guessing stays slow
        return json_response({"error": "wrong access token (it was printed where `doit serve` was started)"}, 403)

    @_about_a_date
    async def state(request: Request, date: str) -> Response:
        return json_response(await run_in_threadpool(status.date_state, settings, date))

    @_about_a_date
    async def live(request: Request, date: str) -> Response:
        return StreamingResponse(stream.events(request, settings, date), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def history(request: Request) -> Response:
        return json_response(await run_in_threadpool(status.history, settings))

    async def daily(request: Request) -> Response:
        """The daily run `doit schedule` installed, and when it runs next (or none)."""
        from tasks.pipeline.schedule import read_schedule

        return json_response(await run_in_threadpool(read_schedule, settings, str(dodo)))

    @_about_a_date
    async def summary(request: Request, date: str) -> Response:
        text = await run_in_threadpool(status.summary_text, settings, date)
        if text is None:
            return json_response({"error": "no run-summary.json for this date yet"}, 404)
        return Response(text, media_type="application/json", headers={"Cache-Control": "no-store"})

    async def on_date(request: Request, act: Callable[[str], int | None], done: str) -> Response:
        """Run or cancel: one date from the page's JSON body, the only input either takes."""
        try:
            date = _date_of(request, await _body(request))
            pid = await run_in_threadpool(act, date)
        except BadDate as exc:
            return json_response({"error": str(exc)}, 400)
        except RunRefused as exc:
            return json_response({"error": str(exc)}, 409)
        return json_response({done: date, "pid": pid})

    async def run(request: Request) -> Response:
        return await on_date(request, launcher.start, "started")

    async def cancel(request: Request) -> Response:
        return await on_date(request, launcher.cancel, "cancelled")

    def pods_ctx() -> RunContext:
        return RunContext(dataclasses.replace(settings, date=today()), status.paths_for(settings, today()),
                          make_provider=ctx.make_provider or assemble.PROVIDER)

    async def pods(request: Request) -> Response:
        try:
            rows = await run_in_threadpool(reaper.survey, pods_ctx())
        except FullcycleError as exc:
            return json_response({"error": f"could not list pods: {exc}"}, 502)
        return json_response({"provider": settings.project.provider, "pods": rows})

    async def terminate(request: Request) -> Response:
        pod_id = str((await _body(request)).get("pod_id") or "")
        try:
            row = await run_in_threadpool(reaper.terminate_stale, pods_ctx(), pod_id)
        except reaper.NotStale as exc:
            return json_response({"error": str(exc)}, 409)
        except FullcycleError as exc:
            return json_response({"error": f"could not terminate {pod_id}: {exc}"}, 502)
        return json_response(row)

    return Starlette(routes=[
        Route("/", index), Route("/login", login, methods=["POST"]),
        Route("/api/state", state), Route("/api/events", live), Route("/api/history", history),
        Route("/api/summary", summary), Route("/api/pods", pods), Route("/api/schedule", daily),
        Route("/api/run", run, methods=["POST"]), Route("/api/cancel", cancel, methods=["POST"]),
        Route("/api/pods/terminate", terminate, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ], middleware=[Middleware(GuardMiddleware, guard=guard)])


def serve(ctx: RunContext, dodo: str, host: str, port: int) -> None:
    """Run the server until Ctrl-C; runs it started go on without it."""
    import uvicorn

    token = None
    if not is_loopback(host):
        token = os.environ.get(WEB_TOKEN_ENV) or secrets.token_urlsafe(18)
        if len(token) < 16:
            raise SystemExit("FULLCYCLE_WEB_TOKEN must be at least 16 characters")
    app = create_app(ctx, Path(dodo), Path.cwd(), host, port, token)
    shown = f"[{host}]" if ":" in host else host
    print(f"fullcycle web page: http://{'127.0.0.1' if host in ('0.0.0.0', '::') else shown}:{port}/", flush=True)
    if token:
        print(f"bound to {host}, beyond this machine: the page asks for this access token: {token}", flush=True)
    # An open live view must not hold Ctrl-C up: streams get two seconds to end.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
