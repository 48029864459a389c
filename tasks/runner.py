"""Running one stage: lock, log, time, record its outcome and rewrite the summary, whatever happens.

Every stage goes through `stage()`, whether doit or run_remote_training() started it, so any run
leaves the same record. Errors the user can act on are one clear line; anything else keeps its
traceback in trainer.log. The process-level hooks live here too: a signal becomes a clean
interrupt (so doit's teardown terminates the pod), and the exit code says what happened:
130/143 for SIGINT/SIGTERM, 3 when the pod could not be terminated.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from doit.reporter import ConsoleReporter

from tasks import lock, logs, record
from tasks.context import RunContext
from tasks.errors import FullcycleError
from tasks.files import read_json

log = logging.getLogger(logs.LOGGER)
SIGNAL_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


def _write_summary(ctx: RunContext) -> None:
    try:
        record.write(ctx.paths, ctx.provider_name, ctx.samples_used)
    except Exception:  # the summary must never hide the error that got us here
        log.exception("could not write %s", ctx.paths.summary_file)


# --------------------------------------------------------------------------- process hooks


def install_hooks(ctx: RunContext) -> None:
    """Once per process, when the first stage runs (importing dodo.py must have no side effects)."""
    run = ctx.run
    if run.hooks_installed or not ctx.owns_process:
        return
    run.hooks_installed = True

    def on_signal(signum: int, _frame: Any) -> None:
        if run.signal is None:
            run.signal = signum
        raise KeyboardInterrupt(SIGNAL_NAMES.get(signum, str(signum)))

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, on_signal)
    previous = sys.excepthook

    def quiet_interrupts(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if not issubclass(kind, KeyboardInterrupt):  # the one-line message comes from at_exit
            previous(kind, value, tb)

    sys.excepthook = quiet_interrupts
    atexit.register(at_exit, ctx)


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
        _write_summary(ctx)
    except Exception:
        log.exception("could not close the attempt record")


def at_exit(ctx: RunContext) -> None:
    """Close this attempt's record, then exit with a code that says what happened."""
    run = ctx.run
    close_attempt(ctx)
    sys.stdout.flush()
    code = None
    if run.signal is not None or run.interrupted_stage:
        pod = read_json(ctx.paths.pod_file) or {}
        name = SIGNAL_NAMES.get(run.signal, "an interrupt") if run.signal else "an interrupt"
        where = f"during {run.interrupted_stage}" if run.interrupted_stage else "between stages"
        if not pod or pod.get("terminated"):
            fate = f"pod {pod['pod_id']} was terminated" if pod else "no pod was running"
        else:
            fate = f"pod {pod.get('pod_id')} may still be running: `doit terminate_pod --date {ctx.paths.date}` ends it"
        print(f"fullcycle: stopped by {name} {where}; {fate}. Record: {ctx.paths.summary_file}", file=sys.stderr)
        code = 128 + (run.signal or signal.SIGINT)
    if run.teardown_failures:
        print("fullcycle: the pod could not be terminated: " + "; ".join(run.teardown_failures)
              + f"\n  terminate it with `doit terminate_pod --date {ctx.paths.date}` or in the RunPod console",
              file=sys.stderr)
        code = 3
    if code is not None:
        sys.stderr.flush()
        os._exit(code)


# --------------------------------------------------------------------------- one stage


def _start_attempt(ctx: RunContext) -> None:
    run = ctx.run
    if run.attempt_started:
        return
    run.attempt_started = True
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
    _write_summary(ctx)
    log.info("== %s", name)

    def finish(status: str, error: str | None = None) -> None:
        record.record_stage(ctx.paths, name, status, started, time.time(), error, run.sessions - sessions)
        record.append_event(ctx.paths, run.attempt_id, "stage", stage=name, status=status, error=error,
                            seconds=round(time.time() - started, 3))
        _write_summary(ctx)

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


def doit_action(ctx: RunContext, name: str, func: Callable[[RunContext], Any]) -> Callable[[], Any]:
    """A doit python-action for `func`: failures become doit's TaskFailed with a one-line reason."""

    def action() -> Any:
        from doit.exceptions import TaskFailed

        install_hooks(ctx)
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


def teardown_action(ctx: RunContext, func: Callable[[RunContext], None]) -> Callable[[], None]:
    """A teardown that never raises: its failure is kept for the exit code (doit ignores it)."""

    def action() -> None:
        try:
            func(ctx)
        except lock.RunLocked:
            return  # the pod belongs to the run that holds the lock: leave it alone
        except BaseException as exc:  # noqa: BLE001 - a second Ctrl-C must not skip the record
            ctx.run.teardown_failures.append(logs.redact(str(exc)))

    action.__name__ = f"teardown_{getattr(func, '__name__', 'stage')}"
    return action


class Reporter(ConsoleReporter):
    """doit's console output, plus why a stage named on the command line was skipped."""

    selected: set[str] = set()

    def initialize(self, tasks: Any, selected_tasks: Any) -> None:
        self.selected = set(selected_tasks or ())

    def skip_uptodate(self, task: Any) -> None:
        if task.name in self.selected and task.name != "full_cycle":
            self.write(f"-- {task.name}  (up to date: nothing it depends on changed since it last succeeded; "
                       f"`doit -a {task.name}` runs it anyway, `doit forget {task.name}` forgets it)\n")
        else:
            super().skip_uptodate(task)
