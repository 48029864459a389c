"""Where the 'pod' comes from: the local machine or RunPod, behind one interface (`Provider`).

Entry points: `get()` builds the configured provider; `Pod` is the pod record (pod.json) every
provider fills; `Provider` is what each one does with it. Each provider is imported only when it
is used, so `doit list` never loads requests or sh.
"""

from __future__ import annotations

from tasks.core.paths import RunPaths
from tasks.core.settings import Settings
from tasks.providers.base import Pod, Provider
from tasks.transport.connection import SessionCounter

__all__ = ["Pod", "Provider", "get"]


def get(settings: Settings, paths: RunPaths, counter: SessionCounter, pod_name: str = "") -> Provider:
    """The configured provider (a RunContext makes it on first use: tasks/pipeline/assemble.py)."""
    if settings.project.provider == "runpod":
        from tasks.providers.runpod import RunpodProvider

        return RunpodProvider(settings, paths, counter, pod_name)
    from tasks.providers.local import LocalProvider

    return LocalProvider(settings, paths, counter)
