"""A fake RunPod API: a real HTTP server on 127.0.0.1 speaking GraphQL and REST v2.

GraphQL requests are parsed and validated against a schema that mirrors the fields in
docs/reference/runpod.md on RunPod's GraphQL API, so a misspelt field fails with HTTP 400 as it does on RunPod.
REST bodies are validated against the official OpenAPI spec (422 when they do not conform), and
the fake's own responses are validated too. Faults are scriptable; every pod goes into a ledger
so a test can assert that none is left running.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
from graphql import build_schema, execute_sync, parse, validate
from graphql.error import GraphQLError

# RunPod's REST v2 OpenAPI spec, vendored so the tests run from a clone with nothing beside it.
SPEC_PATH = Path(__file__).resolve().parent / "runpod-v2-openapi.json"
CAPACITY = "There are no longer any instances available with the requested specifications. Please refresh and try again."

SDL = """
enum CloudTypeEnum { ALL COMMUNITY SECURE }
input EnvironmentVariableInput { key: String! value: String! }
input PodFindAndDeployOnDemandInput {
  cloudType: CloudTypeEnum gpuTypeId: String! gpuCount: Int minVcpuCount: Int minMemoryInGb: Int
  volumeInGb: Int containerDiskInGb: Int templateId: String imageName: String name: String ports: String
  env: [EnvironmentVariableInput] startSsh: Boolean supportPublicIp: Boolean volumeMountPath: String
  dockerArgs: String dataCenterId: String networkVolumeId: String allowedCudaVersions: [String]
  terminateAfter: String stopAfter: String
}
input PodFilter { podId: String! }
input PodTerminateInput { podId: String! }
type PodRuntimePorts { ip: String isIpPublic: Boolean privatePort: Int publicPort: Int type: String }
type PodRuntime { uptimeInSeconds: Int ports: [PodRuntimePorts] }
type PodMachine { podHostId: String gpuDisplayName: String }
type Pod { id: String! name: String desiredStatus: String costPerHr: Float imageName: String
           runtime: PodRuntime machine: PodMachine }
type NetworkVolume { id: String name: String dataCenterId: String size: Int }
type User { id: String pods: [Pod] networkVolumes: [NetworkVolume] }
type Query { pod(input: PodFilter!): Pod myself: User }
type Mutation {
  podFindAndDeployOnDemand(input: PodFindAndDeployOnDemandInput!): Pod
  podTerminate(input: PodTerminateInput!): Boolean
}
"""
SCHEMA = build_schema(SDL)


@dataclass
class FakePod:
    id: str
    name: str
    gpu: str
    cloud: str
    host_id: str
    env: dict[str, str]
    created: float = field(default_factory=time.time)
    status: str = "RUNNING"
    polls: int = 0
    terminated_at: float | None = None
    image: str = "runpod/pytorch:fake"


@dataclass
class Faults:
    capacity: set[tuple[str, str]] = field(default_factory=set)  # (gpu, cloud) with no capacity; ("*","*") = all
    http_errors: dict[str, list[int]] = field(default_factory=dict)  # op -> statuses to answer next
    retry_after: float | None = None
    ready_after_polls: int = 1  # runtime null for this many polls
    never_ready: bool = False
    public_ssh: bool = True  # direct mode: publish tcp/22 on a public IP (udp decoy listed too)
    terminate_errors: int = 0  # podTerminate fails this many times with a generic error
    ssh_port: int | None = None  # publish this port for tcp/22 instead of the real sshd's (e.g. a closed one)
    private_runtime_port: bool = False  # REST: ssh.direct null, tcp/22 listed on a private 10.x address
    graphql_gone: bool = False  # GraphQL retired: every request answers 410 Gone
    # REST catalogue, billing and logs: "404", "500", "malformed" or "slow" per endpoint
    catalog: str | None = None
    billing: str | None = None
    logs: str | None = None
    billing_lag: int = 0  # billing answers with no records this many times after a pod ends
    unavailable: set[tuple[str, str]] = field(default_factory=set)  # (gpu, cloud) the catalogue shows as NONE
    container_log: list[str] = field(default_factory=lambda: ["layer 3/14: 2.1 GB of 13.6 GB"])
    # The system log's image pull (simulated time: the lines are stamped, nothing waits): seconds it
    # took, whether the host had the image, or "none" for a log that starts the container with no pull line.
    image_pull_s: float = 42.0
    image_cached: bool = False
    image_pull_log: str = "docker"
    image_layers: int = 40  # the official image's layer count, order of: each leaves several lines in the log


TEMPLATE_IMAGES = {"pzr9tt3vvq": "unsloth/unsloth:latest"}  # the official Unsloth template's image


class FakeRunpod:
    def __init__(self, api_key: str, ssh_port: int) -> None:
        self.api_key = api_key
        self.ssh_port = ssh_port
        self.faults = Faults()
        self.pods: dict[str, FakePod] = {}
        self.calls: list[tuple[str, str]] = []  # (op, detail)
        self.create_attempts: list[tuple[str, str]] = []
        self.create_bodies: list[dict[str, Any]] = []  # what each create asked for, as sent
        self.volumes: dict[str, str] = {"vol-abc123": "EU-RO-1"}  # network volume -> its data center
        self.volume_details: dict[str, dict[str, Any]] = {}  # the volumes created through the API
        self.dc_availability: dict[str, dict[str, str]] = {}  # data center -> GPU -> level (else the catalogue's)
        self.no_volume_dcs: set[str] = set()  # data centers that offer no network volume
        # The catalogue: GPU type -> (memory GB, price SECURE, price COMMUNITY)
        self.gpus: dict[str, tuple[int, float, float]] = {
            "NVIDIA GeForce RTX 5090": (32, 0.89, 0.69), "NVIDIA GeForce RTX 4090": (24, 0.59, 0.34),
            "NVIDIA RTX A6000": (48, 0.49, 0.33), "NVIDIA A40": (48, 0.40, 0.35)}
        self.billing_asks = 0
        self.urls: list[str] = []
        self.lock = threading.Lock()
        spec = json.loads(SPEC_PATH.read_text())
        self._validators = {name: jsonschema.Draft202012Validator({**spec, "$ref": f"#/components/schemas/{name}"})
                            for name in ("CreatePodRequest", "Pod", "ListPodsResponse", "ListGpuTypesResponse",
                                         "ListDataCentersResponse", "ListPodBillingResponse",
                                         "CreateNetworkVolumeRequest", "NetworkVolume", "ListNetworkVolumesResponse")}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> "FakeRunpod":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def running(self) -> list[FakePod]:
        return [p for p in self.pods.values() if p.status != "TERMINATED"]

    def route_host(self, host_id: str) -> int | None:
        """For the gateway double: the sshd port of the running pod with this podHostId."""
        pod = next((p for p in self.pods.values() if p.host_id == host_id), None)
        return self.ssh_port if pod and pod.status == "RUNNING" else None

    def ops(self, op: str) -> int:
        return sum(1 for o, _ in self.calls if o == op)

    # ---------------------------------------------------------------- behaviour

    def _fault(self, op: str) -> int | None:
        queue = self.faults.http_errors.get(op)
        return queue.pop(0) if queue else None

    def _create(self, gpu: str, cloud: str, name: str, env: dict[str, str], image: str | None = None,
                template: str | None = None) -> FakePod:
        self.create_attempts.append((gpu, cloud))
        caps = self.faults.capacity
        if (gpu, cloud) in caps or ("*", cloud) in caps or (gpu, "*") in caps or ("*", "*") in caps:
            raise LookupError(CAPACITY)
        pod_id = secrets.token_hex(7)[:14]
        pod = FakePod(id=pod_id, name=name, gpu=gpu, cloud=cloud, host_id=f"{pod_id}-{secrets.token_hex(4)}", env=env,
                      image=image or TEMPLATE_IMAGES.get(template or "", "runpod/pytorch:fake"))
        self.pods[pod_id] = pod
        return pod

    def _runtime_ready(self, pod: FakePod) -> bool:
        pod.polls += 1
        return pod.status == "RUNNING" and not self.faults.never_ready and pod.polls > self.faults.ready_after_polls

    def _terminate(self, pod_id: str) -> None:
        if self.faults.terminate_errors > 0:
            self.faults.terminate_errors -= 1
            raise RuntimeError("Something went wrong. Please try again later or contact support.")
        pod = self.pods.get(pod_id)
        if pod is None:
            raise LookupError(f"pod {pod_id} not found")
        if pod.status != "TERMINATED":
            pod.status, pod.terminated_at = "TERMINATED", time.time()

    # ---------------------------------------------------------------- GraphQL

    def _gql_pod(self, pod: FakePod, ready: bool) -> dict[str, Any]:
        runtime = None
        if ready:
            ports = [{"ip": "127.0.0.1", "isIpPublic": True, "privatePort": 22, "publicPort": 1, "type": "udp"}]
            if self.faults.public_ssh:
                ports.append({"ip": "127.0.0.1", "isIpPublic": True, "privatePort": 22,
                              "publicPort": self.faults.ssh_port or self.ssh_port, "type": "tcp"})
            else:
                ports = [{"ip": "10.0.0.5", "isIpPublic": False, "privatePort": 22, "publicPort": 22, "type": "tcp"}]
            runtime = {"uptimeInSeconds": int(time.time() - pod.created), "ports": ports}
        return {"id": pod.id, "name": pod.name, "desiredStatus": pod.status, "costPerHr": 0.89, "runtime": runtime,
                "imageName": pod.image,
                "machine": {"podHostId": pod.host_id, "gpuDisplayName": pod.gpu.replace("NVIDIA GeForce ", "")}}

    def _root(self) -> dict[str, Any]:
        def deploy(_info: Any, input: dict[str, Any]) -> dict[str, Any]:
            self.calls.append(("create", f"{input['gpuTypeId']}/{input.get('cloudType')}"))
            self.create_bodies.append(dict(input))
            env = {e["key"]: e["value"] for e in input.get("env") or []}
            pod = self._create(input["gpuTypeId"], input.get("cloudType", "ALL"), input.get("name") or "", env,
                               input.get("imageName"), input.get("templateId"))
            return self._gql_pod(pod, ready=False)

        def pod(_info: Any, input: dict[str, Any]) -> dict[str, Any] | None:
            self.calls.append(("get", input["podId"]))
            p = self.pods.get(input["podId"])
            if p is None or p.status == "TERMINATED":
                return None
            return self._gql_pod(p, self._runtime_ready(p))

        def terminate(_info: Any, input: dict[str, Any]) -> None:
            self.calls.append(("terminate", input["podId"]))
            self._terminate(input["podId"])
            return None

        def myself(_info: Any) -> dict[str, Any]:
            self.calls.append(("list", ""))
            return {"id": "user-1", "pods": [self._gql_pod(p, False) for p in self.running()],
                    "networkVolumes": [{"id": v, "name": v, "dataCenterId": dc, "size": 50}
                                       for v, dc in self.volumes.items()]}

        return {"podFindAndDeployOnDemand": deploy, "pod": pod, "podTerminate": terminate, "myself": myself}

    def graphql(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            document = parse(body.get("query") or "")
        except GraphQLError as exc:
            return 400, {"errors": [{"message": exc.message}]}
        errors = validate(SCHEMA, document)
        if errors:
            return 400, {"errors": [{"message": e.message} for e in errors]}
        op = document.definitions[0].selection_set.selections[0].name.value  # type: ignore[attr-defined]
        status = self._fault({"podFindAndDeployOnDemand": "create", "pod": "get", "podTerminate": "terminate",
                              "myself": "list"}.get(op, op))
        if status:
            return status, {"errors": [{"message": f"HTTP {status}"}]}
        with self.lock:
            result = execute_sync(SCHEMA, document, root_value=self._root(), variable_values=body.get("variables"))
        if result.data is None:
            return 400, {"errors": [{"message": e.message} for e in result.errors or []]}
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [{"message": e.message, "path": e.path} for e in result.errors]
        return 200, out

    # ---------------------------------------------------------------- REST v2

    def _rest_pod(self, pod: FakePod, ready: bool) -> dict[str, Any]:
        ports = []
        port = self.faults.ssh_port or self.ssh_port
        if ready and self.faults.public_ssh:
            ports = [{"private": 22, "public": 1, "type": "udp", "ip": "127.0.0.1"},
                     {"private": 22, "public": port, "type": "tcp", "ip": "127.0.0.1"}]
        status = pod.status if pod.status == "TERMINATED" or ready else "STARTING"
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(pod.created))
        body = {
            "id": pod.id, "name": pod.name, "status": status, "cost": 0.89, "cloud": pod.cloud,
            "gpu": {"id": pod.gpu, "count": 1}, "ports": ["22/tcp"], "env": {},
            "actions": [] if status == "TERMINATED" else ["stop", "restart", "terminate"],
            "image": pod.image, "args": "", "disk": 50, "registry": None,
            "mounts": {"persistent": {"size": 20, "path": "/workspace"}}, "dataCenterId": "US-TEST-1",
            "cudaVersion": "12.8", "template": None, "locked": False, "createdAt": created,
            "startedAt": created if ready else None, "globalNetworking": {"enabled": False},
            "ssh": {"proxy": {"host": "ssh.runpod.io", "port": 22, "username": pod.host_id,
                              "command": f"ssh {pod.host_id}@ssh.runpod.io"},
                    "direct": {"host": "127.0.0.1", "port": port, "username": "root",
                               "command": f"ssh root@127.0.0.1 -p {port}"}},
            "runtime": {"uptime": int(time.time() - pod.created), "ports": ports} if ready else None,
        }
        if not self.faults.public_ssh or not ready:
            body["ssh"]["direct"] = {"host": "", "port": 0, "username": "root", "command": ""}
        if self.faults.private_runtime_port and ready:
            body["ssh"]["direct"] = None
            body["runtime"]["ports"] = [{"private": 22, "public": 22, "type": "tcp", "ip": "10.65.0.7"}]
        errors = list(self._validators["Pod"].iter_errors(body))
        assert not errors, f"fake REST response does not follow the spec: {errors[0].message}"
        return body

    def _checked(self, schema: str, body: dict[str, Any]) -> dict[str, Any]:
        errors = list(self._validators[schema].iter_errors(body))
        assert not errors, f"fake {schema} does not follow the spec: {errors[0].message}"
        return body

    def _availability(self, gpu: str, cloud: str) -> str:
        caps = self.faults.unavailable
        hit = {(gpu, cloud), ("*", cloud), (gpu, "*"), ("*", "*")} & caps
        return "NONE" if hit else "HIGH"

    def _extra_fault(self, kind: str | None) -> tuple[int, Any] | None:
        """The catalogue, billing and log endpoints as they fail: 404, 500, nonsense, or slowly."""
        if kind == "404":
            return 404, {"title": "Not Found", "status": 404, "detail": "no such endpoint"}
        if kind == "500":
            return 500, {"title": "Internal", "status": 500, "detail": "injected"}
        if kind == "malformed":
            return 200, {"unexpected": [1, 2, 3]}
        if kind == "slow":
            time.sleep(3)
        return None

    def catalog(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        self.calls.append(("catalog", ",".join(query.get("cloud", ["SECURE"]))))
        if failed := self._extra_fault(self.faults.catalog):
            return failed
        cloud = query.get("cloud", ["SECURE"])[0]
        gpus = [{"id": gpu, "name": gpu.replace("NVIDIA ", "").replace("GeForce ", ""), "pool": None,
                 "manufacturer": "NVIDIA", "memory": mem, "secure": True, "community": True,
                 "price": {"secure": secure, "community": community}, "maxCount": {"secure": 8, "community": 2},
                 "availability": self._availability(gpu, cloud)}
                for gpu, (mem, secure, community) in self.gpus.items()]
        return 200, self._checked("ListGpuTypesResponse", {"gpus": gpus})

    def datacenters(self) -> tuple[int, Any]:
        self.calls.append(("datacenters", ""))
        if failed := self._extra_fault(self.faults.catalog):
            return failed
        def level(dc: str, gpu: str) -> str:
            return self.dc_availability.get(dc, {}).get(gpu) or self._availability(gpu, "SECURE")

        centers = [{"id": dc, "name": dc, "region": "EUROPE" if dc.startswith("EU") else "NORTH_AMERICA",
                    "globalNetwork": False, "networkVolumeTypes": [] if dc in self.no_volume_dcs else ["STANDARD"],
                    "compliance": [],
                    "gpuAvailability": [{"id": g, "name": g, "availability": level(dc, g)} for g in self.gpus]}
                   for dc in sorted({"US-TEST-1", *self.volumes.values(), *self.dc_availability})]
        return 200, self._checked("ListDataCentersResponse", {"dataCenters": centers})

    def network_volumes(self, method: str, body: Any) -> tuple[int, Any]:
        """GET lists the account's volumes, POST creates one (validated against the spec)."""
        if method == "POST":
            self.calls.append(("create_volume", json.dumps(body, sort_keys=True)))
            errors = list(self._validators["CreateNetworkVolumeRequest"].iter_errors(body))
            if errors:
                return 422, {"title": "Unprocessable Entity", "status": 422, "detail": errors[0].message}
            volume_id = secrets.token_hex(5)
            self.volumes[volume_id] = body["dataCenter"]
            self.volume_details[volume_id] = {"id": volume_id, "name": body["name"], "size": body["size"],
                                              "dataCenter": body["dataCenter"], "type": body.get("type", "STANDARD")}
            return 201, self._checked("NetworkVolume", self.volume_details[volume_id])
        self.calls.append(("volumes", ""))
        listed = [self.volume_details.get(v, {"id": v, "name": v, "size": 50, "dataCenter": dc, "type": "STANDARD"})
                  for v, dc in self.volumes.items()]
        return 200, self._checked("ListNetworkVolumesResponse", {"networkVolumes": listed})

    def billing(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        pod_id = query.get("podId", [""])[0]
        self.calls.append(("billing", pod_id))
        self.billing_asks += 1
        if failed := self._extra_fault(self.faults.billing):
            return failed
        pod = self.pods.get(pod_id)
        records = []
        if pod and pod.terminated_at:
            if self.faults.billing_lag > 0:
                self.faults.billing_lag -= 1
            else:
                amount = round(0.89 * max(pod.terminated_at - pod.created, 1) / 3600, 6)
                start = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(pod.created))
                records = [{"startTime": start, "endTime": start, "podId": pod_id, "totalAmount": amount,
                            "gpuAmount": amount, "cpuAmount": 0, "diskAmount": 0}]
        totals = {k: sum(r[k] for r in records) for k in ("totalAmount", "gpuAmount", "cpuAmount", "diskAmount")}
        since = query.get("startTime", ["2026-01-01T00:00:00Z"])[0]
        window = {"startTime": since, "endTime": time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(time.time() + 3600)),
                  "bucketSize": query.get("bucketSize", ["day"])[0], "podId": pod_id}
        body = {"records": records, "metadata": {"query": window, "recordCount": len(records),
                                                 "uniquePodCount": len({r["podId"] for r in records}),
                                                 "totals": totals}}
        return 200, self._checked("ListPodBillingResponse", body)

    def logs(self, pod_id: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        """The backfill of the last `tail` lines (100 unless asked, 5000 at most), as RunPod's SSE stream."""
        self.calls.append(("logs", pod_id))
        tail = int(query.get("tail", ["100"])[0])
        if not 0 <= tail <= 5000:
            return 400, {"title": "Bad Request", "status": 400, "detail": "tail must be between 0 and 5000"}
        if failed := self._extra_fault(self.faults.logs):
            return failed
        if pod_id not in self.pods:
            return 404, {"title": "Not Found", "status": 404, "detail": f"pod {pod_id} not found"}
        lines = self._pull_lines(self.pods[pod_id])
        started = lines[-1][0] if lines else 0.0
        lines += [(started + 1, "container", line) for line in self.faults.container_log]
        events = []
        numbered = list(enumerate(lines, 1))
        for i, (offset, source, line) in numbered[-tail:] if tail else []:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.pods[pod_id].created + offset))
            events.append(f"id: {stamp}/{i:012d}\ndata: " + json.dumps({"ts": stamp, "source": source, "line": line}))
        return 200, ("text/event-stream", "".join(e + "\n\n" for e in events))

    def _pull_lines(self, pod: FakePod) -> list[tuple[float, str, str]]:
        """The system log's image pull, in docker's words (seconds after the pod was created)."""
        image, took = pod.image, self.faults.image_pull_s
        digest = "Digest: sha256:" + hashlib.sha256(str(image).encode()).hexdigest()  # one per image, as a registry's
        if self.faults.image_pull_log == "none":
            return [(0.0, "system", f"start container for {image}: begin")]
        if self.faults.image_cached:
            return [(0.0, "system", f"Pulling image {image}"),
                    (0.0, "system", digest),
                    (0.0, "system", f"Status: Image is up to date for {image}"),
                    (1.0, "system", f"start container for {image}: begin")]
        layers = [hashlib.sha256(f"{image}/{n}".encode()).hexdigest()[:12] for n in range(self.faults.image_layers)]
        # as RunPod's hosts write it: the container is created, in the same whole second, before the pull
        lines = [(0.0, "system", f"create container {image}"), (0.0, "system", f"Pulling image {image}")]
        lines += [(1.0, "system", f"{layer}: Pulling fs layer") for layer in layers]
        lines += [(1.0, "system", f"{layer}: Waiting") for layer in layers]
        for n, layer in enumerate(layers, 1):  # downloaded, then extracted in order, as docker does
            at = 1.0 + (took - 2) * n / len(layers)
            lines += [(at, "system", f"{layer}: {word}") for word in
                      ("Verifying Checksum", "Download complete", "Extracting", "Pull complete")]
        return [*lines,
                (took, "system", digest),
                (took, "system", f"Status: Downloaded newer image for {image}"),
                (took, "system", f"start container for {image}: begin")]

    def rest(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        url = urlsplit(path)
        path, query = url.path, parse_qs(url.query)
        if method == "GET" and path == "/v2/catalog/gpus":
            return self.catalog(query)
        if method == "GET" and path == "/v2/catalog/datacenters":
            return self.datacenters()
        if method == "GET" and path == "/v2/billing/pods":
            return self.billing(query)
        parts = path.rstrip("/").split("/")
        if method == "GET" and len(parts) == 5 and parts[:3] == ["", "v2", "pods"] and parts[4] == "logs":
            return self.logs(parts[3], query)
        if parts[:3] == ["", "v2", "network-volumes"] and len(parts) == 3:
            return self.network_volumes(method, body)
        if parts[:3] == ["", "v2", "network-volumes"] and method == "GET" and len(parts) == 4:
            if parts[3] not in self.volumes:
                return 404, {"title": "Not Found", "status": 404, "detail": f"network volume {parts[3]} not found"}
            body = {"id": parts[3], "name": parts[3], "size": 50, "dataCenter": self.volumes[parts[3]], "type": "STANDARD"}
            return 200, body
        if parts[:3] != ["", "v2", "pods"]:
            return 404, {"title": "Not Found", "status": 404, "detail": path}
        op = {"POST": "create", "GET": "get" if len(parts) == 4 else "list", "DELETE": "terminate"}.get(method, method)
        status = self._fault(op)
        if status:
            return status, {"title": "Error", "status": status, "detail": "injected"}
        with self.lock:
            if method == "POST" and len(parts) == 3:
                self.calls.append(("create", f"{(body or {}).get('gpu', {}).get('id')}/{(body or {}).get('cloud')}"))
                self.create_bodies.append(dict(body or {}))
                errors = list(self._validators["CreatePodRequest"].iter_errors(body))
                if errors:
                    return 422, {"title": "Unprocessable Entity", "status": 422, "detail": errors[0].message}
                try:
                    pod = self._create(body["gpu"]["id"], body.get("cloud", "SECURE"), body["name"], body.get("env", {}),
                                       body.get("image"), body.get("templateId"))
                except LookupError as exc:
                    return 400, {"title": "Bad Request", "status": 400, "detail": str(exc)}
                return 201, self._rest_pod(pod, ready=False)
            if method == "GET" and len(parts) == 3:
                self.calls.append(("list", ""))
                return 200, {"pods": [self._rest_pod(p, False) for p in self.running()]}
            pod = self.pods.get(parts[3])
            if method == "GET":
                self.calls.append(("get", parts[3]))
                if pod is None or pod.status == "TERMINATED":
                    return 404, {"title": "Not Found", "status": 404, "detail": f"pod {parts[3]} not found"}
                return 200, self._rest_pod(pod, self._runtime_ready(pod))
            if method == "DELETE":
                self.calls.append(("terminate", parts[3]))
                try:
                    self._terminate(parts[3])
                except LookupError as exc:
                    return 404, {"title": "Not Found", "status": 404, "detail": str(exc)}
                except RuntimeError as exc:
                    return 500, {"title": "Internal", "status": 500, "detail": str(exc)}
                return 204, None
        return 405, {"title": "Method Not Allowed", "status": 405, "detail": method}

    # ---------------------------------------------------------------- HTTP

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                if isinstance(body, tuple):  # (content type, text): the log's event stream
                    ctype, text = body
                    data = text.encode()
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                if status == 429 and fake.faults.retry_after is not None:
                    self.send_header("Retry-After", str(fake.faults.retry_after))
                ctype = "application/json" if status < 400 or self.path.startswith("/graphql") else "application/problem+json"
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _dispatch(self, method: str) -> None:
                fake.urls.append(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                auth = self.headers.get("Authorization") or ""
                if auth.startswith("Bearer pod-key-") and b"podTerminate" in raw:
                    pass  # a pod-scoped key (what the watchdog on the pod has) may terminate its pod
                elif auth != f"Bearer {fake.api_key}":
                    return self._answer(401, {"title": "Unauthorized", "status": 401, "detail": "bad key"})
                body = json.loads(raw) if raw else None
                if self.path.startswith("/graphql"):
                    if fake.faults.graphql_gone:
                        fake.calls.append(("graphql-gone", ""))
                        return self._answer(410, {"errors": [{"message": "Gone"}]})
                    return self._answer(*fake.graphql(body or {}))
                return self._answer(*fake.rest(method, self.path, body))

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def do_DELETE(self) -> None:
                self._dispatch("DELETE")

        return Handler
