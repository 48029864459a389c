"""RunPod's GraphQL API (the seed's), behind `PodApi`. RunPod retires it in early 2027: this is the
one file to delete then, with `[runpod] api = "graphql"`.

Its answers map to the same outcomes as REST's (tasks/providers/runpod/client.py): a PodInfo,
NoCapacityError, RetryableApiError or a fatal ApiError.
"""

from __future__ import annotations

import os
from typing import Any

from tasks.core.errors import NoCapacityError
from tasks.providers.runpod.client import (
    CAPACITY_MARKERS,
    KNOWN_CUDA,
    RETIRED,
    ApiError,
    CreateRequest,
    Gone,
    Http,
    Offer,
    PodInfo,
    RetryableApiError,
    _version,
)

GRAPHQL_URL = "https://api.runpod.io/graphql"


_POD_FIELDS = ("id name desiredStatus costPerHr imageName machine { podHostId gpuDisplayName } "
               "runtime { uptimeInSeconds ports { ip isIpPublic privatePort publicPort type } }")
CREATE = ("mutation Create($input: PodFindAndDeployOnDemandInput!) { podFindAndDeployOnDemand(input: $input) "
          "{ id costPerHr desiredStatus machine { podHostId gpuDisplayName } } }")
GET = f"query Pod($input: PodFilter!) {{ pod(input: $input) {{ {_POD_FIELDS} }} }}"
TERMINATE = "mutation Terminate($input: PodTerminateInput!) { podTerminate(input: $input) }"
LIST = "query Pods { myself { id pods { id name desiredStatus costPerHr runtime { uptimeInSeconds } } } }"
VOLUMES = "query Volumes { myself { networkVolumes { id name dataCenterId } } }"


class GraphqlApi:
    name = "graphql"
    has_billing = False

    def __init__(self, api_key: str, url: str | None = None, retry_base_s: float = 1.0) -> None:
        self.http = Http(api_key, retry_base_s=retry_base_s)
        self.url = url or os.environ.get("RUNPOD_GRAPHQL_URL") or GRAPHQL_URL

    @property
    def calls(self) -> int:
        return self.http.calls

    def _post(self, query: str, variables: dict[str, Any] | None = None, once: bool = False) -> dict[str, Any]:
        """One query, retried as every call to RunPod is (a 429, a 5xx, "Something went wrong"); `once`
        leaves the retry to the caller (a create: it looks for the pod it may have made first)."""
        if once:
            return self._post_once(query, variables)
        return self.http.retrying(lambda: self._post_once(query, variables), f"GraphQL {query.split('(')[0]}")

    def _post_once(self, query: str, variables: dict[str, Any] | None) -> dict[str, Any]:
        try:
            resp = self.http.send("POST", self.url, json={"query": query, "variables": variables or {}})
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
        pod = self._post(CREATE, {"input": payload}, once=True).get("podFindAndDeployOnDemand")
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

    def account_keys(self) -> list[str] | None:
        return None  # asked of REST only (GET /v2/account/ssh-keys)

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
                       uptime_s=(runtime or {}).get("uptimeInSeconds"), image=pod.get("imageName") or None)
        for port in (runtime or {}).get("ports") or []:
            # port 22 is listed twice, udp and tcp: only the public tcp mapping is sshd
            if port.get("privatePort") == 22 and port.get("type") == "tcp" and port.get("isIpPublic"):
                info.public_ip, info.ssh_port = port.get("ip"), port.get("publicPort")
        return info


