"""Where the 'pod' comes from: the local machine or RunPod, behind one interface."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.paths import RunPaths
from tasks.runstate import RunState
from tasks.settings import Settings

if TYPE_CHECKING:
    from tasks.providers.base import Provider


def get(settings: Settings, paths: RunPaths, run: RunState) -> "Provider":
    """The configured provider; imported lazily so `doit list` never loads requests or sh."""
    if settings.project.provider == "runpod":
        from tasks.providers.runpod import RunpodProvider

        return RunpodProvider(settings, paths, run)
    from tasks.providers.local import LocalProvider

    return LocalProvider(settings, paths, run)
