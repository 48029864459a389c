"""RunPod Instant Clusters: a plan that needs more than one pod rents them together (POST /v2/clusters,
type TRAINING), waits for every node, reaches each, and ends them together (DELETE /v2/clusters/{id}):
a member pod cannot be deleted alone, and every node bills until the cluster is deleted.

A cluster is recorded as one Pod whose pod_id is the cluster's id and whose `cluster` holds the nodes
(rank, overlay address, how each is reached); its ssh fields are the primary's (rank 0), which trains,
reports and holds the adapter. Only REST v2 has clusters.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tasks.core.dates import now
from tasks.core.errors import ProviderError
from tasks.core.files import write_json
from tasks.core.retry import Deadline
from tasks.providers.base import Fate, Pod, PodUnknown
from tasks.providers.runpod.client import ApiError, PodInfo, with_retries

log = logging.getLogger("fullcycle")

MASTER_PORT = 29500  # torchrun's rendezvous on the primary's overlay address (RunPod's MASTER_PORT wins)
STOPPED = ("EXITED", "ERROR")


def _api(provider: Any) -> Any:
    if not hasattr(provider.api, "create_cluster"):
        raise ProviderError("the plan needs an Instant Cluster, which only RunPod's REST API rents: set [runpod] api = "
                            "\"rest\"; nothing was rented")
    return provider.api


def create(provider: Any, plan: dict[str, Any], public_key: str, account_key: str) -> Pod:
    """Rent the plan's pods as one cluster; after an unanswered create, the cluster it may have made is
    found by name instead of renting twice."""
    api, s = _api(provider), provider.s
    image = s.image_name or api.template_image(s.template_id)
    if not image:
        raise ProviderError(f"a cluster takes an image, and template {s.template_id!r} names none: set [runpod] "
                            f"image_name; nothing was rented")
    gpu, per_pod, pods = plan["gpu"], int(plan["gpus_per_pod"]), int(plan["pods"])
    req = provider.request(gpu, "SECURE", public_key, per_pod)
    req.image_name = image

    def once() -> dict[str, Any]:
        made = [c for c in api.clusters() if c.get("name") == provider.pod_name]
        return made[0] if made else api.create_cluster(provider.pod_name, gpu, per_pod, pods, req)

    made = with_retries(once, f"create a cluster of {pods} x {per_pod} {gpu}", base_delay=s.retry_base_s)
    price = plan.get("price_per_hr")
    write_json(provider.paths.gpu_choice_file, {
        "order": "the plan", "catalogue": "not used: an Instant Cluster is rented as planned", "why": plan.get("why"),
        "chosen": f"{gpu} / SECURE ({pods} pods x {per_pod} GPUs, Instant Cluster)", "candidates": []})
    log.info("Rented cluster %s: %d pods x %d %s (%s)", made["id"], pods, per_pod, gpu, plan.get("why"))
    return Pod(provider=provider.name, pod_id=made["id"], name=provider.pod_name, created_at=now(), gpu=gpu,
               cloud_type="SECURE", cost_per_hr=price, remote=provider.remote(), account_key=account_key,
               network_volume_id=s.network_volume_id or None, data_center=provider.data_center,
               cluster={"id": made["id"], "pods": pods, "gpus_per_pod": per_pod, "nodes": []})


def _members(provider: Any, cluster_id: str, patient: bool = True) -> list[PodInfo] | None:
    """The member pods as RunPod says they are; None when it says the cluster is gone (404)."""
    return provider.asked(lambda: _api(provider).cluster_pods(cluster_id), f"cluster {cluster_id}", patient)


def wait_ready(provider: Any, pod: Pod) -> Pod:
    """Every node running with its rank, then each reached over ssh; the primary's fields on the pod."""
    s, cluster = provider.s, pod.cluster or {}
    deadline = Deadline(s.ready_timeout_s)
    while True:
        members = _members(provider, cluster["id"])
        if members is None:
            raise ProviderError(f"cluster {cluster['id']} disappeared while starting")
        stopped = [m for m in members if m.status in STOPPED]
        if stopped:
            raise ProviderError(f"cluster {cluster['id']}: node {stopped[0].id} went {stopped[0].status} while "
                                f"starting; the whole cluster is deleted")
        up = [m for m in members if m.running and m.rank is not None and (m.public_ip or m.host_id)]
        if len(up) == cluster["pods"]:
            break
        if deadline.passed():
            raise ProviderError(f"cluster {cluster['id']}: {len(up)} of {cluster['pods']} nodes running after "
                                f"{s.ready_timeout_s:.0f}s; the whole cluster is deleted")
        time.sleep(s.poll_interval_s)
    pod.running_at = now()
    nodes, first = [], None
    for member in sorted(up, key=lambda m: m.rank):
        reached = provider.reach(pod, member, refresh=lambda mid=member.id: _member(provider, cluster["id"], mid))
        first = first or reached
        nodes.append({"pod_id": member.id, "rank": member.rank, "ip": member.overlay_ip or member.public_ip,
                      "ssh_user": reached.ssh_user, "ssh_host": reached.ssh_host, "ssh_port": reached.ssh_port,
                      "connection_mode": str(reached.connection_mode)})
    for name in ("ssh_user", "ssh_host", "ssh_port", "connection_mode", "ssh_key_path", "connection_source",
                 "transport_notes"):
        setattr(pod, name, getattr(first, name))  # the primary's: it trains, reports and holds the adapter
    pod.cluster = {**cluster, "nodes": nodes, "master_addr": nodes[0]["ip"], "master_port": MASTER_PORT}
    pod.ready_at = now()
    return pod


def _member(provider: Any, cluster_id: str, member_id: str) -> PodInfo | None:
    return next((m for m in _members(provider, cluster_id, patient=False) or [] if m.id == member_id), None)


def fate(provider: Any, pod: Pod, patient: bool = True) -> tuple[Fate, str]:
    """Gone when RunPod says the cluster is (404, or every member TERMINATED); stopped when any node
    is (the training cannot go on without it, and the others bill): it is then deleted whole."""
    members = _members(provider, (pod.cluster or {})["id"], patient)
    if members is None or all(m.status == "TERMINATED" for m in members):
        return Fate.GONE, "cluster not found (404)" if members is None else "TERMINATED"
    stopped = [m for m in members if m.status in STOPPED]
    if stopped:
        return Fate.STOPPED, f"node {stopped[0].id} {stopped[0].status}"
    return Fate.ALIVE, ", ".join(sorted({m.status or "?" for m in members}))


def terminate(provider: Any, pod: Pod, verify_s: float = 60.0) -> None:
    """DELETE the cluster (every node with it), then read it until RunPod says it is gone."""
    cluster_id = (pod.cluster or {})["id"]
    try:
        _api(provider).delete_cluster(cluster_id)
    except ApiError as exc:
        raise ProviderError(f"could not delete cluster {cluster_id}: {exc}; every node may still be billing") from None
    deadline = Deadline(verify_s)
    while True:
        try:
            gone, said = fate(provider, pod, patient=False)[0] is Fate.GONE, "still listed"
        except PodUnknown as exc:
            gone, said = False, str(exc)
        if gone:
            return
        if deadline.passed():
            raise ProviderError(f"cluster {cluster_id}: {said} {verify_s:.0f}s after the DELETE; its nodes may still "
                                f"be billing: `doit terminate_pod` tries again")
        time.sleep(min(provider.s.poll_interval_s, 2.0))


def listed(provider: Any) -> list[PodInfo]:
    """This account's clusters as the reaper sees pods (the API leaves members out of GET /v2/pods)."""
    api = provider.api
    if not hasattr(api, "clusters"):
        return []
    found = []
    for item in api.clusters():
        states = ((item.get("pods") or {}).get("byStatus") or {})
        status = next((s for s in ("ERROR", "EXITED", "RUNNING") if states.get(s)), None) or next(iter(states), None)
        found.append(PodInfo(id=item["id"], name=item.get("name"), status=status, cluster=True))
    return found
