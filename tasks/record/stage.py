"""A stage's record: lock, log, time, its start and its outcome in the attempts log (the one record of
stage status), and run-summary.json written at its end, whatever happens.

Every stage runs inside `recording()`, whether doit or run_remote_training() started it, so any run
leaves the same record. Errors the user can act on are one clear line; anything else keeps its
traceback in trainer.log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator

from tasks.context import RunContext
from tasks.core import lock, logs
from tasks.core.errors import FullcycleError
from tasks.core.paths import remember_run
from tasks.record import summary
from tasks.record.attempts import append_event, read_events

log = logging.getLogger(logs.LOGGER)
SIGNAL_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


def write_summary(ctx: RunContext) -> None:
    """Refresh run-summary.json; never raises (the summary must not hide the error that got us here)."""
    try:
        summary.write(ctx.paths, ctx.provider_name, ctx.samples_used)
    except Exception:  # the summary must never hide the error that got us here
        log.exception("could not write %s", ctx.paths.summary_file)


def _attempt_outcome(ctx: RunContext) -> str:
    if ctx.attempt.signal is not None or ctx.attempt.interrupted_stage:
        return "interrupted"
    mine = [e for e in read_events(ctx.paths) if e["attempt"] == ctx.attempt.id and e["event"] == "stage"]
    return "failed" if any(e["status"] not in ("ok", "running") for e in mine) else "ok"


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
    """Record `name`'s start and outcome in the attempts log; write run-summary.json at its end."""
    lock.acquire(ctx.paths.lock_file, ctx.attempt.locks)  # first: a second run must not touch this one's files
    logs.setup(ctx.paths.trainer_log)
    _start_attempt(ctx)
    attempt = ctx.attempt
    attempt.stages_run.append(name)
    started, sessions = time.time(), attempt.sessions
    # Its start in the attempts log: a run killed outright (kill -9, power loss) still shows where it died.
    append_event(ctx.paths, attempt.id, "stage", stage=name, status="running")
    log.info("== %s", name)

    def finish(status: str, error: str | None = None) -> None:
        append_event(ctx.paths, attempt.id, "stage", stage=name, status=status, error=error,
                     seconds=round(time.time() - started, 3), ssh_sessions=attempt.sessions - sessions)
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
