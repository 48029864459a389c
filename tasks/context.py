"""What every stage receives: the validated settings, the run's paths and the state of this process's run."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from tasks.paths import RunPaths, run_paths
from tasks.settings import Settings, load

if TYPE_CHECKING:
    from tasks.providers.base import Provider


@dataclass
class RunState:
    """Everything one process learns while it runs stages; owned by its RunContext, never global.

    attempt_id names this process's attempt in the date's attempts log; `sessions` counts ssh (or
    bash) sessions opened on the pod; `teardown_failures` turns into exit code 3; `signal` is the
    signal that interrupted the run, for the conventional 128+N exit code.
    """

    attempt_id: str = field(default_factory=lambda: time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(2))
    sessions: int = 0
    teardown_failures: list[str] = field(default_factory=list)
    locks: dict[str, int] = field(default_factory=dict)
    signal: int | None = None
    interrupted_stage: str | None = None
    attempt_started: bool = False
    attempt_closed: bool = False
    stages_run: list[str] = field(default_factory=list)
    hooks_installed: bool = False


@dataclass
class RunContext:
    settings: Settings
    paths: RunPaths
    samples_used: int | None = field(default=None)  # set by a caller of run_remote_training
    inputs_prepared: bool = False  # run_remote_training: the caller made dataset and config itself
    owns_process: bool = True  # doit's own process: signal handlers and the exit code are ours
    run: RunState = field(default_factory=RunState)

    @classmethod
    def load(cls, default_dir: str = ".", date: str | None = None) -> "RunContext":
        settings = load(default_dir, date)
        return cls(settings, run_paths(settings))

    @property
    def provider_name(self) -> str:
        return self.settings.project.provider

    @cached_property
    def provider(self) -> "Provider":
        from tasks import providers

        return providers.get(self)
