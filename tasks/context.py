"""What every stage receives: the validated settings, the run's paths, this process's attempt and
the provider it rents from.

`RunContext` is the one object a stage body takes (`ctx`); `Attempt` is what one process learns
while it runs stages (its id in the attempts log, ssh sessions opened, a failed teardown, the
signal that stopped it). Nothing here is global: run_remote_training() builds its own context. The
provider is handed in by whoever assembles the run (tasks/pipeline/assemble.py), as a factory, so
that `doit list` never imports one.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from tasks.core.paths import RunPaths, run_paths
from tasks.core.settings import Settings, load

log = logging.getLogger("fullcycle")


@dataclass
class Attempt:
    """One `doit` process's attempt at a date, as the attempts log names it.

    `sessions` counts ssh (or bash) sessions opened on the pod; `teardown_failures` turns into exit
    code 3; `signal` is the signal that interrupted the run, for the conventional 128+N exit code.
    """

    id: str = field(default_factory=lambda: time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(2))
    sessions: int = 0
    teardown_failures: list[str] = field(default_factory=list)
    locks: dict[str, int] = field(default_factory=dict)
    signal: int | None = None
    interrupted_stage: str | None = None
    started: bool = False
    closed: bool = False
    stages_run: list[str] = field(default_factory=list)
    hooks_installed: bool = False
    secrets_read: bool = False


@dataclass
class RunContext:
    settings: Settings
    paths: RunPaths
    samples_used: int | None = field(default=None)  # set by a caller of run_remote_training
    inputs_prepared: bool = False  # run_remote_training: the caller made dataset and config itself
    owns_process: bool = True  # doit's own process: signal handlers and the exit code are ours
    attempt: Attempt = field(default_factory=Attempt)
    pod_name: str = ""  # empty: <name_prefix>-<date>; `doit gpu_check` names its pods apart
    # (settings, paths, session counter, pod name) -> the Provider (tasks/providers): given by the assembly
    make_provider: Callable[..., Any] | None = field(default=None, repr=False)

    @classmethod
    def load(cls, default_dir: str = ".", date: str | None = None) -> "RunContext":
        settings = load(default_dir, date)
        return cls(settings, run_paths(settings))

    @property
    def provider_name(self) -> str:
        return self.settings.project.provider

    @cached_property
    def provider(self) -> Any:
        """The configured provider, made on first use by the factory the run was assembled with."""
        if self.make_provider is None:
            raise RuntimeError("this context was not assembled for a run (tasks/pipeline/assemble.py): it has no "
                               "provider")
        return self.make_provider(self.settings, self.paths, self.attempt, self.pod_name)

    def prepared(self, path: Path) -> bool:
        """run_remote_training(): the caller made this file itself (seed §4); never overwrite it."""
        if self.inputs_prepared and path.exists():
            log.info("%s was prepared by the caller: kept as it is", path)
            return True
        return False
