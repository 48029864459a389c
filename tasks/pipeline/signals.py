"""Process policy for a `doit` run: a signal becomes a clean interrupt (so doit's teardown
terminates the pod), and the exit code says what happened: 130/143 for SIGINT/SIGTERM, 3 when the
pod could not be terminated. Installed when the first stage runs: importing dodo.py changes nothing.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from typing import Any

from tasks.context import RunContext
from tasks.core.files import read_record
from tasks.record.stage import SIGNAL_NAMES, close_attempt, write_summary

REQUESTED: set[str] = set()  # the tasks doit was asked for (the reporter fills it): a full cycle is notified


def install_hooks(ctx: RunContext) -> None:
    """Once per process, when the first stage runs (importing dodo.py must have no side effects)."""
    attempt = ctx.attempt
    if attempt.hooks_installed or not ctx.owns_process:
        return
    attempt.hooks_installed = True

    def on_signal(signum: int, _frame: Any) -> None:
        if attempt.signal is None:
            attempt.signal = signum
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


def at_exit(ctx: RunContext) -> None:
    """Close this attempt's record, then exit with a code that says what happened."""
    attempt = ctx.attempt
    close_attempt(ctx)
    if "full_cycle" in REQUESTED:
        _notify(ctx)
    sys.stdout.flush()
    code = None
    if attempt.signal is not None or attempt.interrupted_stage:
        pod = read_record(ctx.paths.pod_file)
        name = SIGNAL_NAMES.get(attempt.signal, "an interrupt") if attempt.signal else "an interrupt"
        where = f"during {attempt.interrupted_stage}" if attempt.interrupted_stage else "between stages"
        if not pod or pod.get("terminated"):
            fate = f"pod {pod['pod_id']} was terminated" if pod else "no pod was running"
        else:
            fate = f"pod {pod.get('pod_id')} may still be running: `doit terminate_pod --date {ctx.paths.date}` ends it"
        print(f"fullcycle: stopped by {name} {where}; {fate}. Record: {ctx.paths.summary_file}", file=sys.stderr)
        code = 128 + (attempt.signal or signal.SIGINT)
    if attempt.teardown_failures:
        print("fullcycle: the pod could not be terminated: " + "; ".join(attempt.teardown_failures)
              + f"\n  terminate it with `doit terminate_pod --date {ctx.paths.date}` or in the RunPod console",
              file=sys.stderr)
        code = 3
    if code is not None:
        sys.stderr.flush()
        os._exit(code)


def _notify(ctx: RunContext) -> None:
    """The word on how the run ended ([notify]), then the summary again with what it returned. Nothing
    it does changes the outcome or the exit code; a second Ctrl-C only cuts it short."""
    import logging

    from tasks.pipeline import notify

    try:
        sent = notify.notify(ctx)
        if sent:
            write_summary(ctx)
            returned = {k: v for k, v in sent.items() if k in ("command", "url")}
            logging.getLogger("fullcycle").info("notified: %s", returned)
    except BaseException as exc:  # noqa: BLE001 - a notifier never decides how the run ended
        print(f"fullcycle: the notification failed: {type(exc).__name__}: {exc}", file=sys.stderr)
