"""Where the 'pod' comes from: the local machine or RunPod, behind one interface (`Provider`).

Entry points: `get()` builds the configured provider; `Pod` is the pod record (pod.json) every
provider fills; `Provider` is what each one does with it. Each provider is imported only when it
is used, so `doit list` never loads requests or sh.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.core.paths import RunPaths
from tasks.core.settings import Settings
from tasks.providers.base import Pod, Provider

if TYPE_CHECKING:
    from tasks.context import Attempt

__all__ = ["Pod", "Provider", "get"]


def get(settings: Settings, paths: RunPaths, attempt: "Attempt", pod_name: str = "") -> Provider:
    """The configured provider; imported lazily so `doit list` never loads requests or sh."""
    if settings.project.provider == "runpod":
        from tasks.providers.runpod import RunpodProvider

        return RunpodProvider(settings, paths, attempt, pod_name)
    from tasks.providers.local import LocalProvider

    return LocalProvider(settings, paths, attempt)
