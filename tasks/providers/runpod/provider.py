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
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tasks.core import modes
from tasks.core.dates import now
from tasks.core.errors import NoCapacityError, ProviderError
from tasks.core.files import read_json, write_json
from tasks.core.logs import redact
from tasks.core.paths import RunPaths
from tasks.core.retry import Deadline
from tasks.core.settings import Settings
from tasks.providers.base import Fate, Pod, PodUnknown
from tasks.providers.runpod import choice, cluster, image, reach
from tasks.providers.runpod.client import (
    ApiError,
    CreateRequest,
    PodApi,
    PodInfo,
    RetryableApiError,
    SkipCandidate,
    Unanswered,
    with_retries,
)
from tasks.providers.runpod.connection_file import read_connection_file
from tasks.transport.connection import SessionCounter, SshConnection, script_command

log = logging.getLogger("fullcycle")
T = TypeVar("T")

GONE = ("TERMINATED",)  # PodStatus: permanently deleted
STOPPED = ("EXITED", "ERROR")  # PodStatus: container exited, or an unrecoverable error; the pod's disk still bills
BILLING_ASKS = 3  # what RunPod billed lags the pod's end: asked this many times, [runpod] billing_wait_s apart


class PodStopped(ProviderError):
    """The pod went EXITED or ERROR: it will run nothing, and it bills until it is deleted."""


def api_client(settings: Settings) -> PodApi:
    """The API generation [runpod] api names, with the key from the environment (never a file)."""
    api_key = settings.api_key
    if not api_key:
        raise ApiError("RUNPOD_API_KEY is not set: export your RunPod API key before `doit full_cycle` "
                       "(nothing was rented)")
    if settings.runpod.api == "rest":
        from tasks.providers.runpod.rest import RestApi

        return RestApi(api_key, retry_base_s=settings.runpod.retry_base_s)
    from tasks.providers.runpod.graphql import GraphqlApi

    return GraphqlApi(api_key, retry_base_s=settings.runpod.retry_base_s)


def fate_of(info: PodInfo | None) -> Fate:
    """RunPod's word for a pod, as one of three: only a 404 (None) or TERMINATED is gone."""
    if info is None or info.status in GONE:
        return Fate.GONE
    return Fate.STOPPED if info.status in STOPPED else Fate.ALIVE




class RunpodProvider:
    name = "runpod"
    rents_pods = True  # whether a crashed run can leave something billing

    def __init__(self, settings: Settings, paths: RunPaths, counter: SessionCounter, pod_name: str = "") -> None:
        self.settings, self.paths, self.counter = settings, paths, counter
        self.pod_name = pod_name or f"{settings.runpod.name_prefix}-{paths.date}"  # how the reaper knows ours
        self.s = settings.runpod
        self._api: PodApi | None = None
        self.data_center: str | None = None

    @property
    def api(self):
        if self._api is None:
            self._api = api_client(self.settings)
        return self._api

    # ------------------------------------------------------------------ create

    def _key_path(self) -> Path:
        key = Path(self.s.ssh_key_path).expanduser()
        if not key.is_file():
            raise ProviderError(f"[runpod] ssh_key_path {key} does not exist: create a key (ssh-keygen -t ed25519) "
                                f"or point the setting at yours; nothing was rented")
        return key

    def request(self, gpu: str, cloud: str, public_key: str, gpu_count: int) -> CreateRequest:
        return CreateRequest(
            name=self.pod_name, gpu_type=gpu, cloud_type=cloud,
            gpu_count=gpu_count, template_id=self.s.template_id, image_name=self.s.image_name,
            min_vcpu_count=self.s.min_vcpu_count, min_memory_gb=self.s.min_memory_gb, volume_gb=self.s.volume_gb,
            container_disk_gb=self.s.container_disk_gb, public_key=public_key,
            env=self._pod_env(),
            network_volume_id=self.s.network_volume_id,
            data_center_id=self.data_center or "", min_cuda_version=self.s.min_cuda_version,
            terminate_after=(dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=self.s.max_runtime_h)).isoformat(
                timespec="seconds"),
        )

    @staticmethod
    def _pod_env() -> dict[str, str]:
        """The official image syncs its notebooks at start (10-20 s billed for nothing here). No secret
        travels here: RunPod returns a pod's env to anyone who lists pods, so the hub token goes over
        ssh into a file only the pod's user reads (tasks/pod/upload.py)."""
        return {"UNSLOTH_SKIP_NOTEBOOK_SYNC": "1"}

    def create(self) -> Pod:
        key = self._key_path()
        pub = key.with_name(key.name + ".pub")
        public_key = pub.read_text().strip() if pub.is_file() else ""
        self.api.check_key()  # a bad key stops here, before renting
        account_key = reach.account_key(self.api, public_key, self.s.ssh_key_path)
        self.data_center = choice.volume_data_center(self.api, self.s)
        verdict = read_json(self.paths.model_check_file) or {}
        plan = verdict.get("plan") or {}
        if int(plan.get("pods") or 1) > 1:
            return cluster.create(self, plan, public_key, account_key)
        gpus = int(plan.get("gpus_per_pod") or self.s.gpu_count)  # a sharded plan's GPUs, else gpu_count
        picked = choice.choose(self.api, list(verdict.get("gpu_types") or self.s.gpu_types),  # those the model fits
                               choice.clouds(self.s.cloud_types, self.data_center), gpus, self.s.gpu_choice,
                               verdict.get("needed_gb"), self.data_center)
        write_json(self.paths.gpu_choice_file, picked.record())
        for cand in picked.to_try():
            req = self.request(cand.gpu, cand.cloud, public_key, gpus)
            try:
                info = with_retries(lambda: self._create_once(req), f"create {cand.gpu} / {cand.cloud}",
                                    base_delay=self.s.retry_base_s)
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
                       remote=self.remote(), network_volume_id=self.s.network_volume_id or None,
                       data_center=self.data_center, account_key=account_key)
        write_json(self.paths.gpu_choice_file, picked.record())
        seen = "; ".join(f"{c.gpu}/{c.cloud} {c.verdict}" for c in picked.candidates)
        raise NoCapacityError(f"no capacity on any candidate ({seen}); nothing was rented")

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

    def remote(self) -> dict[str, str]:
        r = self.settings.remote
        return {"input_dir": r.input_dir, "output_dir": r.output_dir, "work_dir": r.work_dir,
                "python": r.python, "hf_home": r.hf_home, "venv_dir": r.venv_dir}

    # ------------------------------------------------------------------ ready + connect

    def _wait_running(self, pod: Pod, deadline: Deadline) -> PodInfo:
        while True:
            info = self._read(pod.pod_id)
            if fate_of(info) is Fate.GONE:
                raise ProviderError(f"pod {pod.pod_id} disappeared while starting")
            if fate_of(info) is Fate.STOPPED:  # it will not come up by waiting: the start failed
                raise PodStopped(f"pod {pod.pod_id} went {info.status} while starting "
                                 f"({'its container exited' if info.status == 'EXITED' else 'an unrecoverable error'})"
                                 f"; it is deleted, not retried on another GPU (the same image would start the same way)")
            if info.running and (info.public_ip or info.host_id):
                return info
            if deadline.passed():
                raise ProviderError(f"pod {pod.pod_id} was not running after {self.s.ready_timeout_s:.0f}s "
                                    f"(runtime {'present' if info.running else 'null'}); it will be terminated")
            time.sleep(self.s.poll_interval_s)

    def wait_ready(self, pod: Pod) -> Pod:
        """Running and answering ssh, or an error that says why, with the pod's own log kept: an image
        still pulling, a crashed start script or a missing driver shows there, not as "timed out"."""
        if pod.cluster:
            return cluster.wait_ready(self, pod)
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
            reached = self.reach(pod, info, refresh=lambda: self._read(pod.pod_id, patient=False))
            pod.connection_mode, pod.ssh_user = reached.connection_mode, reached.ssh_user
            pod.ssh_host, pod.ssh_port, pod.ssh_key_path = reached.ssh_host, reached.ssh_port, reached.ssh_key_path
            pod.connection_source, pod.transport_notes = reached.connection_source, reached.transport_notes
            pod.host_id, pod.ready_at = info.host_id or pod.host_id, now()
            pod.image_pull = image.pull_from_log(pulled.result())
        pod.image_note = image.pin_note(pod.image, pod.image_pull.get("digest"))
        if pod.image_pull.get("seconds") is not None:
            log.info("Image %s: pulled in %ss%s", pod.image, pod.image_pull["seconds"],
                     " (the host had it)" if pod.image_pull.get("cached") else "")
        return pod

    def _endpoints(self, info: PodInfo | None) -> list[reach.Endpoint]:
        return reach.endpoints(info, None, self.s.gateway_host, self.s.gateway_port) if info else []

    def reach(self, pod: Pod, info: PodInfo, refresh: Callable[[], PodInfo | None]) -> Pod:
        """How `info` (the pod, or a cluster's node) is reached, found out by probing, as a Pod's ssh fields.
        RunPod names the proxy as soon as the pod has a machine, the direct port only once it is assigned
        (PodSsh): while only the proxy is known the pod is read again (`refresh`), so a late direct port
        is still taken."""
        override = read_connection_file(self.paths.connection_file)
        key = override["ssh_key_path"] if override else str(self._key_path())
        candidates = reach.endpoints(info, override, self.s.gateway_host, self.s.gateway_port)
        log.info("Reaching pod %s: %s (from %s)", info.id, ", ".join(e.describe() for e in candidates),
                 "connection.json" if override else "the API")
        ssh = self.settings.ssh
        prober = reach.Prober(
            make_exec=lambda ep: self._conn(ep.user, ep.host, ep.port, key, ep.exec_mode),
            make_pty=lambda ep: self._conn(ep.user, ep.host, ep.port, key, modes.ConnectionMode.GATEWAY_PTY),
            probe_command=self._watchdog_command(pod), deadline_s=ssh.probe_timeout_s,
            pause_s=min(self.s.poll_interval_s, 2.0), timeout_s=SshConnection.connect_timeout_s + 10,
            direct_grace_s=ssh.direct_grace_s, refresh_every_s=self.s.poll_interval_s,
            refresh=None if override else (lambda: self._endpoints(refresh())))
        reached = prober.reach(candidates, info.id)
        ep = reached.endpoint
        if reached.mode.is_gateway:
            log.info("Switched to gateway SSH mode (%s): %s@%s", reached.mode, ep.user, ep.host)
        for note in reached.notes:
            log.warning("Connection to pod %s: %s", info.id, note)
        return Pod(provider=self.name, pod_id=info.id, name=info.name or "", created_at=pod.created_at,
                   connection_mode=reached.mode, ssh_user=ep.user, ssh_host=ep.host, ssh_port=ep.port,
                   ssh_key_path=key, connection_source="connection.json" if override else "api",
                   transport_notes=reached.notes)

    def _watchdog_command(self, pod: Pod) -> str:
        """The dead-man's switch, started by the first command that reaches the pod: after max_runtime_h
        the pod ends itself even if this machine is gone, with its own key, over REST first
        (remote/watchdog.sh says the order). Restarting it replaces the old one."""
        from tasks.providers.runpod.rest import URL_ENV, rest_base

        created = dt.datetime.fromisoformat(pod.created_at)
        left = self.s.max_runtime_h * 3600 - (dt.datetime.now(dt.timezone.utc) - created).total_seconds()
        url = getattr(self.api, "url", "") if self.api.name == "rest" else rest_base(os.environ.get(URL_ENV))
        what = f"clusters/{pod.cluster['id']}" if pod.cluster else f"pods/{pod.pod_id}"
        return script_command("watchdog.sh", pod.remote["work_dir"] + "/watchdog.pid", max(int(left), 1), what, url)

    def _conn(self, user: str, host: str, port: int, key: str, mode: str) -> SshConnection:
        return reach.connection(mode, user=user, host=host, port=port, key_path=key,
                                known_hosts=self.paths.known_hosts_file, counter=self.counter)

    def connect(self, pod: Pod) -> SshConnection:
        return self._conn(pod.ssh_user or "root", pod.ssh_host or "", pod.ssh_port or 22, pod.ssh_key_path or "",
                          modes.parse(pod.connection_mode or modes.ConnectionMode.DIRECT))

    def connect_nodes(self, pod: Pod) -> list[tuple[str, SshConnection]]:
        """Every node's connection, the primary first (a single pod is its own only node)."""
        if not pod.cluster:
            return [(pod.pod_id, self.connect(pod))]
        return [(node["pod_id"], self._conn(node["ssh_user"], node["ssh_host"], node["ssh_port"], pod.ssh_key_path or "",
                                            modes.parse(node["connection_mode"]))) for node in pod.cluster["nodes"]]

    # ------------------------------------------------------------------ liveness, listing, terminate

    def _read(self, pod_id: str, patient: bool = True) -> PodInfo | None:
        """The pod as RunPod says it is now, None when it says 404."""
        return self.asked(lambda: self.api.get(pod_id), f"pod {pod_id}", patient)

    def asked(self, call: Callable[[], T], what: str, patient: bool = True) -> T:
        """RunPod's answer about `what`. An error is not an answer: while RunPod does not answer (an outage,
        a rate limit) it is asked again with back-off for [runpod] unknown_timeout_s (`patient`), then
        PodUnknown: what it could not describe may still be billing."""
        deadline = Deadline(self.s.unknown_timeout_s if patient else 0)
        pause = max(self.s.retry_base_s, 0.05)
        while True:
            try:
                return call()
            except Unanswered as exc:
                if deadline.passed():
                    raise PodUnknown(
                        f"RunPod did not say what became of {what}"
                        f"{f' for {self.s.unknown_timeout_s:.0f} s' if patient else ''} ({str(exc)[-160:]}); "
                        f"it may still be running and billing: nothing was rented in its place, and "
                        f"`doit full_cycle` (or `doit terminate_pod`) asks again") from None
                log.warning("RunPod did not answer about %s (%s); asking again in %.0f s (for %.0f s more)",
                            what, str(exc)[-120:], min(pause, deadline.left()), deadline.left())
                time.sleep(min(pause, deadline.left()))
                pause = min(pause * 2, 60.0)

    def fate(self, pod: Pod, patient: bool = True) -> tuple[Fate, str]:
        if pod.cluster:
            return cluster.fate(self, pod, patient)
        info = self._read(pod.pod_id, patient)
        return fate_of(info), (info.status if info else None) or "not found (404)"

    def list_pods(self) -> list[PodInfo]:
        """Every pod and cluster on the account (the reaper picks this project's by name)."""
        return [*self.api.list(), *cluster.listed(self)]

    def billed(self, pod: Pod) -> float | None:
        """What RunPod billed for the pod; billing lags the pod's end, so it is asked a few times."""
        if not self.api.has_billing:
            return None
        since = (pod.created_at or now())[:13] + ":00:00Z"  # the hour it was created in: billing buckets by hour
        for attempt in range(BILLING_ASKS):
            try:
                cost = (self.api.cluster_billed(pod.cluster["id"], since) if pod.cluster
                        else self.api.billed(pod.pod_id, since))
            except (ApiError, RetryableApiError, KeyError, TypeError, ValueError) as exc:
                log.info("billing for pod %s not read: %s", pod.pod_id, str(exc)[:200])
                return None
            if cost is not None:
                return cost
            if attempt + 1 < BILLING_ASKS:
                time.sleep(self.s.billing_wait_s)
        log.info("RunPod's billing does not show pod %s yet (asked %d times)", pod.pod_id, BILLING_ASKS)
        return None

    def container_log(self, pod: Pod) -> str | None:
        """The pod's own log (image pull, start script, driver), for a pod that never became reachable."""
        try:
            return self.api.logs(pod.pod_id)
        except (ApiError, RetryableApiError) as exc:
            log.info("container log of pod %s not read: %s", pod.pod_id, exc)
            return None

    def terminate(self, pod: Pod, verify_s: float = 60.0) -> None:
        """DELETE (a stopped pod too: its disk bills), then read it until RunPod says 404 or TERMINATED;
        an error while verifying is asked again, never taken for gone."""
        if pod.cluster:
            return cluster.terminate(self, pod, verify_s)
        try:
            self.api.terminate(pod.pod_id)
        except ApiError as exc:
            raise ProviderError(f"could not terminate pod {pod.pod_id}: {exc}") from None
        deadline = Deadline(verify_s)
        while True:
            try:
                info = self._read(pod.pod_id, patient=False)
            except PodUnknown as exc:
                info, said = False, str(exc)
            else:
                if fate_of(info) is Fate.GONE:
                    return
                said = f"still reported {info.status}"
            if deadline.passed():
                raise ProviderError(f"pod {pod.pod_id}: {said} {verify_s:.0f}s after the DELETE; it may still be "
                                    f"billing: `doit terminate_pod` tries again")
            time.sleep(min(self.s.poll_interval_s, 2.0))
