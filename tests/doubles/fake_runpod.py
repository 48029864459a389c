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

from tests.doubles.sshpod import PortForward, Sshd, end_pod_processes, free_port

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
    status: str = "RUNNING"  # RUNNING once the runtime is up (until then the API says STARTING), EXITED, ERROR, TERMINATED
    polls: int = 0
    terminated_at: float | None = None
    image: str = "runpod/pytorch:fake"
    ready_at: float | None = None  # when its runtime came up
    endpoint: PortForward | None = None  # its own public port for tcp/22 (closed when it stops or ends)
    cluster_id: str | None = None  # a cluster's member: its node rank, and an sshd of its own
    rank: int | None = None
    node: Sshd | None = None


@dataclass
class FakeCluster:
    id: str
    name: str
    gpu: str
    per_pod: int
    members: list[FakePod]
    master_port: int
    created: float = field(default_factory=time.time)
    deleted_at: float | None = None


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
    # RunPod as its own documents describe it (runpod-v2-openapi.json, pods/configuration/use-ssh.mdx):
    direct_after_s: float = 0.0  # ssh.direct stays null this long after the pod is RUNNING (the proxy is there)
    start_status: str = "RUNNING"  # EXITED / ERROR: what the pod goes to instead of RUNNING when it starts
    outage: dict[str, float] = field(default_factory=dict)  # op -> until (time.time()): 503 for every such call
    pod_key_may: set[str] = field(default_factory=lambda: {"delete", "stop", "graphql"})  # what a pod's own key may do


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
        self.account_keys: list[str] = []  # PUT /v2/account/ssh-keys replaces them; a new user has none
        self.clusters: dict[str, FakeCluster] = {}
        # A cluster's nodes each run an sshd of their own (same client key as the pod's); `node_binds` =
        # (the pod folder the settings name, a folder under which each node's own lies) keeps their files apart.
        self.client_key: Path | None = None
        self.node_binds: tuple[Path, Path] | None = None
        self.authorised_as = "account"  # who sent the request being answered: the account's key, or a pod's
        self.urls: list[str] = []
        self.lock = threading.Lock()
        spec = json.loads(SPEC_PATH.read_text())
        self._validators = {name: jsonschema.Draft202012Validator({**spec, "$ref": f"#/components/schemas/{name}"})
                            for name in ("CreatePodRequest", "Pod", "ListPodsResponse", "ListGpuTypesResponse",
                                         "ListDataCentersResponse", "ListPodBillingResponse",
                                         "CreateNetworkVolumeRequest", "NetworkVolume", "ListNetworkVolumesResponse",
                                         "SshKeys", "UpdateSshKeysRequest", "PodActionRequest", "CreateClusterRequest",
                                         "Cluster", "ListClustersResponse", "ListClusterBillingResponse", "Template")}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> "FakeRunpod":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        for pod in self.pods.values():
            if pod.endpoint:
                pod.endpoint.close()
            if pod.node:
                pod.node.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def running(self) -> list[FakePod]:
        """Every pod that still exists, stopped ones too: an EXITED pod's disk bills until it is deleted."""
        return [p for p in self.pods.values() if p.status != "TERMINATED"]

    def route_host(self, host_id: str) -> int | None:
        """For the gateway double: the sshd port of the running pod with this podHostId."""
        pod = next((p for p in self.pods.values() if p.host_id == host_id), None)
        return self.ssh_port if pod and pod.status == "RUNNING" and pod.ready_at else None

    def proxy_keys(self, host_id: str) -> list[str]:
        """Who RunPod's proxy lets in as this pod's user: the account's registered keys (as they were
        when the pod was created with startSsh) and the pod's own SSH_PUBLIC_KEY."""
        pod = next((p for p in self.pods.values() if p.host_id == host_id), None)
        if pod is None:
            return []
        return [*pod.env.get("_ACCOUNT_KEYS", "").split("\n"), pod.env.get("SSH_PUBLIC_KEY", "")]

    def stop(self, pod_id: str, status: str = "EXITED") -> None:
        """A stop from RunPod's console (or a container that died): the pod exists, runs nothing, and its
        direct port and proxy route are gone."""
        pod = self.pods[pod_id]
        pod.status = status
        if pod.endpoint:
            pod.endpoint.close()
            pod.endpoint = None

    def ops(self, op: str) -> int:
        return sum(1 for o, _ in self.calls if o == op)

    # ---------------------------------------------------------------- behaviour

    def _fault(self, op: str) -> int | None:
        if time.time() < self.faults.outage.get(op, 0.0):
            return 503
        queue = self.faults.http_errors.get(op)
        return queue.pop(0) if queue else None

    def _create(self, gpu: str, cloud: str, name: str, env: dict[str, str], image: str | None = None,
                template: str | None = None) -> FakePod:
        self.create_attempts.append((gpu, cloud))
        caps = self.faults.capacity
        if (gpu, cloud) in caps or ("*", cloud) in caps or (gpu, "*") in caps or ("*", "*") in caps:
            raise LookupError(CAPACITY)
        pod_id = secrets.token_hex(7)[:14]
        env = dict(env)
        env["_ACCOUNT_KEYS"] = "\n".join(self.account_keys)  # startSsh: the keys registered at creation (not shown)
        pod = FakePod(id=pod_id, name=name, gpu=gpu, cloud=cloud, host_id=f"{pod_id}-{secrets.token_hex(4)}", env=env,
                      image=image or TEMPLATE_IMAGES.get(template or "", "runpod/pytorch:fake"))
        self.pods[pod_id] = pod
        return pod

    def _runtime_ready(self, pod: FakePod) -> bool:
        pod.polls += 1
        if pod.ready_at is None and pod.status == "RUNNING" and not self.faults.never_ready \
                and pod.polls > self.faults.ready_after_polls:
            if self.faults.start_status != "RUNNING":
                pod.status = self.faults.start_status  # the container exited as it started
                return False
            pod.ready_at = time.time()
            if pod.cluster_id and self.client_key:  # a cluster's node: its own sshd, filesystem and RunPod's env
                pod.node = self._node(pod)
            elif self.ssh_port != 22 and not self.faults.ssh_port:  # a real sshd: the pod's own public port
                pod.endpoint = PortForward(self.ssh_port)
        return pod.status == "RUNNING" and pod.ready_at is not None

    def _direct_port(self, pod: FakePod) -> int | None:
        """The public port of tcp/22, once RunPod has assigned it (direct_after_s after RUNNING)."""
        if not (self.faults.public_ssh and pod.status == "RUNNING" and pod.ready_at):
            return None
        if time.time() - pod.ready_at < self.faults.direct_after_s:
            return None
        if pod.node:
            return pod.node.port
        return self.faults.ssh_port or (pod.endpoint.port if pod.endpoint else self.ssh_port)

    def _pod_key_may(self, what: str) -> bool:
        return what in self.faults.pod_key_may

    def _terminate(self, pod_id: str) -> None:
        if self.faults.terminate_errors > 0:
            self.faults.terminate_errors -= 1
            raise RuntimeError("Something went wrong. Please try again later or contact support.")
        pod = self.pods.get(pod_id)
        if pod is None:
            raise LookupError(f"pod {pod_id} not found")
        if pod.status != "TERMINATED":
            pod.status, pod.terminated_at = "TERMINATED", time.time()
            if pod.endpoint:
                pod.endpoint.close()
                pod.endpoint = None
            if pod.node:  # a node takes its processes with it (its folder is its own)
                pod.node.stop()
                end_pod_processes(pod.node.folder.parent)
                pod.node = None

    # ---------------------------------------------------------------- GraphQL

    def _gql_pod(self, pod: FakePod, ready: bool) -> dict[str, Any]:
        runtime = None
        if ready:
            ports = [{"ip": "127.0.0.1", "isIpPublic": True, "privatePort": 22, "publicPort": 1, "type": "udp"}]
            direct = self._direct_port(pod)
            if direct:
                ports.append({"ip": "127.0.0.1", "isIpPublic": True, "privatePort": 22, "publicPort": direct,
                              "type": "tcp"})
            elif not self.faults.public_ssh:
                ports = [{"ip": "10.0.0.5", "isIpPublic": False, "privatePort": 22, "publicPort": 22, "type": "tcp"}]
            runtime = {"uptimeInSeconds": int(time.time() - pod.created), "ports": ports}
        return {"id": pod.id, "name": pod.name, "desiredStatus": pod.status, "runtime": runtime,
                "costPerHr": 0.89 if pod.status == "RUNNING" else 0.0,
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
            if self.authorised_as == "pod" and not self._pod_key_may("graphql"):
                raise PermissionError("this key may not terminate pods")
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
        """The pod as the spec's `Pod`: STARTING until its runtime is up; `ssh.proxy` once it has a machine,
        `ssh.direct` null until tcp/22 has a public port (and again once it stops); no cost when stopped."""
        up = pod.status == "RUNNING" and ready
        status = pod.status if pod.status != "RUNNING" else ("RUNNING" if up else "STARTING")
        direct = self._direct_port(pod) if up else None
        ports = ([{"private": 22, "public": 1, "type": "udp", "ip": "127.0.0.1"}]
                 + ([{"private": 22, "public": direct, "type": "tcp", "ip": "127.0.0.1"}] if direct else []))
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(pod.created))
        actions = {"RUNNING": ["stop", "restart", "terminate"], "STARTING": ["stop", "terminate"],
                   "EXITED": ["start", "terminate"], "ERROR": ["start", "terminate"]}.get(status, [])
        body = {
            "id": pod.id, "name": pod.name, "status": status, "cost": 0.89 if status in ("RUNNING", "STARTING") else 0.0,
            "cloud": pod.cloud, "gpu": {"id": pod.gpu, "count": 1}, "ports": ["22/tcp"],
            "env": {k: v for k, v in pod.env.items() if not k.startswith("_")},  # RunPod returns a pod's env
            "actions": actions, "image": pod.image, "args": "", "disk": 50, "registry": None,
            "mounts": {"persistent": {"size": 20, "path": "/workspace"}}, "dataCenterId": "US-TEST-1",
            "cudaVersion": "12.8", "template": None, "locked": False, "createdAt": created,
            "startedAt": created if up else None, "globalNetworking": {"enabled": False},
            "ssh": {"proxy": {"host": "ssh.runpod.io", "port": 22, "username": pod.host_id,
                              "command": f"ssh {pod.host_id}@ssh.runpod.io"} if status != "TERMINATED" else None,
                    "direct": {"host": "127.0.0.1", "port": direct, "username": "root",
                               "command": f"ssh root@127.0.0.1 -p {direct}"} if direct else None},
            "runtime": {"uptime": int(time.time() - pod.created), "ports": ports} if up else None,
        }
        if pod.cluster_id:  # PodCluster: rank null until assigned, the overlay address once it is
            body["cluster"] = {"id": pod.cluster_id, "rank": pod.rank if up else None,
                               **({"ip": "127.0.0.1"} if up else {})}
        if self.faults.private_runtime_port and up:
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

    @staticmethod
    def _op(method: str, parts: list[str]) -> str:
        """The name a test injects faults under (Faults.http_errors, Faults.outage)."""
        if parts[:3] == ["", "v2", "pods"]:
            if len(parts) == 5:
                return {"logs": "logs", "action": "action"}.get(parts[4], parts[4])
            return {"POST": "create", "GET": "get" if len(parts) == 4 else "list", "DELETE": "terminate"}.get(method, method)
        named = {"/v2/catalog/gpus": "catalog", "/v2/catalog/datacenters": "datacenters", "/v2/billing/pods": "billing",
                 "/v2/account/ssh-keys": "keys"}
        if "/".join(parts) in named:
            return named["/".join(parts)]
        if parts[:3] == ["", "v2", "network-volumes"]:
            return "create_volume" if method == "POST" else "volumes"
        return "/".join(parts)

    def rest(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        url = urlsplit(path)
        path, query = url.path, parse_qs(url.query)
        parts = path.rstrip("/").split("/")
        status = self._fault(self._op(method, parts))
        if status:
            return status, {"title": "Service Unavailable" if status == 503 else "Error", "status": status,
                            "detail": "injected"}
        if method == "GET" and path == "/v2/catalog/gpus":
            return self.catalog(query)
        if method == "GET" and path == "/v2/catalog/datacenters":
            return self.datacenters()
        if method == "GET" and path == "/v2/billing/pods":
            return self.billing(query)
        if path == "/v2/account/ssh-keys":
            return self.ssh_keys(method, body)
        if method == "GET" and len(parts) == 5 and parts[:3] == ["", "v2", "pods"] and parts[4] == "logs":
            return self.logs(parts[3], query)
        if method == "POST" and len(parts) == 5 and parts[:3] == ["", "v2", "pods"] and parts[4] == "action":
            return self.action(parts[3], body)
        if parts[:3] == ["", "v2", "network-volumes"] and len(parts) == 3:
            return self.network_volumes(method, body)
        if parts[:3] == ["", "v2", "network-volumes"] and method == "GET" and len(parts) == 4:
            if parts[3] not in self.volumes:
                return 404, {"title": "Not Found", "status": 404, "detail": f"network volume {parts[3]} not found"}
            body = {"id": parts[3], "name": parts[3], "size": 50, "dataCenter": self.volumes[parts[3]], "type": "STANDARD"}
            return 200, body
        if parts[:3] == ["", "v2", "clusters"] or path == "/v2/billing/clusters":
            with self.lock:
                return self.cluster_api(method, parts, query, body)
        if method == "GET" and parts[:3] == ["", "v2", "templates"] and len(parts) == 4:
            return self.template(parts[3])
        if parts[:3] != ["", "v2", "pods"]:
            return 404, {"title": "Not Found", "status": 404, "detail": path}
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
            if method == "GET" and len(parts) == 3:  # cluster members only when asked for (includeClusterPods)
                self.calls.append(("list", ""))
                members = query.get("includeClusterPods", ["false"])[0] == "true"
                return 200, {"pods": [self._rest_pod(p, p.ready_at is not None) for p in self.running()
                                      if members or not p.cluster_id]}
            pod = self.pods.get(parts[3])
            if method == "GET":
                self.calls.append(("get", parts[3]))
                if pod is None or pod.status == "TERMINATED":
                    return 404, {"title": "Not Found", "status": 404, "detail": f"pod {parts[3]} not found"}
                return 200, self._rest_pod(pod, self._runtime_ready(pod))
            if method == "DELETE":
                self.calls.append(("terminate", parts[3]))
                if pod is not None and pod.cluster_id:
                    return 409, {"title": "Conflict", "status": 409,
                                 "detail": f"pod {pod.id} belongs to cluster {pod.cluster_id}: delete the cluster"}
                if self.authorised_as == "pod" and not self._pod_key_may("delete"):
                    return 403, {"title": "Forbidden", "status": 403, "detail": "this key may not delete pods"}
                try:
                    self._terminate(parts[3])
                except LookupError as exc:
                    return 404, {"title": "Not Found", "status": 404, "detail": str(exc)}
                except RuntimeError as exc:
                    return 500, {"title": "Internal", "status": 500, "detail": str(exc)}
                return 204, None
        return 405, {"title": "Method Not Allowed", "status": 405, "detail": method}

    # ---------------------------------------------------------------- Instant Clusters

    def _node(self, pod: FakePod) -> Sshd:
        """A cluster node's own sshd: RunPod's environment for its sessions, the node's own files."""
        cluster = self.clusters[pod.cluster_id]
        seen, base = self.node_binds or (None, None)
        folder = (base or Path("/tmp")) / f"{cluster.id}-{pod.rank}"
        env = {"MASTER_ADDR": "127.0.0.1", "PRIMARY_ADDR": "127.0.0.1", "MASTER_PORT": str(cluster.master_port),
               "NODE_RANK": str(pod.rank), "NUM_NODES": str(len(cluster.members)),
               "NUM_TRAINERS": str(cluster.per_pod), "WORLD_SIZE": str(len(cluster.members) * cluster.per_pod),
               "RUNPOD_POD_ID": pod.id}
        return Sshd(folder / "sshd", self.client_key, env, (seen, folder / "pod") if seen else None).start()

    def _cluster_body(self, cluster: FakeCluster) -> dict[str, Any]:
        statuses: dict[str, int] = {}
        for member in cluster.members:
            shown = "RUNNING" if member.status == "RUNNING" and member.ready_at else (
                "STARTING" if member.status == "RUNNING" else member.status)
            statuses[shown] = statuses.get(shown, 0) + 1
        body = {"id": cluster.id, "name": cluster.name, "type": "TRAINING",
                "compute": {"gpuTypeId": cluster.gpu, "gpuCountPerPod": cluster.per_pod,
                            "podCount": len(cluster.members)},
                "pods": {"total": len(cluster.members), "byStatus": statuses},
                "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cluster.created)),
                "dataCenterId": "US-TEST-1"}
        primary = cluster.members[0]
        body["primary"] = {"podId": primary.id, "status": "RUNNING" if primary.ready_at else "STARTING",
                           **({"sshEndpoint": f"127.0.0.1:{primary.node.port}"} if primary.node else {})}
        return self._checked("Cluster", body)

    def cluster_api(self, method: str, parts: list[str], query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        """POST/GET /v2/clusters, GET/DELETE /v2/clusters/{id}, GET /v2/clusters/{id}/pods, billing."""
        if parts[:3] == ["", "v2", "billing"]:
            return self._cluster_billing(query)
        if method == "POST" and len(parts) == 3:
            self.calls.append(("create_cluster", json.dumps((body or {}).get("compute"), sort_keys=True)))
            self.create_bodies.append(dict(body or {}))
            errors = list(self._validators["CreateClusterRequest"].iter_errors(body))
            if errors:
                return 422, {"title": "Unprocessable Entity", "status": 422, "detail": errors[0].message}
            compute = body["compute"]
            try:
                members = [self._create(compute["gpuTypeId"], "SECURE", f"{body['name']}-{rank}", body.get("env", {}),
                                        body.get("image")) for rank in range(compute["podCount"])]
            except LookupError as exc:
                return 400, {"title": "Bad Request", "status": 400, "detail": str(exc)}
            cluster_id = "cluster_" + secrets.token_hex(5)
            for rank, member in enumerate(members):
                member.cluster_id, member.rank = cluster_id, rank
            self.clusters[cluster_id] = FakeCluster(cluster_id, body["name"], compute["gpuTypeId"],
                                                    compute["gpuCountPerPod"], members, free_port())
            return 201, self._cluster_body(self.clusters[cluster_id])
        if method == "GET" and len(parts) == 3:
            self.calls.append(("clusters", ""))
            return 200, self._checked("ListClustersResponse", {"clusters": [
                self._cluster_body(c) for c in self.clusters.values() if c.deleted_at is None]})
        cluster = self.clusters.get(parts[3])
        if cluster is None or cluster.deleted_at is not None:
            return 404, {"title": "Not Found", "status": 404, "detail": f"cluster {parts[3]} not found"}
        if method == "GET" and len(parts) == 4:
            self.calls.append(("cluster", cluster.id))
            return 200, self._cluster_body(cluster)
        if method == "GET" and len(parts) == 5 and parts[4] == "pods":
            self.calls.append(("cluster_pods", cluster.id))
            return 200, {"pods": [self._rest_pod(m, self._runtime_ready(m)) for m in cluster.members]}
        if method == "DELETE" and len(parts) == 4:
            self.calls.append(("delete_cluster", cluster.id))
            if self.authorised_as == "pod" and not self._pod_key_may("delete"):
                return 403, {"title": "Forbidden", "status": 403, "detail": "this key may not delete clusters"}
            for member in cluster.members:
                self._terminate(member.id)
            cluster.deleted_at = time.time()
            return 204, None
        return 405, {"title": "Method Not Allowed", "status": 405, "detail": method}

    def _cluster_billing(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        cluster = self.clusters.get(query.get("clusterId", [""])[0])
        self.calls.append(("cluster_billing", cluster.id if cluster else ""))
        records = []
        if cluster and cluster.deleted_at:
            amount = round(3.49 * cluster.per_pod * len(cluster.members) * max(cluster.deleted_at - cluster.created, 1)
                           / 3600, 6)
            start = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(cluster.created))
            records = [{"startTime": start, "endTime": start, "clusterId": cluster.id, "totalAmount": amount,
                        "gpuAmount": amount, "diskAmount": 0, "networkingAmount": 0}]
        totals = {k: sum(r[k] for r in records) for k in ("totalAmount", "gpuAmount", "diskAmount", "networkingAmount")}
        since = query.get("startTime", ["2026-01-01T00:00:00Z"])[0]
        window = {"startTime": since, "endTime": time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(time.time() + 3600)),
                  "bucketSize": query.get("bucketSize", ["day"])[0], "clusterId": cluster.id if cluster else None}
        return 200, self._checked("ListClusterBillingResponse", {"records": records, "metadata": {
            "query": window, "recordCount": len(records), "uniqueClusterCount": len(records), "totals": totals}})

    def template(self, template_id: str) -> tuple[int, Any]:
        self.calls.append(("template", template_id))
        if template_id not in TEMPLATE_IMAGES:
            return 404, {"title": "Not Found", "status": 404, "detail": f"template {template_id} not found"}
        return 200, self._checked("Template", {
            "id": template_id, "name": "Unsloth", "image": TEMPLATE_IMAGES[template_id], "args": "", "disk": 50,
            "mounts": {}, "ports": ["22/tcp"], "env": {}, "registry": None, "serverless": False, "public": True,
            "category": "NVIDIA", "startSsh": True, "startJupyter": False, "allowedCudaVersions": []})

    def action(self, pod_id: str, body: Any) -> tuple[int, Any]:
        """POST /v2/pods/{id}/action: start, stop, restart or terminate, as the pod's `actions` allow."""
        self.calls.append(("action", f"{pod_id}:{(body or {}).get('action')}"))
        errors = list(self._validators["PodActionRequest"].iter_errors(body))
        if errors:
            return 422, {"title": "Unprocessable Entity", "status": 422, "detail": errors[0].message}
        pod = self.pods.get(pod_id)
        if pod is None or pod.status == "TERMINATED":
            return 404, {"title": "Not Found", "status": 404, "detail": f"pod {pod_id} not found"}
        wanted = body["action"]
        if self.authorised_as == "pod" and not self._pod_key_may("delete" if wanted == "terminate" else wanted):
            return 403, {"title": "Forbidden", "status": 403, "detail": f"this key may not {wanted} pods"}
        if wanted == "stop" and pod.status in ("RUNNING", "STARTING"):
            self.stop(pod_id)
            return 200, self._rest_pod(pod, False)
        if wanted == "terminate":
            self._terminate(pod_id)
            return 204, None
        return 409, {"title": "Conflict", "status": 409, "detail": f"{wanted} is not valid for a {pod.status} pod"}

    def ssh_keys(self, method: str, body: Any) -> tuple[int, Any]:
        """The account's registered keys: GET lists them, PUT replaces the whole set."""
        self.calls.append(("keys", method))
        if method == "PUT":
            errors = list(self._validators["UpdateSshKeysRequest"].iter_errors(body))
            if errors:
                return 422, {"title": "Unprocessable Entity", "status": 422, "detail": errors[0].message}
            self.account_keys = list(body["keys"])
        return 200, self._checked("SshKeys", {"keys": list(self.account_keys)})

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
                if auth.startswith("Bearer pod-key-"):  # a pod's own key (what its watchdog has): ending pods only
                    fake.authorised_as = "pod"
                    ends = (b"podTerminate" in raw or method == "DELETE"
                            or (method == "POST" and self.path.rstrip("/").endswith("/action")))
                    if not ends:
                        return self._answer(403, {"title": "Forbidden", "status": 403, "detail": "a pod key"})
                elif auth != f"Bearer {fake.api_key}":
                    return self._answer(401, {"title": "Unauthorized", "status": 401, "detail": "bad key"})
                else:
                    fake.authorised_as = "account"
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

            def do_PUT(self) -> None:
                self._dispatch("PUT")

        return Handler
