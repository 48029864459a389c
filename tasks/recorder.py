"""Recording one stage: lock, log, time, its outcome in stages.json and the attempts log, and
run-summary.json rewritten at its start and end, whatever happens.

Every stage goes through `stage()`, whether doit or run_remote_training() started it, so any run
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

from tasks import lock, logs, record
from tasks.paths import remember_run
from tasks.context import RunContext
from tasks.errors import FullcycleError
from tasks.files import read_json

log = logging.getLogger(logs.LOGGER)
SIGNAL_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


def write_summary(ctx: RunContext) -> None:
    try:
        record.write(ctx.paths, ctx.provider_name, ctx.samples_used)
    except Exception:  # the summary must never hide the error that got us here
        log.exception("could not write %s", ctx.paths.summary_file)


def _attempt_outcome(ctx: RunContext) -> str:
    if ctx.run.signal is not None or ctx.run.interrupted_stage:
        return "interrupted"
    stages = (read_json(ctx.paths.stages_file) or {}).get("stages", {})
    mine = [s for s in ctx.run.stages_run if s in stages]
    return "failed" if any(stages[s]["status"] != "ok" for s in mine) else "ok"


def close_attempt(ctx: RunContext) -> None:
    """Append this attempt's end line (once) and refresh the summary."""
    run = ctx.run
    if not run.attempt_started or run.attempt_closed:
        return
    run.attempt_closed = True
    try:
        record.append_event(ctx.paths, run.attempt_id, "end", outcome=_attempt_outcome(ctx),
                            signal=SIGNAL_NAMES.get(run.signal) if run.signal else None)
        write_summary(ctx)
    except Exception:
        log.exception("could not close the attempt record")


def _start_attempt(ctx: RunContext) -> None:
    run = ctx.run
    if run.attempt_started:
        return
    run.attempt_started = True
    remember_run(ctx.paths)
    record.append_event(ctx.paths, run.attempt_id, "start", pid=os.getpid(),
                        argv=[logs.redact(a) for a in sys.argv[1:]])


@contextlib.contextmanager
def stage(ctx: RunContext, name: str) -> Iterator[None]:
    """Record `name`'s outcome in stages.json and the attempts log, refresh run-summary.json."""
    lock.acquire(ctx.paths.lock_file, ctx.run.locks)  # first: a second run must not touch this one's files
    logs.setup(ctx.paths.trainer_log)
    _start_attempt(ctx)
    run = ctx.run
    run.stages_run.append(name)
    started, sessions = time.time(), run.sessions
    # Recorded at the start, so a run killed outright (kill -9, power loss) still shows where it died.
    record.record_stage(ctx.paths, name, "running", started, started)
    record.append_event(ctx.paths, run.attempt_id, "stage", stage=name, status="running")
    write_summary(ctx)
    log.info("== %s", name)

    def finish(status: str, error: str | None = None) -> None:
        record.record_stage(ctx.paths, name, status, started, time.time(), error, run.sessions - sessions)
        record.append_event(ctx.paths, run.attempt_id, "stage", stage=name, status=status, error=error,
                            seconds=round(time.time() - started, 3))
        write_summary(ctx)

    try:
        yield
    except KeyboardInterrupt:
        run.interrupted_stage = run.interrupted_stage or name
        finish("interrupted", f"interrupted by {SIGNAL_NAMES.get(run.signal, 'a signal')}")
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
