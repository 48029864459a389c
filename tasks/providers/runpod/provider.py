"""The RunPod provider: rent with fallback, wait for a reachable pod, connect without a human, terminate.

The seed's one manual step (copying the gateway user into connection.json) is gone: the gateway
user is the pod's podHostId (GraphQL) or ssh.proxy.username (REST). connection.json still wins
when a person drops one in WORK_LOCAL. Fresh API data always beats anything recorded earlier.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import os
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.core.dates import now
from tasks.core.errors import NoCapacityError, ProviderError
from tasks.core.files import read_json, write_json
from tasks.core.logs import redact
from tasks.core.paths import RunPaths
from tasks.core.retry import Deadline
from tasks.core.settings import Settings
from tasks.providers.base import Pod
from tasks.providers.runpod import choice, image, reach
from tasks.providers.runpod.client import (
    ApiError,
    CreateRequest,
    PodApi,
    PodInfo,
    RetryableApiError,
    SkipCandidate,
    with_retries,
)
from tasks.providers.runpod.connection_file import read_connection_file
from tasks.transport import modes
from tasks.transport.connection import SshConnection, script_command

if TYPE_CHECKING:
    from tasks.context import Attempt

log = logging.getLogger("fullcycle")

GONE = ("TERMINATED",)


def api_client(backend: str, api_key: str | None) -> PodApi:
    """The API generation [runpod] api names, with the key from the environment (never a file)."""
    if not api_key:
        raise ApiError("RUNPOD_API_KEY is not set: export your RunPod API key before `doit full_cycle` "
                       "(nothing was rented)")
    if backend == "rest":
        from tasks.providers.runpod.rest import RestApi

        return RestApi(api_key)
    from tasks.providers.runpod.graphql import GraphqlApi

    return GraphqlApi(api_key)


class RunpodProvider:
    name = "runpod"
    rents_pods = True  # whether a crashed run can leave something billing

    def __init__(self, settings: Settings, paths: RunPaths, attempt: "Attempt", pod_name: str = "") -> None:
        self.settings, self.paths, self.attempt = settings, paths, attempt
        self.pod_name = pod_name or f"{settings.runpod.name_prefix}-{paths.date}"  # how the reaper knows ours
        self.s = settings.runpod
        self._api = None
        self.data_center: str | None = None

    def _retry(self, call, what: str, attempts: int = 6):
        return with_retries(call, what, attempts=attempts, base_delay=self.s.retry_base_s)

    @property
    def api(self):
        if self._api is None:
            self._api = api_client(self.s.api, self.settings.api_key)
        return self._api

    # ------------------------------------------------------------------ create

    def _key_path(self) -> Path:
        key = Path(self.s.ssh_key_path).expanduser()
        if not key.is_file():
            raise ProviderError(f"[runpod] ssh_key_path {key} does not exist: create a key (ssh-keygen -t ed25519) "
                                f"or point the setting at yours; nothing was rented")
        return key

    def _request(self, gpu: str, cloud: str, public_key: str) -> CreateRequest:
        return CreateRequest(
            name=self.pod_name, gpu_type=gpu, cloud_type=cloud,
            gpu_count=self.s.gpu_count, template_id=self.s.template_id, image_name=self.s.image_name,
            min_vcpu_count=self.s.min_vcpu_count, min_memory_gb=self.s.min_memory_gb, volume_gb=self.s.volume_gb,
            container_disk_gb=self.s.container_disk_gb, public_key=public_key,
            env=self._pod_env(),
            support_public_ip=self.s.support_public_ip, network_volume_id=self.s.network_volume_id,
            data_center_id=self.data_center or "", min_cuda_version=self.s.min_cuda_version,
            terminate_after=(dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=self.s.max_runtime_h)).isoformat(
                timespec="seconds"),
        )

    @staticmethod
    def _pod_env() -> dict[str, str]:
        """The official image syncs its notebooks at start (10-20 s billed for nothing here); a gated
        base model is downloaded on the pod and needs the hub token the check used."""
        env = {"UNSLOTH_SKIP_NOTEBOOK_SYNC": "1"}
        if os.environ.get("HF_TOKEN"):
            env["HF_TOKEN"] = os.environ["HF_TOKEN"]
        return env

    def create(self) -> Pod:
        key = self._key_path()
        pub = key.with_name(key.name + ".pub")
        public_key = pub.read_text().strip() if pub.is_file() else ""
        self._retry(self.api.check_key, "RunPod API key check")  # a bad key stops here, before renting
        self.data_center = self._volume_data_center()
        verdict = read_json(self.paths.model_check_file) or {}
        picked = choice.choose(self.api, list(verdict.get("gpu_types") or self.s.gpu_types),  # those the model fits
                               self._clouds(), self.s.gpu_count, self.s.gpu_choice,
                               verdict.get("needed_gb"), self.data_center)
        write_json(self.paths.gpu_choice_file, picked.record())
        for cand in picked.to_try():
            req = self._request(cand.gpu, cand.cloud, public_key)
            try:
                info = self._retry(lambda: self._create_once(req), f"create {cand.gpu} / {cand.cloud}")
            except (NoCapacityError, SkipCandidate) as exc:
                log.info("No %s %s pod: %s", cand.cloud, cand.gpu, exc)
                cand.verdict = f"no capacity: {str(exc)[:120]}"
                continue
            picked.rented(cand)
            write_json(self.paths.gpu_choice_file, picked.record())
            log.info("Rented pod %s: cloudType %s, GPU %s, $%s/h (%s)", info.id, cand.cloud, cand.gpu,
                     info.cost_per_hr, picked.why)
            return Pod(provider=self.name, pod_id=info.id, name=req.name, created_at=now(), gpu=cand.gpu,
                       cloud_type=cand.cloud, cost_per_hr=info.cost_per_hr, host_id=info.host_id,
                       remote=self._remote(), network_volume_id=self.s.network_volume_id or None,
                       data_center=self.data_center)
        write_json(self.paths.gpu_choice_file, picked.record())
        seen = "; ".join(f"{c.gpu}/{c.cloud} {c.verdict}" for c in picked.candidates)
        raise NoCapacityError(f"no capacity on any candidate ({seen}); nothing was rented")

    def _clouds(self) -> tuple[str, ...]:
        """Network volumes are Secure Cloud only: with one, a COMMUNITY pod would be asked for in vain."""
        clouds = tuple(self.s.cloud_types)
        if self.data_center and "SECURE" in clouds and clouds != ("SECURE",):
            log.info("A network volume is Secure Cloud only: not asking for %s pods",
                     ", ".join(c for c in clouds if c != "SECURE"))
            return ("SECURE",)
        if self.data_center and "SECURE" not in clouds:
            raise ProviderError("[runpod] network_volume_id needs Secure Cloud, and [runpod] cloud_types does not "
                                "include \"SECURE\": add it or remove the volume; nothing was rented")
        return clouds

    def _volume_data_center(self) -> str | None:
        """With a network volume the pod must be in the volume's data center: every candidate is
        asked for there only (and fails over to the next GPU type, never to another place)."""
        volume = self.s.network_volume_id
        if not volume:
            return None
        center = self.s.data_center_id or self._retry(lambda: self.api.volume_data_center(volume),
                                                       f"look up network volume {volume}")
        if not center:
            raise ProviderError(f"[runpod] network_volume_id {volume!r} is not on this account, or its data center is "
                                f"unknown: check the id, or set [runpod] data_center_id; nothing was rented")
        log.info("Network volume %s is in %s: pods are placed there only; the venv and models on it persist",
                 volume, center)
        return center

    def _create_once(self, req: CreateRequest) -> PodInfo:
        """One create; after an unanswered one, adopt the pod it may have made instead of renting twice."""
        try:
            return self.api.create(req)
        except RetryableApiError:
            mine = [p for p in self.api.list() if p.name == req.name and p.status not in GONE]
            if mine:
                log.warning("create got no answer but pod %s named %s exists: adopting it", mine[0].id, req.name)
                return mine[0]
            raise

    def _remote(self) -> dict[str, str]:
        r = self.settings.remote
        return {"input_dir": r.input_dir, "output_dir": r.output_dir, "work_dir": r.work_dir,
                "python": r.python, "hf_home": r.hf_home, "venv_dir": r.venv_dir}

    # ------------------------------------------------------------------ ready + connect

    def _wait_running(self, pod: Pod, deadline: Deadline) -> PodInfo:
        while True:
            info = self._retry(lambda: self.api.get(pod.pod_id), f"poll pod {pod.pod_id}")
            if info is None or info.status in GONE:
                raise ProviderError(f"pod {pod.pod_id} disappeared while starting")
            if info.running and (info.public_ip or info.host_id):
                return info
            if deadline.passed():
                raise ProviderError(f"pod {pod.pod_id} was not running after {self.s.ready_timeout_s:.0f}s "
                                    f"(runtime {'present' if info.running else 'null'}); it will be terminated")
            time.sleep(self.s.poll_interval_s)

    def wait_ready(self, pod: Pod) -> Pod:
        """Running and answering ssh, or an error that says why, with the pod's own log kept: an image
        still pulling, a crashed start script or a missing driver shows there, not as "timed out"."""
        try:
            return self._wait_ready(pod)
        except ProviderError as exc:
            text = self.container_log(pod)
            if not text:
                raise
            kept = self.paths.container_log
            kept.write_text(redact(text) + "\n")
            last = redact(text.strip().splitlines()[-1])[-200:]
            raise ProviderError(f"{exc}; the pod's own log is kept in {kept} (last line: {last})") from None

    def _wait_ready(self, pod: Pod) -> Pod:
        info = self._wait_running(pod, Deadline(self.s.ready_timeout_s))
        pod.running_at, pod.image = now(), info.image or self.s.image_name or None
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # the pod's log is read while ssh is probed
            pulled = pool.submit(self.container_log, pod)
            pod = self._reach(pod, info)
            pod.image_pull = image.pull_from_log(pulled.result())
        pod.image_note = image.pin_note(pod.image, pod.image_pull.get("digest"))
        if pod.image_pull.get("seconds") is not None:
            log.info("Image %s: pulled in %ss%s", pod.image, pod.image_pull["seconds"],
                     " (the host had it)" if pod.image_pull.get("cached") else "")
        return pod

    def _reach(self, pod: Pod, info: PodInfo) -> Pod:
        override = read_connection_file(self.paths.connection_file)
        key = override["ssh_key_path"] if override else str(self._key_path())
        candidates = reach.endpoints(info, override, self.s.gateway_host, self.s.gateway_port, self.s.direct_users)
        log.info("Reaching pod %s: %s (from %s)", pod.pod_id, ", ".join(e.describe() for e in candidates),
                 "connection.json" if override else "the API")
        ssh = self.settings.ssh
        prober = reach.Prober(
            make_exec=lambda ep: self._conn(ep.user, ep.host, ep.port, key, ep.exec_mode),
            make_pty=lambda ep: self._conn(ep.user, ep.host, ep.port, key, modes.ConnectionMode.GATEWAY_PTY),
            probe_command=self._watchdog_command(pod), deadline_s=ssh.probe_timeout_s,
            pause_s=min(self.s.poll_interval_s, 2.0), timeout_s=ssh.connect_timeout_s + 10,
            direct_grace_s=ssh.direct_grace_s)
        reached = prober.reach(candidates, pod.pod_id)
        ep = reached.endpoint
        pod.connection_mode, pod.ssh_user, pod.ssh_host, pod.ssh_port = reached.mode, ep.user, ep.host, ep.port
        pod.ssh_key_path, pod.connection_source = key, "connection.json" if override else "api"
        pod.transport_notes = reached.notes
        pod.host_id = info.host_id or pod.host_id
        if reached.mode.is_gateway:
            log.info("Switched to gateway SSH mode (%s): %s@%s", reached.mode, ep.user, ep.host)
        for note in reached.notes:
            log.warning("Connection to pod %s: %s", pod.pod_id, note)
        pod.ready_at = now()
        return pod

    def _watchdog_command(self, pod: Pod) -> str:
        """The dead-man's switch, started by the first command that reaches the pod: it ends the pod
        after max_runtime_h even if this machine dies. Restarting it replaces the old one."""
        command = self.s.watchdog_command
        if not command:
            return "true"
        created = dt.datetime.fromisoformat(pod.created_at)
        left = self.s.max_runtime_h * 3600 - (dt.datetime.now(dt.timezone.utc) - created).total_seconds()
        return script_command("watchdog.sh", pod.remote["work_dir"] + "/watchdog.pid", max(int(left), 1),
                              command.replace("{pod_id}", shlex.quote(pod.pod_id)))

    def _conn(self, user: str, host: str, port: int, key: str, mode: str) -> SshConnection:
        ssh = self.settings.ssh
        return reach.connection(mode, user=user, host=host, port=port, key_path=key,
                                known_hosts=self.paths.known_hosts_file, connect_timeout_s=ssh.connect_timeout_s,
                                server_alive_interval_s=ssh.server_alive_interval_s,
                                server_alive_count_max=ssh.server_alive_count_max, counter=self.attempt)

    def connect(self, pod: Pod) -> SshConnection:
        return self._conn(pod.ssh_user or "root", pod.ssh_host or "", pod.ssh_port or 22, pod.ssh_key_path or "",
                          modes.parse(pod.connection_mode or modes.ConnectionMode.DIRECT))

    # ------------------------------------------------------------------ liveness, listing, terminate

    def list_pods(self) -> list[PodInfo]:
        """Every pod on the account (the reaper picks this project's by name)."""
        return self._retry(self.api.list, "list pods")

    def fate(self, pod: Pod) -> str | None:
        """What became of a pod this run cannot reach: None while the API still has it running."""
        try:
            info = self._retry(lambda: self.api.get(pod.pod_id), f"look up pod {pod.pod_id}", attempts=3)
        except ApiError:
            return None  # the API cannot tell either: nothing to add
        if info is None:
            return f"pod {pod.pod_id} was terminated outside this run (RunPod no longer lists it)"
        if info.status in GONE or info.status == "EXITED":
            return f"pod {pod.pod_id} was stopped or terminated outside this run (RunPod says {info.status})"
        return None

    def billed(self, pod: Pod) -> float | None:
        """What RunPod billed for the pod; billing lags the pod's end, so it is asked a few times."""
        if not self.api.has_billing:
            return None
        since = (pod.created_at or now())[:13] + ":00:00Z"  # the hour it was created in: billing buckets by hour
        for attempt in range(self.s.billing_attempts):
            try:
                cost = self.api.billed(pod.pod_id, since)
            except (ApiError, RetryableApiError, KeyError, TypeError, ValueError) as exc:
                log.info("billing for pod %s not read: %s", pod.pod_id, str(exc)[:200])
                return None
            if cost is not None:
                return cost
            if attempt + 1 < self.s.billing_attempts:
                time.sleep(self.s.billing_wait_s)
        log.info("RunPod's billing does not show pod %s yet (asked %d times)", pod.pod_id, self.s.billing_attempts)
        return None

    def container_log(self, pod: Pod) -> str | None:
        """The pod's own log (image pull, start script, driver), for a pod that never became reachable."""
        try:
            return self.api.logs(pod.pod_id)
        except (ApiError, RetryableApiError) as exc:
            log.info("container log of pod %s not read: %s", pod.pod_id, exc)
            return None

    def is_alive(self, pod: Pod) -> bool:
        try:
            info = self._retry(lambda: self.api.get(pod.pod_id), f"poll pod {pod.pod_id}", attempts=3)
        except ApiError:
            return False
        return info is not None and info.status not in GONE and info.status != "EXITED"

    def terminate(self, pod: Pod, verify_s: float = 60.0) -> None:
        """podTerminate, retried; then poll until the API no longer lists the pod as alive."""
        try:
            self._retry(lambda: self.api.terminate(pod.pod_id), f"terminate pod {pod.pod_id}")
        except ApiError as exc:
            raise ProviderError(f"could not terminate pod {pod.pod_id}: {exc}") from None
        deadline = Deadline(verify_s)
        while True:
            info = self._retry(lambda: self.api.get(pod.pod_id), f"verify termination of {pod.pod_id}")
            if info is None or info.status in GONE:
                return
            if deadline.passed():
                raise ProviderError(f"pod {pod.pod_id} still reported {info.status} {verify_s:.0f}s after podTerminate")
            time.sleep(min(self.s.poll_interval_s, 2.0))
