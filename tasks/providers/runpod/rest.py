"""RunPod's REST v2 API (the default), behind `PodApi`: pods, the GPU catalogue, data centers,
billing, the pod's own log and network volumes (see the vendored OpenAPI spec in tests/doubles/)."""

from __future__ import annotations

import ipaddress
import json
import os
import time
from typing import Any
from urllib.parse import urlsplit

import requests

from tasks.core.errors import NoCapacityError
from tasks.providers.runpod.client import (
    ApiError,
    CreateRequest,
    Http,
    Offer,
    PodInfo,
    SkipCandidate,
)

REST_URL = "https://api.runpod.io"  # the spec's server; paths start with /v2
URL_ENV = "RUNPOD_API_URL"


def rest_base(configured: str | None) -> str:
    """The server the /v2 paths are appended to. runpodctl reads RUNPOD_API_URL as a REST base that
    includes its version (`https://rest.runpod.io/v1`): such a value names the retired v1, so it is
    not ours to append /v2 to; a trailing /v2 is dropped; any other value (a double, a proxy) is the base."""
    if not configured:
        return REST_URL
    base = configured.rstrip("/")
    path = urlsplit(base).path
    if path.endswith("/v2"):
        return base[: -len("/v2")]
    if path.endswith("/v1"):
        return REST_URL
    return base


class RestApi:
    name = "rest"
    has_billing = True

    def __init__(self, api_key: str, url: str | None = None, retry_base_s: float = 1.0) -> None:
        self.http = Http(api_key, retry_base_s=retry_base_s)
        self.url = rest_base(url or os.environ.get(URL_ENV))

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
        resp = self.http.request("POST", f"{self.url}/v2/pods", json=body, once=True)  # the caller adopts, then retries
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

    # ---------------------------------------------------------------- Instant Clusters

    def template_image(self, template_id: str) -> str | None:
        """The image a template runs (a cluster takes an image, not a template)."""
        found = self._get(f"/v2/templates/{template_id}")
        return (found or {}).get("image") or None

    def create_cluster(self, name: str, gpu: str, per_pod: int, pods: int, req: CreateRequest) -> dict[str, Any]:
        """POST /v2/clusters (type TRAINING): `pods` alike pods of `per_pod` GPUs; sent once (its caller
        looks for the cluster it may have made before trying again)."""
        body: dict[str, Any] = {"name": name, "type": "TRAINING", "startSsh": True, "ports": ["22/tcp"],
                                "compute": {"gpuTypeId": gpu, "gpuCountPerPod": per_pod, "podCount": pods},
                                "image": req.image_name, "disk": req.container_disk_gb, "env": req.pod_env}
        if req.network_volume_id:
            body["mounts"] = {"network": [{"volumeId": req.network_volume_id, "path": "/workspace"}]}
            body["dataCenterIds"] = [req.data_center_id]
        elif req.volume_gb:
            body["mounts"] = {"persistent": {"size": max(req.volume_gb, 10), "path": "/workspace"}}
        resp = self.http.request("POST", f"{self.url}/v2/clusters", json=body, once=True)
        if resp.status_code in (200, 201):
            return resp.json()
        problem = self._problem(resp)
        if resp.status_code == 400:
            raise NoCapacityError(problem)
        if resp.status_code == 403:
            raise SkipCandidate(problem)
        raise ApiError(f"RunPod REST: POST /v2/clusters -> {resp.status_code} {problem}")

    def cluster(self, cluster_id: str) -> dict[str, Any] | None:
        """The cluster; None when RunPod says it does not exist (404)."""
        return self._get(f"/v2/clusters/{cluster_id}")

    def cluster_pods(self, cluster_id: str) -> list[PodInfo] | None:
        """Its member pods, each with its rank and overlay address; None when the cluster is gone."""
        body = self._get(f"/v2/clusters/{cluster_id}/pods")
        return None if body is None else [self._info(p) for p in body.get("pods") or []]

    def clusters(self) -> list[dict[str, Any]]:
        body = self._get("/v2/clusters")
        return [c for c in (body or {}).get("clusters") or [] if isinstance(c, dict) and c.get("id")]

    def delete_cluster(self, cluster_id: str) -> None:
        """DELETE /v2/clusters/{id}: every member pod ends with it (a member cannot be deleted alone)."""
        resp = self.http.request("DELETE", f"{self.url}/v2/clusters/{cluster_id}")
        if resp.status_code not in (200, 204, 404):
            raise ApiError(f"RunPod REST: DELETE /v2/clusters/{cluster_id} -> {resp.status_code} {self._problem(resp)}")

    def cluster_billed(self, cluster_id: str, since: str) -> float | None:
        return self._billing(f"clusters?clusterId={cluster_id}", since)

    def account_keys(self) -> list[str] | None:
        """GET /v2/account/ssh-keys: the keys RunPod's proxy lets in. Read only: PUT replaces the whole set."""
        body = self._get("/v2/account/ssh-keys")
        keys = (body or {}).get("keys")
        return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else None

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

    def data_centers(self) -> list[dict[str, Any]]:
        """Every data center with its volume tiers and GPU availability (the catalogue's words)."""
        body = self._get("/v2/catalog/datacenters?include=GPU_AVAILABILITY")
        return [dc for dc in (body or {}).get("dataCenters") or [] if isinstance(dc, dict) and dc.get("id")]

    def volumes(self) -> list[dict[str, Any]]:
        """The account's network volumes: {id, name, size, dataCenter, type}."""
        body = self._get("/v2/network-volumes")
        return [v for v in (body or {}).get("networkVolumes") or [] if isinstance(v, dict) and v.get("id")]

    def create_volume(self, name: str, size_gb: int, data_center: str, kind: str = "STANDARD") -> dict[str, Any]:
        """A new network volume: billed every month until deleted, so it is asked for once."""
        body = {"name": name, "size": size_gb, "dataCenter": data_center, "type": kind}
        resp = self.http.request("POST", f"{self.url}/v2/network-volumes", json=body, once=True)
        if resp.status_code not in (200, 201):
            raise ApiError(f"RunPod REST: POST /v2/network-volumes -> {resp.status_code} {self._problem(resp)}")
        return resp.json()

    def billed(self, pod_id: str, since: str) -> float | None:
        return self._billing(f"pods?podId={pod_id}", since)

    def _billing(self, which: str, since: str) -> float | None:
        """What RunPod billed since `since`; None while billing does not show it yet (it lags the end)."""
        body = self._get(f"/v2/billing/{which}&bucketSize=hour&startTime={since}") or {}
        records = body.get("records") or []
        if not records:
            return None
        total = ((body.get("metadata") or {}).get("totals") or {}).get("totalAmount")
        return round(float(total if isinstance(total, (int, float)) else
                           sum(r.get("totalAmount") or 0 for r in records)), 4)

    def logs(self, pod_id: str, tail: int = 5000, max_bytes: int = 2_000_000, seconds: float = 10.0) -> str | None:
        """The log is a live event stream: read the backfill, bounded in bytes and time, then stop.
        The backfill is as long as RunPod allows (5000 lines): an image pull leaves several lines per
        layer, and a shorter one loses the pull's first line, so its seconds cannot be known."""
        lines, got, started = [], 0, time.monotonic()
        try:
            with self.http.request("GET", f"{self.url}/v2/pods/{pod_id}/logs?tail={tail}", stream=True,
                                   timeout=(self.http.timeout, 2.0)) as resp:
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
        except ApiError:  # the log is a help, never a reason to fail: RunPod did not give it
            return None
        return "\n".join(lines) if lines else None

    @staticmethod
    def _info(pod: dict[str, Any]) -> PodInfo:
        """The v2 `ssh` block is the authority on how to reach the pod: `direct` when it names a
        host and port, `proxy` for the gateway. A runtime port alone makes a pod direct-reachable
        only when there is no ssh block at all and its address is public (10.x is not)."""
        runtime = pod.get("runtime")
        ssh = pod.get("ssh")
        member = pod.get("cluster") or {}
        info = PodInfo(id=pod["id"], name=pod.get("name"), status=pod.get("status"),
                       running=pod.get("status") == "RUNNING" and runtime is not None,
                       cost_per_hr=pod.get("cost"), gpu=(pod.get("gpu") or {}).get("id"),
                       uptime_s=(runtime or {}).get("uptime"), image=pod.get("image") or None,
                       rank=member.get("rank"), overlay_ip=member.get("ip"))
        if isinstance(ssh, dict):  # each side is null until it exists (PodSsh): proxy first, direct later
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


