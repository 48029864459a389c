"""doit's side of a stage: the python-action that records it, the teardown that never raises,
and the console reporter that says why a stage named on the command line was skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from doit.reporter import ConsoleReporter

from tasks.context import RunContext
from tasks.core import lock, logs, secrets
from tasks.core.errors import FullcycleError
from tasks.pipeline import signals
from tasks.pipeline.signals import install_hooks
from tasks.record.stage import recording


def doit_action(ctx: RunContext, name: str, func: Callable[[RunContext], Any]) -> Callable[[], Any]:
    """A doit python-action for `func`: failures become doit's TaskFailed with a one-line reason."""

    def action() -> Any:
        from doit.exceptions import TaskFailed

        install_hooks(ctx)
        try:
            with recording(ctx, name):
                if not ctx.attempt.secrets_read:  # once, when the first stage runs: `doit list` reads none
                    ctx.attempt.secrets_read = True
                    secrets.fill_environment(ctx.settings.project.secrets_file)
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
            ctx.attempt.teardown_failures.append(logs.redact(str(exc)))

    action.__name__ = f"teardown_{getattr(func, '__name__', 'stage')}"
    return action


class Reporter(ConsoleReporter):
    """doit's console output, plus why a stage named on the command line was skipped."""

    selected: set[str] = set()

    def initialize(self, tasks: Any, selected_tasks: Any) -> None:
        self.selected = set(selected_tasks or ())
        signals.REQUESTED.update(self.selected or {"full_cycle"})  # no task named: the default, full_cycle

    def skip_uptodate(self, task: Any) -> None:
        if task.name in self.selected and task.name != "full_cycle":
            self.write(f"-- {task.name}  (up to date: nothing it depends on changed since it last succeeded; "
                       f"`doit -a {task.name}` runs it anyway, `doit forget {task.name}` forgets it)\n")
        else:
            super().skip_uptodate(task)
