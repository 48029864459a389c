"""Running one stage: log it, time it, record its outcome and rewrite the summary, whatever happens.

doit and run_remote_training() both go through `stage()`, so a run started either way leaves the
same record. Errors the user can act on are shown as one clear line; anything else keeps its
traceback in trainer.log.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from tasks import lock, logs, summary
from tasks.context import RunContext
from tasks.errors import FullcycleError

log = logging.getLogger(logs.LOGGER)


def _write_summary(ctx: RunContext) -> None:
    try:
        summary.write(ctx.paths, ctx.provider_name, ctx.samples_used)
    except Exception:  # the summary must never hide the error that got us here
        log.exception("could not write %s", ctx.paths.summary_file)


@contextlib.contextmanager
def stage(ctx: RunContext, name: str) -> Iterator[None]:
    """Record `name`'s outcome in stages.json and refresh run-summary.json on the way out."""
    lock.acquire(ctx.paths.lock_file)  # before anything is written: a second run must not touch this one
    logs.setup(ctx.paths.trainer_log)
    from tasks.transport import SESSIONS

    started, sessions = time.time(), SESSIONS[0]
    # Recorded at the start, so a run killed outright (kill -9, power loss) still shows where it died.
    summary.record_stage(ctx.paths, name, "running", started, started)
    _write_summary(ctx)
    log.info("== %s", name)
    try:
        yield
    except KeyboardInterrupt:
        summary.record_stage(ctx.paths, name, "interrupted", started, time.time(), "interrupted by a signal",
                             SESSIONS[0] - sessions)
        log.error("Stage %s interrupted", name)
        _write_summary(ctx)
        raise
    except BaseException as exc:
        message = str(exc) if isinstance(exc, FullcycleError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, FullcycleError):
            log.exception("Unexpected error in stage %s", name)
        summary.record_stage(ctx.paths, name, "failed", started, time.time(), message, SESSIONS[0] - sessions)
        _write_summary(ctx)
        log.error("FAILED at %s: %s", name, logs.redact(message))
        log.error("Summary: %s  Log: %s", ctx.paths.summary_file, ctx.paths.trainer_log)
        raise
    summary.record_stage(ctx.paths, name, "ok", started, time.time(), ssh_sessions=SESSIONS[0] - sessions)
    _write_summary(ctx)


def doit_action(ctx: RunContext, name: str, func: Callable[[RunContext], Any]) -> Callable[[], Any]:
    """A doit python-action for `func`: failures become doit's TaskFailed with a one-line reason."""

    def action() -> Any:
        from doit.exceptions import TaskFailed

        try:
            with stage(ctx, name):
                func(ctx)
        except FullcycleError as exc:
            return TaskFailed(logs.redact(str(exc)))
        except Exception as exc:
            return TaskFailed(logs.redact(f"{type(exc).__name__}: {exc} (traceback in {ctx.paths.trainer_log})"))
        return None

    action.__name__ = name
    return action
