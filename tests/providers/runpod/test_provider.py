"""`doit full_cycle` against the fake RunPod API, with the pod reached over real ssh."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tasks.core.errors import ProviderError
from tests.conftest import API_KEY, runpod_project
from tests.helpers import DODO


@pytest.mark.parametrize("backend", ["graphql", "rest"])
@pytest.mark.parametrize("mode", ["direct", "gateway", "gateway-pty"])
def test_full_cycle_on_the_fake_runpod(tmp_path, sshd, fake_api, gateway, backend, mode):
    fake_api.faults.public_ssh = mode == "direct"
    if mode == "gateway-pty":
        gateway.behaviour = "pty-only"
    # The PTY-only gateway (the hardest transport) trains for real over REST, the API RunPod is moving to;
    # the other modes move the same files with the stand-in trainer (the training does not depend on them).
    fake_api.faults.billing_lag = 1  # billing shows the pod on the second ask
    remote = {"python": str(tmp_path / "no" / "such" / "python"), "python_candidates": [sys.executable]}
    real = (backend, mode) == ("rest", "gateway-pty")
    proj = runpod_project(tmp_path, sshd, fake_api, backend=backend, gateway=gateway, real_training=real, remote=remote)
    started = time.monotonic()
    proc = proj.doit("full_cycle", check=True)
    wall = time.monotonic() - started
    assert (proj.adapter / "adapter_model.safetensors").is_file()
    assert fake_api.running() == [], "a pod was left running"
    summary = proj.summary
    pod = next(iter(fake_api.pods.values()))
    assert summary["pod_id"] == pod.id and summary["terminated"] is True and summary["training_success"] is True
    assert summary["connection_mode"] == {"direct": "direct-ssh", "gateway": "gateway-exec"}.get(mode, mode)
    assert summary["ssh_user"] == ("root" if mode == "direct" else pod.host_id)
    assert summary["pod"]["gpu"] == "NVIDIA GeForce RTX 5090" and summary["pod"]["cloud_type"] == "COMMUNITY"
    assert summary["upload_verification"].endswith("  config.json")
    assert "PUBLIC_KEY" in pod.env  # the pod accepts our key without registering it with the account
    if mode == "gateway":
        assert gateway.sessions >= 3 and not gateway.refused
    if mode == "gateway-pty":
        assert gateway.refused == ["exec without a PTY"]
    log = proj.trainer_log
    assert "Rented pod" in log and "cloudType COMMUNITY" in log and "Train command exit code: 0" in log
    training = summary["training"]
    assert training["python"] == sys.executable and training["python_source"] == "found in the image"
    assert "bootstrapped" not in log  # the image's Python was used: nothing installed on a billed pod
    choice = summary["gpu_choice"]
    assert choice["chosen"] == "NVIDIA GeForce RTX 5090 / COMMUNITY"
    if backend == "rest":  # the catalogue: every candidate with its price and availability, and why
        assert choice["catalogue"] == "read" and choice["why"] == "the first available in your order at $0.69/h"
        assert {(c["gpu"], c["cloud"]): c["price_per_hr"] for c in choice["candidates"]}[
            ("NVIDIA GeForce RTX 4090", "SECURE")] == 0.59
        assert summary["cost_usd_billed"] > 0 and summary["totals"]["cost_usd_billed"] == summary["cost_usd_billed"]
        assert summary["attempts"][-1]["cost_usd_billed"] == summary["cost_usd_billed"]
    else:
        assert choice["catalogue"] == "this API has no catalogue" and summary["cost_usd_billed"] is None
    assert API_KEY not in proc.stdout + proc.stderr + log + json.dumps(summary)
    api_calls = len(fake_api.calls)
    sessions = gateway.sessions if mode != "direct" else None
    print(f"\n[{backend}/{mode}] wall {wall:.1f}s, API calls {api_calls} "
          f"({', '.join(f'{op} {fake_api.ops(op)}' for op in ('list', 'create', 'get', 'terminate', 'catalog', 'datacenters', 'billing', 'logs') if fake_api.ops(op))}), "
          f"ssh sessions {summary['ssh_sessions']} (gateway saw {sessions})")


def _provider(tmp_path, fake_api, monkeypatch, **sections):
    """The context of a project renting from the double, made in this process as a run makes it."""
    from tasks.pipeline import assemble

    proj = runpod_project(tmp_path, None, fake_api, **sections)
    for name in ("FULLCYCLE_CONFIG", "FULLCYCLE_SECRETS", "RUNPOD_API_KEY", "RUNPOD_GRAPHQL_URL", "RUNPOD_API_URL"):
        monkeypatch.setenv(name, proj.env[name])
    ctx = assemble.context(date=proj.date)
    ctx.paths.work_local.mkdir(parents=True, exist_ok=True)
    return ctx


def test_every_candidate_unavailable_rents_nothing(tmp_path, fake_api, monkeypatch):
    fake_api.faults.unavailable = {("*", "*")}
    ctx = _provider(tmp_path, fake_api, monkeypatch)
    with pytest.raises(ProviderError, match="none available now") as err:
        ctx.provider.create()
    assert "nothing was rented" in str(err.value) and fake_api.ops("create") == 0 and fake_api.pods == {}
    assert json.loads(ctx.paths.gpu_choice_file.read_text())["chosen"] is None


def test_graphql_retired_stops_before_renting_with_the_fix(tmp_path, fake_api, monkeypatch):
    fake_api.faults.graphql_gone = True
    ctx = _provider(tmp_path, fake_api, monkeypatch, backend="graphql")
    with pytest.raises(ProviderError, match=r'\[runpod\] api = "rest"') as err:
        ctx.provider.create()
    assert "retired" in str(err.value) and fake_api.pods == {}


def test_a_pod_that_never_comes_up_leaves_its_own_log(tmp_path, fake_api):
    fake_api.faults.never_ready = True
    proj = runpod_project(tmp_path, None, fake_api, runpod={"ready_timeout_s": 1})
    proc = proj.doit("full_cycle")
    assert proc.returncode != 0 and fake_api.running() == []
    kept = proj.work / "pod-container.log"
    assert "Pulling image unsloth/unsloth:latest" in kept.read_text()
    assert str(kept) in proj.summary["error"] and "layer 3/14" in proj.summary["error"]
    assert fake_api.ops("logs") == 1
    assert fake_api.create_bodies[0]["gpu"]["minCudaVersion"] == "12.8"  # hosts whose driver runs the image's torch


def test_a_missing_billing_answer_never_fails_a_run(tmp_path, fake_api, monkeypatch):
    from tasks.pod.lifecycle import record_billed

    fake_api.faults.billing = "500"
    ctx = _provider(tmp_path, fake_api, monkeypatch)
    pod = ctx.provider.create()
    ctx.provider.terminate(pod)
    record_billed(ctx, pod)  # answered 500 (retried): the run goes on with its own estimate
    assert pod.cost_usd_billed is None and fake_api.ops("billing") >= 1 and fake_api.running() == []


def test_fallback_order_and_no_human_step(tmp_path, sshd, fake_api):
    fake_api.faults.capacity = {("NVIDIA GeForce RTX 5090", "COMMUNITY"), ("NVIDIA GeForce RTX 5090", "SECURE")}
    fake_api.faults.http_errors = {"create": [429, 503]}
    fake_api.faults.retry_after = 0
    proj = runpod_project(tmp_path, sshd, fake_api)
    proj.doit("create_pod", check=True)
    assert fake_api.create_attempts == [("NVIDIA GeForce RTX 5090", "COMMUNITY"), ("NVIDIA GeForce RTX 5090", "SECURE"),
                                        ("NVIDIA GeForce RTX 4090", "COMMUNITY")]
    pod = json.loads((proj.work / "pod.json").read_text())
    assert pod["gpu"] == "NVIDIA GeForce RTX 4090" and pod["cloud_type"] == "COMMUNITY"
    assert pod["terminated"] is True, "the forced teardown terminates the pod when doit ends"
    assert fake_api.running() == []


def test_no_capacity_anywhere_fails_cleanly(tmp_path, fake_api, monkeypatch):
    fake_api.faults.capacity = {("*", "*")}
    ctx = _provider(tmp_path, fake_api, monkeypatch, runpod={"gpu_types": ["NVIDIA GeForce RTX 5090", "NVIDIA A40"]})
    with pytest.raises(ProviderError, match="no capacity on any candidate") as err:
        ctx.provider.create()
    assert str(err.value).endswith("nothing was rented")
    assert len(fake_api.create_attempts) == 4 and fake_api.pods == {}


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_missing_or_rejected_key_stops_before_renting(tmp_path, sshd, fake_api, key):
    proj = runpod_project(tmp_path, sshd, fake_api)
    proj.env.pop("RUNPOD_API_KEY")
    if key:
        proj.env["RUNPOD_API_KEY"] = key
    proc = proj.doit("full_cycle")
    assert proc.returncode != 0
    assert fake_api.ops("create") == 0 and fake_api.pods == {}
    assert ("RUNPOD_API_KEY is not set" if key is None else "rejected the API key") in proj.summary["error"]


def test_connection_json_overrides_discovery(tmp_path, sshd, fake_api):
    fake_api.faults.public_ssh = False  # the API offers only the gateway, which is not running here
    proj = runpod_project(tmp_path, sshd, fake_api, training={"max_steps": 1})
    proj.work.mkdir(parents=True)
    (proj.work / "connection.json").write_text(json.dumps(
        {"ssh_user": "root", "ssh_host": "127.0.0.1", "ssh_port": sshd.port, "ssh_key_path": str(sshd.client_key)}))
    proj.doit("full_cycle", check=True)
    pod = json.loads((proj.work / "pod.json").read_text())
    assert pod["connection_source"] == "connection.json" and pod["ssh_port"] == sshd.port
    assert fake_api.running() == []


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ('{"ssh_user": "root", "ssh_host": "h"}', "field 'ssh_key_path' is missing"),
    ('{"ssh_user": "root", "ssh_host": "h", "ssh_key_path": "/nonexistent/key"}', "/nonexistent/key does not exist"),
])
def test_malformed_connection_json_is_named_and_the_pod_terminated(tmp_path, sshd, fake_api, content, message):
    proj = runpod_project(tmp_path, sshd, fake_api)
    proj.work.mkdir(parents=True)
    (proj.work / "connection.json").write_text(content)
    proc = proj.doit("full_cycle")
    assert proc.returncode != 0
    assert message in proj.summary["error"] and "connection.json" in proj.summary["error"]
    assert fake_api.running() == [] and proj.summary["terminated"] is True


def test_training_survives_an_ssh_drop(tmp_path, sshd, fake_api):
    proj = runpod_project(tmp_path, sshd, fake_api, training={"max_steps": 300, "gradient_accumulation_steps": 1})
    run = subprocess.Popen([sys.executable, "-m", "doit", "-f", str(DODO), "full_cycle"], cwd=proj.root, env=proj.env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = proj.work / "pod-train.log"
    deadline = time.time() + 120
    while time.time() < deadline and "step 20/" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.1)
    assert sshd.drop_connections() >= 1
    out, _ = run.communicate(timeout=300)
    assert run.returncode == 0, out[-3000:]
    train = json.loads((proj.work / "train.json").read_text())
    assert train["exit_code"] == 0 and train["reconnects"] >= 1
    assert "reconnecting" in out
    assert "step 300/300" in log.read_text()
    assert (proj.adapter / "adapter_model.safetensors").is_file() and fake_api.running() == []


@pytest.mark.parametrize("backend", ["graphql", "rest"])
def test_full_cycle_through_a_gateway_that_only_speaks_pty(tmp_path, sshd, fake_api, gateway, backend):
    fake_api.faults.public_ssh = False
    gateway.behaviour = "pty-only"
    gateway.faults.add("truncate_download")  # and the session drops in the middle of the download
    proj = runpod_project(tmp_path, sshd, fake_api, backend=backend, gateway=gateway)  # the transport is what is checked
    started = time.monotonic()
    proj.doit("full_cycle", check=True)
    wall = time.monotonic() - started
    summary = proj.summary
    assert summary["connection_mode"] == "gateway-pty" and summary["success"] is True
    assert (proj.adapter / "adapter_model.safetensors").is_file() and fake_api.running() == []
    log = proj.trainer_log
    assert "switching to the PTY transport" in log and "doesn't support PTY" in log
    assert "resuming at archive byte" in log
    assert gateway.refused.count("exec without a PTY") == 1, "the refusal was retried as if transient"
    print(f"\n[{backend}/gateway-pty] wall {wall:.1f}s, API calls {len(fake_api.calls)} "
          f"({', '.join(f'{op} {fake_api.ops(op)}' for op in ('list', 'create', 'get', 'terminate', 'catalog', 'datacenters', 'billing', 'logs') if fake_api.ops(op))}), "
          f"ssh sessions {summary['ssh_sessions']} (gateway saw {gateway.sessions}, one refused exec)")


def test_a_gateway_that_loses_stdout_of_the_first_command_and_of_the_follow(tmp_path, sshd, fake_api, gateway):
    fake_api.faults.public_ssh = False
    gateway.faults |= {"blind_first", "blind_follow"}
    proj = runpod_project(tmp_path, sshd, fake_api, gateway=gateway)
    proj.doit("full_cycle", check=True)
    summary = proj.summary
    assert summary["success"] is True and summary["connection_mode"] == "gateway-exec"
    assert "the pod says the training finished" in proj.trainer_log
    assert fake_api.running() == []


def test_rest_never_connects_direct_to_a_private_address(tmp_path, sshd, fake_api, gateway):
    fake_api.faults.public_ssh = False
    fake_api.faults.private_runtime_port = True  # ssh.direct null, tcp/22 on 10.65.0.7
    proj = runpod_project(tmp_path, sshd, fake_api, backend="rest", gateway=gateway, training={"max_steps": 1})
    started = time.monotonic()
    proj.doit("full_cycle", check=True)
    assert time.monotonic() - started < 60
    assert proj.summary["connection_mode"] == "gateway-exec"
    assert "10.65.0.7" not in proj.trainer_log


@pytest.mark.parametrize("backend", ["graphql", "rest"])
def test_a_network_volume_places_the_pod_in_its_data_center(tmp_path, sshd, fake_api, backend):
    proj = runpod_project(tmp_path, sshd, fake_api, backend=backend, training={"max_steps": 1},
                          runpod={"network_volume_id": "vol-abc123"})
    proj.doit("full_cycle", check=True)
    body = fake_api.create_bodies[-1]
    if backend == "graphql":
        assert body["networkVolumeId"] == "vol-abc123" and body["dataCenterId"] == "EU-RO-1"
    else:
        assert body["mounts"] == {"network": [{"volumeId": "vol-abc123", "path": "/workspace"}]}
        assert body["dataCenterIds"] == ["EU-RO-1"]
    pod = proj.summary["pod"]
    assert pod["network_volume_id"] == "vol-abc123" and pod["data_center"] == "EU-RO-1"
    assert "Network volume vol-abc123 is in EU-RO-1" in proj.trainer_log


def test_an_unknown_network_volume_stops_before_renting(tmp_path, fake_api, monkeypatch):
    ctx = _provider(tmp_path, fake_api, monkeypatch, backend="rest", runpod={"network_volume_id": "vol-nope"})
    with pytest.raises(ProviderError, match="vol-nope"):
        ctx.provider.create()
    assert fake_api.ops("create") == 0


def test_the_account_keys_are_read_never_replaced(fake_api):
    """RunPod's proxy lets in the account's registered keys or the pod's SSH_PUBLIC_KEY: the account is
    asked (GET), never changed (a PUT would replace the user's whole set)."""
    from tasks.providers.runpod.reach import account_key
    from tasks.providers.runpod.rest import RestApi

    api = RestApi(API_KEY, fake_api.url)
    mine = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0 me@laptop"
    assert account_key(api, mine, "~/.ssh/id").startswith("not registered with the account (0 key(s) there)")
    fake_api.account_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0 me@other-comment", "ssh-rsa AAAAB3 x"]
    assert account_key(api, mine, "~/.ssh/id") == "registered with the account"
    assert [detail for op, detail in fake_api.calls if op == "keys"] == ["GET", "GET"]
