"""What every stage receives: the validated settings, the run's paths and the state of this process's run."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from tasks.paths import RunPaths, run_paths
from tasks.runstate import RunState
from tasks.settings import Settings, load

if TYPE_CHECKING:
    from tasks.providers.base import Provider


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

        return providers.get(self.settings, self.paths, self.run)
