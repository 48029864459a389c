"""The up-to-date rules of dodo.py's stage graph beyond doit's own file checks: what makes a pod
stage "done" is the pod, not a file. Each check is named, so `doit info` shows what it means; each
answer lives in the module that owns the concept and is imported only when doit asks
(tasks/catalog.py's `lazy`), so `doit list` stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.catalog import lazy
from tasks.context import RunContext
from tasks.core.errors import FullcycleError
from tasks.core.files import read_record


class SamePod:
    """Up to date only if the stage last succeeded against the pod now recorded in pod.json.

    pod.json itself cannot be a file_dep: terminating the pod rewrites it, and that must not make
    the upload re-run. What matters is which pod the work was done on.
    """

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def __repr__(self) -> str:
        return "same pod as at its last success (pod.json's pod_id)"

    __str__ = __repr__

    def _pod_id(self) -> str | None:
        """The recorded pod's id; None also when pod.json cannot be read (the stage then runs, and its
        record names the problem, instead of doit printing a traceback of this check)."""
        try:
            pod = lazy("tasks.pod.lifecycle:load_pod")(self.ctx)
        except FullcycleError:
            return None
        return pod.pod_id if pod else None

    def __call__(self, task: Any, values: dict[str, Any]) -> bool:
        task.value_savers.append(lambda: {"pod_id": self._pod_id()})
        current = self._pod_id()
        return current is not None and values.get("pod_id") == current


class Check:
    """A named up-to-date predicate: `doit info` shows the name, not a function's address."""

    def __init__(self, name: str, predicate: Callable[[], bool]) -> None:
        self.name, self.predicate = name, predicate

    def __repr__(self) -> str:
        return self.name

    __str__ = __repr__

    def __call__(self) -> bool:
        """False when the answer is an error a person can act on (an unreadable pod.json): the stage
        then runs and says so in its record, instead of doit printing a traceback of the check."""
        try:
            return self.predicate()
        except FullcycleError:
            return False


def pod_in_use(ctx: RunContext) -> Check:
    return Check("the recorded pod is alive, or already delivered its adapter",
                 lambda: lazy("tasks.pod.lifecycle:pod_in_use")(ctx))


def config_current(ctx: RunContext) -> Check:
    """config.json compared with what write_config would write now: every value it holds is checked, so
    no setting it reads can be left out of the check."""
    return Check("config.json is what the settings and the model check make now",
                 lambda: lazy("tasks.data.trainconfig:is_current")(ctx))


def pod_terminated(ctx: RunContext) -> Check:
    return Check("the recorded pod is terminated", lambda: lazy("tasks.pod.lifecycle:is_terminated")(ctx))


def latest_is_current(ctx: RunContext) -> Check:
    return Check("out/adapters/latest already points at the newest promoted date",
                 lambda: lazy("tasks.post.latest:latest_is_current")(ctx))


def modelfile_current(ctx: RunContext) -> Check:
    def current() -> bool:
        gguf, modelfile = ctx.paths.out_root / "adapter.gguf", ctx.paths.out_root / "Modelfile"
        return modelfile.is_file() and gguf.is_file() and modelfile.stat().st_mtime_ns >= gguf.stat().st_mtime_ns

    return Check("the Modelfile was written after adapter.gguf", current)


def no_pods_to_watch(ctx: RunContext) -> Check:
    return Check("reaping is off, or the provider rents nothing",
                 lambda: ctx.settings.runpod.reap == "off" or not ctx.provider.rents_pods)


def summary_current(ctx: RunContext) -> Check:
    """No stage ran in this process (each writes the summary at its end), no record it is made of changed
    since, and it reads back: a summary a full disk truncated or a person edited is written again."""
    def current() -> bool:
        if ctx.attempt.stages_run or not ctx.paths.summary_file.is_file():
            return False  # asked first: nothing is read when a stage ran
        problems: list[str] = []
        read_record(ctx.paths.summary_file, problems)
        if problems:
            return False
        written = ctx.paths.summary_file.stat().st_mtime_ns
        sources = lazy("tasks.record.summary:sources")(ctx.paths)
        return all(not f.is_file() or f.stat().st_mtime_ns <= written for f in sources)

    return Check("no stage ran in this process, none of its records changed since, and run-summary.json reads back",
                 current)
