"""Where the 'pod' comes from: the local machine or RunPod, behind one interface."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasks.context import RunContext
    from tasks.providers.base import Provider


def get(ctx: "RunContext") -> "Provider":
    """The configured provider; imported lazily so `doit list` never loads requests or sh."""
    if ctx.settings.project.provider == "runpod":
        from tasks.providers.runpod import RunpodProvider

        return RunpodProvider(ctx)
    from tasks.providers.local import LocalProvider

    return LocalProvider(ctx)
