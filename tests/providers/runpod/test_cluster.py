"""A plan that needs more than one pod: an Instant Cluster rented through the RunPod double's
/v2/clusters, each node its own sshd with its own files and RunPod's environment, one torchrun across
them on 127.0.0.1, the adapter home from rank 0, and the whole cluster deleted on success, on failure
and on SIGTERM (tasks/providers/runpod/cluster.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import runpod_project
from tests.doubles.hub import HubDouble
from tests.helpers import DODO, REPO

pytestmark = pytest.mark.slow  # two sshd nodes, a real sharded training across them
MODEL = "tests/big-for-a-cluster"  # a 60B model as the hub says (tiny weights really): no pod of 24 GB GPUs holds it
SETTINGS = {"training": {"base_model": MODEL, "quantize": "never", "per_device_train_batch_size": 4,
                         "gradient_accumulation_steps": 2, "max_steps": 6},
            "runpod": {"gpu_types": ["NVIDIA GeForce RTX 4090"], "cloud_types": ["SECURE"], "max_gpus": 2}}


@pytest.fixture
def hub(tmp_path):
    from tasks.model import tiny

    model = tmp_path / "hub-model"
    tiny.build(REPO / "examples" / "notes" / "me.jsonl", model)
    with HubDouble() as double:
        double.serve(MODEL, model, parameters=60_000_000_000)
        yield double


def _project(tmp_path, sshd, fake_api, hub, **extra):
    fake_api.node_binds = (tmp_path / "pod", tmp_path / "nodes")  # each node's files apart from the others'
    sections = {k: {**v, **extra.get(k, {})} for k, v in SETTINGS.items()}
    proj = runpod_project(tmp_path, sshd, fake_api, real_training=True, source=REPO / "examples" / "notes",
                          **sections)
    proj.env["HF_ENDPOINT"] = hub.url
    return proj


def test_two_pods_train_as_one_cluster_and_it_is_deleted(tmp_path, sshd, fake_api, hub):
    proj = _project(tmp_path, sshd, fake_api, hub)
    run = proj.doit("full_cycle", check=True)
    assert "plan: an Instant Cluster of 2 pods x 1 x NVIDIA H200" in run.stdout
    assert fake_api.ops("create_cluster") == 1 and fake_api.ops("create") == 0
    (cluster,) = fake_api.clusters.values()
    assert cluster.deleted_at is not None and fake_api.running() == []
    summary = proj.summary
    assert summary["success"] is True and summary["terminated"] is True and summary["pod_id"] == cluster.id
    recorded = summary["pod"]["cluster"]
    assert recorded["id"] == cluster.id and recorded["pods"] == 2 and recorded["gpus_per_pod"] == 1
    assert [node["rank"] for node in recorded["nodes"]] == [0, 1]
    assert summary["sharding"]["ranks"] == 2 and summary["sharding"]["nodes"] == 2
    assert summary["cost_usd_billed"] is not None and summary["cost_usd_billed"] > 0
    primary_log = (proj.work / "pod-train.log").read_text()
    assert "2 processes share the model (FSDP2, bf16)" in primary_log
    node_log = proj.work / f"pod-train-{cluster.members[1].id}.log"
    assert node_log.is_file() and "--no-weights" not in node_log.read_text()
    assert (proj.adapter / "adapter_model.safetensors").is_file()
    body = next(b for b in fake_api.create_bodies if "compute" in b)
    assert body["compute"] == {"gpuTypeId": "NVIDIA H200", "gpuCountPerPod": 1, "podCount": 2}
    assert body["type"] == "TRAINING" and body["env"]["SSH_PUBLIC_KEY"] == body["env"]["PUBLIC_KEY"]


def test_a_failed_training_deletes_the_cluster(tmp_path, sshd, fake_api, hub):
    proj = _project(tmp_path, sshd, fake_api, hub, training={"target_modules": ["no_such_proj"]})
    run = proj.doit("full_cycle")
    assert run.returncode != 0 and "no_such_proj" in proj.summary["error"]
    (cluster,) = fake_api.clusters.values()
    assert cluster.deleted_at is not None and fake_api.running() == []
    assert proj.summary["terminated"] is True


def _training(proj) -> subprocess.Popen:
    """`doit full_cycle` started, returned once the cluster's training has logged its second step."""
    run = subprocess.Popen([sys.executable, "-m", "doit", "-f", str(DODO), "full_cycle"], cwd=proj.root, env=proj.env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = proj.work / "pod-train.log"
    deadline = time.time() + 300
    while time.time() < deadline and not (log.exists() and "step 2/" in log.read_text()):
        time.sleep(0.2)
    assert log.exists() and "step 2/" in log.read_text(), "training never started"
    return run


def test_sigterm_deletes_the_cluster(tmp_path, sshd, fake_api, hub):
    proj = _project(tmp_path, sshd, fake_api, hub, training={"max_steps": 400})
    run = _training(proj)
    run.send_signal(signal.SIGTERM)
    out, _ = run.communicate(timeout=300)
    assert run.returncode == 143, out[-3000:]
    (cluster,) = fake_api.clusters.values()
    assert cluster.deleted_at is not None and fake_api.running() == []


def test_a_cluster_a_killed_run_left_is_found_and_deleted_whole_by_the_reaper(tmp_path, sshd, fake_api, hub):
    """Member pods are left out of GET /v2/pods and cannot be deleted through the pod endpoints: the reaper
    lists clusters too and deletes the cluster."""
    proj = _project(tmp_path, sshd, fake_api, hub, training={"max_steps": 400})
    run = _training(proj)
    run.send_signal(signal.SIGKILL)
    run.wait()
    (cluster,) = fake_api.clusters.values()
    assert cluster.deleted_at is None and len(fake_api.running()) == 2
    reaped = proj.doit("reap_pods", check=True)
    assert f"reaper: pod {cluster.id}" in reaped.stdout and "terminated" in reaped.stdout
    assert cluster.deleted_at is not None and fake_api.running() == []
    assert not any(op == "terminate" for op, _ in fake_api.calls)  # never DELETE /v2/pods/{member}: a 409
