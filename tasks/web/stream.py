"""The live view: one Server-Sent Events stream per open page, the date's state and its log.

The record's files are stat'ed every tick; the state is rebuilt when they moved, and once a second
anyway (a run's minutes and cost grow, a process may die silently). A closed tab stops costing
within a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from tasks.core.logs import redact
from tasks.core.settings import Settings
from tasks.web import status

TICK = 0.1  # seconds between looks at the run's files while a page watches (a look: a few stat calls)
REFRESH = 1.0  # the state is rebuilt (~2 ms) at least this often even when no file moved
KEEPALIVE = 15.0


async def events(request: Request, settings: Settings, date: str) -> AsyncIterator[bytes]:
    paths = status.paths_for(settings, date)
    tail = status.LogTail(paths.trainer_log)
    last, seen, computed, quiet_since = b"", None, 0.0, time.monotonic()
    while True:
        marks, text = status.signature(paths), tail.read()  # a few stat calls and a bounded read
        if marks != seen or time.monotonic() - computed >= REFRESH:
            if await request.is_disconnected():
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
