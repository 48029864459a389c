"""The pod's part of the run: rent, resume, check and terminate it (lifecycle.py), what it receives
(manifest.py) and how (upload.py), following the detached training (follow.py), bringing the adapter
home (download.py) and unpacking it safely (extract.py), ending pods a crashed run left (reaper.py), and
`doit gpu_check`: a pod rented for the preflight alone (gpu_check.py).

The entry points are the stages' bodies, loaded when first named: dodo.py reads the manifest while
`doit list` runs, and that must not load ssh and the providers.
"""

from importlib import import_module
from typing import Any

ENTRY_POINTS = {"create_pod": "lifecycle", "terminate_pod": "lifecycle", "ensure_terminated": "lifecycle",
                "upload_inputs": "upload", "follow_training": "follow", "download_adapter": "download",
                "extract_adapter": "extract", "reap": "reaper", "check_gpu": "gpu_check"}
__all__ = sorted(ENTRY_POINTS)


def __getattr__(name: str) -> Any:
    if name in ENTRY_POINTS:
        return getattr(import_module(f"tasks.pod.{ENTRY_POINTS[name]}"), name)
    raise AttributeError(f"module 'tasks.pod' has no attribute {name!r}")
