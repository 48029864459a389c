"""RunPod's API behind one interface, GraphQL (the seed's) or REST v2 (GraphQL retires in 2027).

Both backends turn RunPod's answers into the same few outcomes, so the provider's fallback logic
does not care which one spoke: a PodInfo, NoCapacityError (try the next candidate), SkipCandidate
(this pool is not allowed), RetryableApiError (same candidate again, after a pause), or a fatal
ApiError (bad key, no balance, bad request: stop before renting anything else).

The key travels only in the Authorization header; it is never part of a URL, a log or an error.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import requests

from tasks.errors import NoCapacityError, ProviderError
from tasks.retry import GaveUp, Policy, retry

log = logging.getLogger("fullcycle")

GRAPHQL_URL = "https://api.runpod.io/graphql"
REST_URL = "https://api.runpod.io"
CAPACITY_MARKERS = ("no longer any instances available", "no instances available", "not enough free")
T = TypeVar("T")


class ApiError(ProviderError):
    """Fatal: retrying or another candidate will not help."""


class RetryableApiError(ProviderError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Gone(ApiError):
    """The endpoint answered 410 Gone: that API generation is retired."""


class SkipCandidate(ProviderError):
    """This GPU/cloud pool is not open to the account (REST 403): try the next."""


@dataclass
class CreateRequest:
    name: str
    gpu_type: str
    cloud_type: str
    gpu_count: int
    template_id: str
    image_name: str
    min_vcpu_count: int
    min_memory_gb: int
    volume_gb: int
    container_disk_gb: int
    public_key: str = ""
    support_public_ip: bool = True  # GraphQL only; without it a COMMUNITY pod may have no public IP
    network_volume_id: str = ""  # mounted at /workspace instead of a pod volume: venv and models persist
    data_center_id: str = ""  # the network volume's data center: the pod must be placed there
    terminate_after: str = ""  # dead-man's switch on RunPod's side (GraphQL only; docs say unreliable)
    min_cuda_version: str = ""  # hosts whose driver supports at least this CUDA ("12.8")
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pod_env(self) -> dict[str, str]:
        """The pod's environment: sshd there takes our key from PUBLIC_KEY, no account keys needed."""
        return dict(self.env, **({"PUBLIC_KEY": self.public_key} if self.public_key else {}))


@dataclass
class Offer:
    """One GPU type in one cloud as the catalogue lists it now."""

    gpu: str
    cloud: str
    price_per_hr: float | None  # list price for the pod's gpu_count
    memory_gb: int | None
    availability: str | None  # NONE, LOW, MEDIUM, HIGH (None: not said)


KNOWN_CUDA = ("12.4", "12.6", "12.8", "12.9", "13.0", "13.1", "13.2")  # what RunPod's hosts report (late 2026)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


RETIRED = ('RunPod has retired its GraphQL API ({detail}): set [runpod] api = "rest" in fullcycle.toml '
           '(the REST v2 API does everything this tool needs); nothing was rented')


@dataclass
class PodInfo:
    id: str
    name: str | None = None
    status: str | None = None  # RUNNING, EXITED, TERMINATED, ... (GraphQL: desiredStatus)
    running: bool = False  # the container is up (runtime present), not just desired
    cost_per_hr: float | None = None
    gpu: str | None = None
    host_id: str | None = None  # gateway ssh user
    public_ip: str | None = None  # direct ssh, from the tcp mapping of port 22
    ssh_port: int | None = None
    ssh_user: str | None = None  # the direct login user where the API says (v2 ssh.direct.username)
    uptime_s: float | None = None


def _retry_after(resp: requests.Response) -> float | None:
    try:
        return float(resp.headers.get("Retry-After", ""))
    except ValueError:
        return None


def _detail(resp: requests.Response) -> str:
    """What the server said about its error (problem+json `detail`, a GraphQL message), short."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    said = body.get("detail") or "; ".join(e.get("message", "") for e in body.get("errors") or [] if isinstance(e, dict))
    return f": {str(said)[:200]}" if said else ""


def with_retries(call: Callable[[], T], what: str, attempts: int = 6, base_delay: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """Retry 429/5xx/timeouts with exponential backoff, honouring Retry-After; then ApiError."""
    policy = Policy(attempts=attempts, delay=base_delay)
    try:
        return retry(call, what, policy, (RetryableApiError,), wait_hint=lambda exc: getattr(exc, "retry_after", None),
                     sleep=sleep)
    except GaveUp as exc:
        raise ApiError(str(exc)) from None


class _Http:
    def __init__(self, api_key: str, timeout: float = 30.0) -> None:
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.session.headers["User-Agent"] = "fullcycle"
        self.timeout = timeout
        self.calls = 0

    def request(self, method: str, url: str, **kw: Any) -> requests.Response:
        self.calls += 1
        try:
            resp = self.session.request(method, url, timeout=self.timeout, **kw)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RetryableApiError(f"{method} {url}: {type(exc).__name__}") from None
        if resp.status_code == 401:
            raise ApiError("RunPod rejected the API key (HTTP 401): check RUNPOD_API_KEY")
        if resp.status_code == 402:
            raise ApiError("RunPod says the account has no balance (HTTP 402): add credit, nothing was rented")
        if resp.status_code == 410:
            raise Gone(f"HTTP 410 Gone from {url}")
        if resp.status_code == 429 or resp.status_code >= 500:
            raise RetryableApiError(f"HTTP {resp.status_code} from {url}{_detail(resp)}", _retry_after(resp))
        return resp


# --------------------------------------------------------------------------- GraphQL

_POD_FIELDS = ("id name desiredStatus costPerHr machine { podHostId gpuDisplayName } "
               "runtime { uptimeInSeconds ports { ip isIpPublic privatePort publicPort type } }")
CREATE = ("mutation Create($input: PodFindAndDeployOnDemandInput!) { podFindAndDeployOnDemand(input: $input) "
          "{ id costPerHr desiredStatus machine { podHostId gpuDisplayName } } }")
GET = f"query Pod($input: PodFilter!) {{ pod(input: $input) {{ {_POD_FIELDS} }} }}"
TERMINATE = "mutation Terminate($input: PodTerminateInput!) { podTerminate(input: $input) }"
LIST = "query Pods { myself { id pods { id name desiredStatus costPerHr runtime { uptimeInSeconds } } } }"
VOLUMES = "query Volumes { myself { networkVolumes { id name dataCenterId } } }"


class PodApi(Protocol):
    """What the provider asks of RunPod, whichever API generation answers it."""

    name: str
    has_billing: bool  # whether billed() can ever answer (REST); GraphQL has no billing record

    @property
    def calls(self) -> int:
        """HTTP requests sent so far (the summary and the benchmarks count them)."""

    def check_key(self) -> None:
        """Fail (ApiError) before anything is rented when the key is missing or refused."""

    def create(self, req: CreateRequest) -> PodInfo:
        """Rent one pod of `req`'s GPU and cloud type; NoCapacityError when none is free."""

    def get(self, pod_id: str) -> PodInfo | None:
        """The pod as the API sees it now; None when it no longer exists."""

    def terminate(self, pod_id: str) -> None:
        """End the pod; idempotent (an unknown pod is already gone)."""

    def list(self) -> list[PodInfo]:
        """Every pod on the account."""

    def volume_data_center(self, volume_id: str) -> str | None:
        """The data center a network volume lives in (None when the account has no such volume)."""

    def catalog(self, clouds: tuple[str, ...], gpu_count: int) -> list[Offer] | None:
        """Every GPU type's price, memory and availability per cloud; None when this API has none."""

    def datacenter_availability(self) -> dict[str, dict[str, str]] | None:
        """data center -> GPU type -> availability level; None when this API has none."""

    def billed(self, pod_id: str, since: str) -> float | None:
        """What RunPod billed for the pod since `since` (USD); None until billing shows it."""

    def logs(self, pod_id: str, tail: int = 200) -> str | None:
        """The pod's container and system log (the last `tail` lines); None when not offered."""


class GraphqlApi:
    name = "graphql"
    has_billing = False

    def __init__(self, api_key: str, url: str | None = None) -> None:
        self.http = _Http(api_key)
        self.url = url or os.environ.get("RUNPOD_GRAPHQL_URL") or GRAPHQL_URL

    @property
    def calls(self) -> int:
        return self.http.calls

    def _post(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            resp = self.http.request("POST", self.url, json={"query": query, "variables": variables or {}})
        except Gone as exc:
            raise Gone(RETIRED.format(detail=str(exc))) from None
        try:
            body = resp.json()
        except ValueError:
            raise RetryableApiError(f"HTTP {resp.status_code} with a non-JSON body") from None
        errors = body.get("errors") or []
        if resp.status_code == 400 or errors:  # errors come with partial data such as {"podTerminate": null}
            message = "; ".join(e.get("message", "") for e in errors) or f"HTTP {resp.status_code}"
            lowered = message.lower()
            if any(m in lowered for m in CAPACITY_MARKERS):
                raise NoCapacityError(message)
            if "something went wrong" in lowered:
                raise RetryableApiError(message)
            if "retired" in lowered or "has been deprecated and removed" in lowered:
                raise Gone(RETIRED.format(detail=message))
            raise ApiError(f"RunPod GraphQL error: {message}")
        return body.get("data") or {}

    def check_key(self) -> None:
        self._post(LIST)

    def create(self, req: CreateRequest) -> PodInfo:
        payload: dict[str, Any] = {
            "cloudType": req.cloud_type, "gpuTypeId": req.gpu_type, "gpuCount": req.gpu_count,
            "minVcpuCount": req.min_vcpu_count, "minMemoryInGb": req.min_memory_gb,
            "volumeInGb": req.volume_gb, "containerDiskInGb": req.container_disk_gb, "name": req.name,
            "ports": "22/tcp", "supportPublicIp": req.support_public_ip, "startSsh": True, "volumeMountPath": "/workspace",
        }
        if req.terminate_after:
            payload["terminateAfter"] = req.terminate_after
        if req.min_cuda_version:  # GraphQL takes the exact set; REST takes the floor
            payload["allowedCudaVersions"] = [v for v in KNOWN_CUDA if _version(v) >= _version(req.min_cuda_version)]
        if req.network_volume_id:
            payload.update(networkVolumeId=req.network_volume_id, dataCenterId=req.data_center_id, volumeInGb=0)
        if req.template_id:
            payload["templateId"] = req.template_id
        if req.image_name:
            payload["imageName"] = req.image_name
        if req.pod_env:
            payload["env"] = [{"key": k, "value": v} for k, v in req.pod_env.items()]
        pod = self._post(CREATE, {"input": payload}).get("podFindAndDeployOnDemand")
        if not pod or not pod.get("id"):
            raise NoCapacityError("podFindAndDeployOnDemand returned no pod id")
        return self._info(pod)

    def get(self, pod_id: str) -> PodInfo | None:
        pod = self._post(GET, {"input": {"podId": pod_id}}).get("pod")
        return self._info(pod) if pod else None

    def terminate(self, pod_id: str) -> None:
        try:
            self._post(TERMINATE, {"input": {"podId": pod_id}})
        except ApiError as exc:
            if "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
                return  # already gone: terminating is idempotent
            raise

    def list(self) -> list[PodInfo]:
        pods = (self._post(LIST).get("myself") or {}).get("pods") or []
        return [self._info(p) for p in pods]

    def volume_data_center(self, volume_id: str) -> str | None:
        volumes = (self._post(VOLUMES).get("myself") or {}).get("networkVolumes") or []
        return next((v.get("dataCenterId") for v in volumes if v.get("id") == volume_id), None)

    # GraphQL has no catalogue, billing record or container log: the REST API does.
    def catalog(self, clouds: tuple[str, ...], gpu_count: int) -> list[Offer] | None:
        return None

    def datacenter_availability(self) -> dict[str, dict[str, str]] | None:
        return None

    def billed(self, pod_id: str, since: str) -> float | None:
        return None

    def logs(self, pod_id: str, tail: int = 200) -> str | None:
        return None

    @staticmethod
    def _info(pod: dict[str, Any]) -> PodInfo:
        machine = pod.get("machine") or {}
        runtime = pod.get("runtime")
        info = PodInfo(id=pod["id"], name=pod.get("name"), status=pod.get("desiredStatus"),
                       running=runtime is not None, cost_per_hr=pod.get("costPerHr"),
                       gpu=machine.get("gpuDisplayName"), host_id=machine.get("podHostId"),
                       uptime_s=(runtime or {}).get("uptimeInSeconds"))
        for port in (runtime or {}).get("ports") or []:
            # port 22 is listed twice, udp and tcp: only the public tcp mapping is sshd
            if port.get("privatePort") == 22 and port.get("type") == "tcp" and port.get("isIpPublic"):
                info.public_ip, info.ssh_port = port.get("ip"), port.get("publicPort")
        return info


# --------------------------------------------------------------------------- REST v2


class RestApi:
    name = "rest"
    has_billing = True

    def __init__(self, api_key: str, url: str | None = None) -> None:
        self.http = _Http(api_key)
        self.url = (url or os.environ.get("RUNPOD_API_URL") or REST_URL).rstrip("/")

    @property
    def calls(self) -> int:
        return self.http.calls

    def _problem(self, resp: requests.Response) -> str:
        try:
            body = resp.json()
            return f"{body.get('title', '')}: {body.get('detail', '')}".strip(": ")
        except ValueError:
            return resp.text[:300]

    def check_key(self) -> None:
        resp = self.http.request("GET", f"{self.url}/v2/pods")
        if resp.status_code != 200:
            raise ApiError(f"RunPod REST: GET /v2/pods -> {resp.status_code} {self._problem(resp)}")

    def create(self, req: CreateRequest) -> PodInfo:
        body: dict[str, Any] = {
            "name": req.name, "cloud": req.cloud_type, "gpu": {"id": req.gpu_type, "count": req.gpu_count},
            "disk": req.container_disk_gb, "ports": ["22/tcp"], "startSsh": True,
        }
        if req.min_cuda_version:
            body["gpu"]["minCudaVersion"] = req.min_cuda_version
        if req.network_volume_id:
            body["mounts"] = {"network": [{"volumeId": req.network_volume_id, "path": "/workspace"}]}
            body["dataCenterIds"] = [req.data_center_id]
        elif req.volume_gb:
            body["mounts"] = {"persistent": {"size": max(req.volume_gb, 10), "path": "/workspace"}}
        if req.template_id:
            body["templateId"] = req.template_id
        if req.image_name:
            body["image"] = req.image_name
        if req.pod_env:
            body["env"] = req.pod_env
        resp = self.http.request("POST", f"{self.url}/v2/pods", json=body)
        if resp.status_code in (200, 201):
            return self._info(resp.json())
        problem = self._problem(resp)
        if resp.status_code == 400:
            raise NoCapacityError(problem)  # not placeable: next candidate
        if resp.status_code == 403:
            raise SkipCandidate(problem)
        raise ApiError(f"RunPod REST: POST /v2/pods -> {resp.status_code} {problem}")

    def _get(self, path: str) -> dict[str, Any] | None:
        """GET one resource; None when it does not exist (404)."""
        resp = self.http.request("GET", f"{self.url}{path}")
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise ApiError(f"RunPod REST: GET {path} -> {resp.status_code} {self._problem(resp)}")
        return resp.json()

    def get(self, pod_id: str) -> PodInfo | None:
        pod = self._get(f"/v2/pods/{pod_id}")
        return self._info(pod) if pod is not None else None

    def terminate(self, pod_id: str) -> None:
        resp = self.http.request("DELETE", f"{self.url}/v2/pods/{pod_id}")
        if resp.status_code not in (200, 204, 404):
            raise ApiError(f"RunPod REST: DELETE /v2/pods/{pod_id} -> {resp.status_code} {self._problem(resp)}")

    def volume_data_center(self, volume_id: str) -> str | None:
        volume = self._get(f"/v2/network-volumes/{volume_id}")
        return volume.get("dataCenter") if volume else None

    def list(self) -> list[PodInfo]:
        resp = self.http.request("GET", f"{self.url}/v2/pods")
        if resp.status_code != 200:
            raise ApiError(f"RunPod REST: GET /v2/pods -> {resp.status_code} {self._problem(resp)}")
        return [self._info(p) for p in resp.json().get("pods", [])]

    def catalog(self, clouds: tuple[str, ...], gpu_count: int) -> list[Offer] | None:
        offers = []
        for cloud in clouds:
            body = self._get(f"/v2/catalog/gpus?include=AVAILABILITY&product=POD&cloud={cloud}&count={gpu_count}")
            for gpu in (body or {})["gpus"]:
                price = (gpu.get("price") or {}).get(cloud.lower())
                offers.append(Offer(gpu=gpu["id"], cloud=cloud, memory_gb=gpu.get("memory"),
                                    price_per_hr=round(price * gpu_count, 4) if isinstance(price, (int, float)) else None,
                                    availability=gpu.get("availability") if gpu.get(cloud.lower(), True) else "NONE"))
        return offers

    def datacenter_availability(self) -> dict[str, dict[str, str]] | None:
        body = self._get("/v2/catalog/datacenters?include=GPU_AVAILABILITY")
        return {dc["id"]: {g["id"]: g["availability"] for g in dc.get("gpuAvailability") or []}
                for dc in (body or {})["dataCenters"]}

    def billed(self, pod_id: str, since: str) -> float | None:
        body = self._get(f"/v2/billing/pods?podId={pod_id}&bucketSize=hour&startTime={since}")
        records = (body or {}).get("records") or []
        if not records:
            return None  # billing lags the pod's end: not there yet
        totals = ((body or {}).get("metadata") or {}).get("totals") or {}
        total = totals.get("totalAmount")
        return round(float(total if isinstance(total, (int, float)) else
                           sum(r.get("totalAmount") or 0 for r in records)), 4)

    def logs(self, pod_id: str, tail: int = 200, max_bytes: int = 256_000, seconds: float = 10.0) -> str | None:
        """The log is a live event stream: read the backfill, bounded in bytes and time, then stop."""
        lines, got, started = [], 0, time.monotonic()
        try:
            with self.http.session.get(f"{self.url}/v2/pods/{pod_id}/logs?tail={tail}", stream=True,
                                       timeout=(self.http.timeout, 2.0)) as resp:
                self.http.calls += 1
                if resp.status_code != 200:
                    return None
                for raw in resp.iter_lines():
                    got += len(raw or b"")
                    if raw and raw.startswith(b"data:"):
                        lines.append(_log_line(raw[5:].strip()))
                    if got > max_bytes or time.monotonic() - started > seconds:
                        break
        except (requests.RequestException, OSError):  # the stream ends by timing out once the backfill is sent
            pass
        return "\n".join(lines) if lines else None

    @staticmethod
    def _info(pod: dict[str, Any]) -> PodInfo:
        """The v2 `ssh` block is the authority on how to reach the pod: `direct` when it names a
        host and port, `proxy` for the gateway. A runtime port alone makes a pod direct-reachable
        only when there is no ssh block at all and its address is public (10.x is not)."""
        runtime = pod.get("runtime")
        ssh = pod.get("ssh")
        info = PodInfo(id=pod["id"], name=pod.get("name"), status=pod.get("status"),
                       running=pod.get("status") == "RUNNING" and runtime is not None,
                       cost_per_hr=pod.get("cost"), gpu=(pod.get("gpu") or {}).get("id"),
                       uptime_s=(runtime or {}).get("uptime"))
        if isinstance(ssh, dict):
            direct, proxy = ssh.get("direct") or {}, ssh.get("proxy") or {}
            info.host_id = proxy.get("username") or None
            if direct.get("host") and direct.get("port") and is_public(direct["host"]):
                info.public_ip, info.ssh_port = direct["host"], direct["port"]
                info.ssh_user = direct.get("username") or None
            return info
        for port in (runtime or {}).get("ports") or []:
            if (port.get("private") == 22 and port.get("type") == "tcp" and port.get("public")
                    and is_public(port.get("ip") or "")):
                info.public_ip, info.ssh_port = port["ip"], port["public"]
        return info


def is_public(host: str) -> bool:
    """Private (10/8, 172.16/12, 192.168/16), link-local and CGNAT addresses are not reachable from
    here; a name is taken as public. Loopback counts as public so tests on 127.0.0.1 work."""
    import ipaddress

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return bool(host)
    return address.is_loopback or address.is_global


def _log_line(data: bytes) -> str:
    try:
        event = json.loads(data)
        return f"{event.get('ts', '')} [{event.get('source', '')}] {event.get('line', '')}"
    except (ValueError, AttributeError):
        return data.decode(errors="replace")


def client(backend: str, api_key: str | None) -> PodApi:
    if not api_key:
        raise ApiError("RUNPOD_API_KEY is not set: export your RunPod API key before `doit full_cycle` "
                       "(nothing was rented)")
    return RestApi(api_key) if backend == "rest" else GraphqlApi(api_key)
