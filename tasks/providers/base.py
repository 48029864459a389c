"""The pod record (pod.json) and what every provider does with it."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tasks.core.errors import ProviderError
from tasks.core.files import read_record, write_json
from tasks.transport.connection import Connection


class UnreadablePod(ProviderError):
    """pod.json is there and cannot be trusted: nothing may assume there is no pod."""


class PodUnknown(ProviderError):
    """The provider would not say what became of the pod for the whole time it was asked: the pod may
    still be billing, so nothing may act as if it were gone (no second rental, no "terminated")."""


class Fate(str, enum.Enum):
    """What the provider says of a pod; an error is none of these (PodUnknown)."""

    ALIVE = "alive"  # provisioning, starting or running: usable, and billing
    STOPPED = "stopped"  # EXITED or ERROR: it runs nothing, and its disk bills until it is deleted
    GONE = "gone"  # 404 or TERMINATED: nothing bills


@dataclass
class Pod:
    provider: str
    pod_id: str
    name: str
    created_at: str
    remote: dict[str, str] = field(default_factory=dict)  # input_dir, output_dir, work_dir, python, hf_home
    gpu: str | None = None
    cloud_type: str | None = None
    cost_per_hr: float | None = None
    host_id: str | None = None
    network_volume_id: str | None = None
    data_center: str | None = None
    connection_mode: str | None = None  # a tasks.core.modes.ConnectionMode value
    transport_notes: list[str] = field(default_factory=list)  # what the first contact found out
    connection_source: str | None = None  # api | connection.json
    ssh_user: str | None = None
    ssh_host: str | None = None
    ssh_port: int | None = None
    ssh_key_path: str | None = None
    running_at: str | None = None  # the container up, before ssh answers
    ready_at: str | None = None
    image: str | None = None  # what the pod runs, as the API says
    image_note: str | None = None  # why that image may change under us (a floating tag)
    image_pull: dict | None = None  # {seconds, cached, from} or {seconds: None, why}: read from the pod's log
    terminate_requested_at: str | None = None
    terminated: bool = False
    terminated_at: str | None = None
    terminated_how: str | None = None  # our stage, or what we found (stopped outside this run, gone) before deleting
    terminate_error: str | None = None
    cost_usd_billed: float | None = None  # what the provider billed, asked after termination

    def topology(self, rank: int = 0) -> str:
        """For the runner's torchrun on node `rank`: "NODES NODE_RANK MASTER_ADDR MASTER_PORT" on a
        cluster, else empty (one machine: --standalone)."""
        if not self.cluster:
            return ""
        c = self.cluster
        return f"{c['pods']} {rank} {c.get('master_addr') or ''} {c.get('master_port') or ''}"

    @property
    def run_dir(self) -> str:
        """Where the pod-side scripts keep the training's log, pid, exit code and packed adapter."""
        return self.remote["work_dir"] + "/run"

    account_key: str | None = None  # whether RunPod's proxy knows our key from the account, or only SSH_PUBLIC_KEY
    # an Instant Cluster (pod_id is its id): {id, pods, gpus_per_pod, nodes: [{pod_id, rank, ip, ssh...}],
    # master_addr, master_port}; the ssh fields above are its primary's (rank 0)
    cluster: dict | None = None

    def mark_terminated(self, at: str, how: str = "") -> None:
        """Gone, verified: the first time it was seen gone stays the time it was gone."""
        self.terminated, self.terminated_at, self.terminate_error = True, self.terminated_at or at, None
        self.terminated_how = self.terminated_how or how or None

    def save(self, path: Path) -> None:
        write_json(path, dataclasses.asdict(self))

    @classmethod
    def load(cls, path: Path) -> "Pod | None":
        """The recorded pod, or None when there is none. A pod.json that cannot be read is no reason to
        forget a pod that may be billing: the error names the file and what to do."""
        problems: list[str] = []
        data = read_record(path, problems)
        if problems:
            raise UnreadablePod(f"{problems[0]}; a pod this date rented may still be running: `doit reap_pods` "
                                f"(or the RunPod console) ends it, then delete {path.name} to rent anew")
        if not data:
            return None
        known = {f.name: f for f in dataclasses.fields(cls)}
        missing = [name for name in ("provider", "pod_id", "name", "created_at") if not isinstance(data.get(name), str)]
        if missing:
            raise UnreadablePod(f"{path}: field {missing[0]!r} is missing or not text; fix the file, or end the pod "
                                f"it names with `doit reap_pods` and delete the file")
        return cls(**{k: v for k, v in data.items() if k in known})


class Provider(Protocol):
    name: str
    rents_pods: bool

    def create(self) -> Pod:
        """Rent a pod (or fail with NoCapacityError / ProviderError); it may still be starting."""

    def wait_ready(self, pod: Pod) -> Pod:
        """Block until the pod answers commands, against a deadline; fill its connection fields."""

    def connect(self, pod: Pod) -> Connection:
        """A connection that runs commands on a ready pod (a cluster's primary)."""

    def connect_nodes(self, pod: Pod) -> list[tuple[str, Connection]]:
        """A connection to every node of the pod, the primary first: (node id, connection)."""

    def fate(self, pod: Pod, patient: bool = True) -> tuple[Fate, str]:
        """What the provider says of the pod now (fresh data, not pod.json), with its own word for it.
        An error is not an answer: it is asked again for a bounded time (`patient`), then PodUnknown."""

    def terminate(self, pod: Pod) -> None:
        """Delete and verify gone; raise ProviderError if the pod may still be billing."""

    def list_pods(self) -> list:
        """Every pod the account has (PodInfo-like: id, name, status, uptime_s), for the reaper."""

    def billed(self, pod: Pod) -> float | None:
        """What the provider billed for the terminated pod (USD); None when it does not say (yet)."""

    def container_log(self, pod: Pod) -> str | None:
        """The pod's own log, for a pod that never became reachable; None when there is none."""
