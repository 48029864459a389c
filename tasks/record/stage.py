"""A stage's record: lock, log, time, its outcome in stages.json and the attempts log, and
run-summary.json rewritten at its start and end, whatever happens.

Every stage runs inside `recording()`, whether doit or run_remote_training() started it, so any run
leaves the same record. Errors the user can act on are one clear line; anything else keeps its
traceback in trainer.log.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator

from tasks.context import RunContext
from tasks.core import lock, logs
from tasks.core.errors import FullcycleError
from tasks.core.files import read_record, section, write_json
from tasks.core.logs import redact
from tasks.core.paths import RunPaths, remember_run
from tasks.record import summary
from tasks.record.attempts import append_event

log = logging.getLogger(logs.LOGGER)
SIGNAL_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds")


def record_stage(paths: RunPaths, name: str, status: str, started: float, ended: float,
                 error: str | None = None, ssh_sessions: int = 0) -> None:
    """Record one stage's latest outcome; the latest outcome of a stage replaces the older one."""
    stages = section(read_record(paths.stages_file), "stages")  # an unreadable one is named and started afresh
    stages.pop(name, None)  # keep the file in execution order
    stages[name] = {
        "status": status,
        "started_at": _iso(started),
        "seconds": round(ended - started, 3),
        "error": redact(error) if error else None,
        "ssh_sessions": ssh_sessions,
    }
    write_json(paths.stages_file, {"stages": stages})


def write_summary(ctx: RunContext) -> None:
    """Refresh run-summary.json; never raises (the summary must not hide the error that got us here)."""
    try:
        summary.write(ctx.paths, ctx.provider_name, ctx.samples_used)
    except Exception:  # the summary must never hide the error that got us here
        log.exception("could not write %s", ctx.paths.summary_file)


def _attempt_outcome(ctx: RunContext) -> str:
    if ctx.attempt.signal is not None or ctx.attempt.interrupted_stage:
        return "interrupted"
    stages = section(read_record(ctx.paths.stages_file), "stages")
    mine = [s for s in ctx.attempt.stages_run if s in stages]
    return "failed" if any(section(stages, s).get("status") != "ok" for s in mine) else "ok"


def close_attempt(ctx: RunContext) -> None:
    """Append this attempt's end line (once) and refresh the summary."""
    attempt = ctx.attempt
    if not attempt.started or attempt.closed:
        return
    attempt.closed = True
    try:
        append_event(ctx.paths, attempt.id, "end", outcome=_attempt_outcome(ctx),
                     signal=SIGNAL_NAMES.get(attempt.signal) if attempt.signal else None)
        write_summary(ctx)
    except Exception:
        log.exception("could not close the attempt record")


def _start_attempt(ctx: RunContext) -> None:
    attempt = ctx.attempt
    if attempt.started:
        return
    attempt.started = True
    remember_run(ctx.paths)
    append_event(ctx.paths, attempt.id, "start", pid=os.getpid(),
                 argv=[logs.redact(a) for a in sys.argv[1:]])


@contextlib.contextmanager
def recording(ctx: RunContext, name: str) -> Iterator[None]:
    """Record `name`'s outcome in stages.json and the attempts log, refresh run-summary.json."""
    lock.acquire(ctx.paths.lock_file, ctx.attempt.locks)  # first: a second run must not touch this one's files
    logs.setup(ctx.paths.trainer_log)
    _start_attempt(ctx)
    attempt = ctx.attempt
    attempt.stages_run.append(name)
    started, sessions = time.time(), attempt.sessions
    # Recorded at the start, so a run killed outright (kill -9, power loss) still shows where it died.
    record_stage(ctx.paths, name, "running", started, started)
    append_event(ctx.paths, attempt.id, "stage", stage=name, status="running")
    write_summary(ctx)
    log.info("== %s", name)

    def finish(status: str, error: str | None = None) -> None:
        record_stage(ctx.paths, name, status, started, time.time(), error, attempt.sessions - sessions)
        append_event(ctx.paths, attempt.id, "stage", stage=name, status=status, error=error,
                     seconds=round(time.time() - started, 3))
        write_summary(ctx)

    try:
        yield
    except KeyboardInterrupt:
        attempt.interrupted_stage = attempt.interrupted_stage or name
        finish("interrupted", f"interrupted by {SIGNAL_NAMES.get(attempt.signal, 'a signal')}")
        log.error("Stage %s interrupted", name)
        raise
    except BaseException as exc:
        message = str(exc) if isinstance(exc, FullcycleError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, FullcycleError):
            log.exception("Unexpected error in stage %s", name)
        finish("failed", message)
        log.error("FAILED at %s: %s", name, logs.redact(message))
        log.error("Summary: %s  Log: %s", ctx.paths.summary_file, ctx.paths.trainer_log)
        raise
    finish("ok")
