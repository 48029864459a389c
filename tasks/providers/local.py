"""The local provider: the 'pod' is a folder under the run folder and commands run with bash.

It exercises every stage the RunPod provider does (upload, detached training, download, extract,
terminate) so `doit full_cycle` works out of the box and the stage graph stays identical.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys

from tasks.core.dates import now
from tasks.core.modes import ConnectionMode
from tasks.core.paths import RunPaths
from tasks.core.settings import Settings
from tasks.providers.base import Fate, Pod
from tasks.transport.connection import Connection, LocalConnection, SessionCounter


class LocalProvider:
    name = "local"
    rents_pods = False  # whether a crashed run can leave something billing

    def __init__(self, settings: Settings, paths: RunPaths, counter: SessionCounter) -> None:
        self.paths, self.counter = paths, counter
        self.root = paths.local_pod_root

    def create(self) -> Pod:
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        remote = {
            "input_dir": str(self.root / "workspace" / "input"),
            "output_dir": str(self.root / "output" / "adapter"),
            "work_dir": str(self.root / "workspace" / "fullcycle"),
            "python": sys.executable,
            "hf_home": os.environ.get("HF_HOME", str(self.paths.cache_dir / "hf-home")),
            "venv_dir": str(self.paths.cache_dir / "pod-venv"),
        }
        return Pod(provider=self.name, pod_id=f"local-{self.paths.date}-{secrets.token_hex(3)}",
                   name=f"local-{self.paths.date}", created_at=now(), remote=remote, gpu="local",
                   cost_per_hr=0.0)

    def wait_ready(self, pod: Pod) -> Pod:
        pod.connection_mode = ConnectionMode.LOCAL
        pod.running_at = pod.ready_at = now()
        return pod

    def connect(self, pod: Pod) -> Connection:
        return LocalConnection(cwd=self.root, counter=self.counter)

    def connect_nodes(self, pod: Pod) -> list[tuple[str, Connection]]:
        return [(pod.pod_id, self.connect(pod))]

    def fate(self, pod: Pod, patient: bool = True) -> tuple[Fate, str]:
        """Its folder is the pod: there while it lives."""
        return (Fate.ALIVE, "its folder is there") if self.root.is_dir() else (Fate.GONE, f"{self.root} is gone")

    def billed(self, pod: Pod) -> float | None:
        """Nobody bills the local machine."""
        return None

    def container_log(self, pod: Pod) -> str | None:
        return None

    def list_pods(self) -> list:
        """The local provider rents nothing: there is never a pod to reap."""
        return []

    def terminate(self, pod: Pod) -> None:
        """Stop a training that may still run detached, as terminating a real pod would."""
        pid_file = self.root / "workspace" / "fullcycle" / "run" / "train.pid"
        try:
            pgid = int(pid_file.read_text().strip())
            os.killpg(pgid, signal.SIGTERM)
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            pass

