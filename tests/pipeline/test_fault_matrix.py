"""The fault matrix: every way a run can go wrong, injected through the fake API, the ssh pod or a
signal. For each row: no pod left running, a valid summary that tells the truth, the right exit
code, and trainer.log naming the failure. The table is printed at the end of the session."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import runpod_project, table_row
from tests.doubles.sshpod import end_pod_processes, free_port
from tests.helpers import DODO


@dataclass
class Row:
    name: str
    ok: bool  # the run should succeed
    log: str  # trainer.log must contain this
    backend: str = "rest"
    gateway: bool = False
    faults: dict[str, Any] = field(default_factory=dict)
    gateway_faults: set[str] = field(default_factory=set)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    during_train: str | None = None  # "drop", "vanish", "stop" (from RunPod's console), "SIGINT", "SIGTERM", "SIGKILL"
    after: str | None = None  # "reap", "watchdog", "watchdog-stops" (then reap), "rerun" or "rerun-503" (through an outage)
    pod_rented: bool = True
    remote_python: str | None = None  # "fail", "evil", "elsewhere" (found among candidates), "nowhere" (built)
    gateway_behaviour: str = "exec"
    mode: str | None = None  # the connection mode the summary must name
    within_s: float | None = None  # the run must end this soon (from the fault, or from its start)


FAST_FAIL = {"runpod": {"ready_timeout_s": 2}, "ssh": {"probe_timeout_s": 2}}
LONG_TRAIN = {"training": {"max_steps": 400, "gradient_accumulation_steps": 1}}

ROWS = [
    Row("capacity on COMMUNITY only", True, "cloudType SECURE", backend="graphql",
        faults={"capacity": {("NVIDIA GeForce RTX 5090", "COMMUNITY")}}),
    Row("capacity everywhere", False, "no capacity on any candidate", faults={"capacity": {("*", "*")}}, pod_rented=False),
    Row("429 storm", True, "HTTP 429", backend="graphql", faults={"http_errors": {"create": [429] * 4, "get": [429] * 2}, "retry_after": 0}),
    Row("5xx on create", True, "HTTP 503", faults={"http_errors": {"create": [500, 503]}}),
    Row("5xx on terminate once", True, "Something went wrong", faults={"terminate_errors": 1}),
    Row("pod never ready", False, "the pod's own log is kept", faults={"never_ready": True},
        settings=FAST_FAIL),
    Row("runtime null forever", False, "runtime null", backend="graphql", faults={"never_ready": True}, settings=FAST_FAIL),
    Row("ssh refused", False, "never answered", faults={"ssh_port": "closed"}, settings=FAST_FAIL),
    Row("ssh dropped mid-upload", True, "upload attempt failed", gateway=True, faults={"public_ssh": False},
        gateway_faults={"drop_upload"}),
    Row("corrupted upload", True, "checksum mismatch", gateway=True, faults={"public_ssh": False},
        gateway_faults={"corrupt_upload"}),
    Row("ssh dropped mid-train", True, "reconnecting", settings=LONG_TRAIN, during_train="drop"),
    Row("training exits 1", False, "exited with 1", remote_python="fail"),
    Row("download truncated", True, "resuming at archive byte", gateway=True, faults={"public_ssh": False},
        gateway_faults={"truncate_download"}),
    Row("malicious archive (symlink out)", False, "refusing archive member", remote_python="evil"),
    Row("gateway speaks only PTY", True, "switching to the PTY transport", gateway=True, faults={"public_ssh": False},
        gateway_behaviour="pty-only"),
    Row("PTY session dropped mid-download", True, "resuming at archive byte", gateway=True,
        faults={"public_ssh": False}, gateway_behaviour="pty-only", gateway_faults={"truncate_download"}),
    Row("PTY session dropped mid-train", True, "reconnecting", gateway=True, faults={"public_ssh": False},
        gateway_behaviour="pty-only", settings=LONG_TRAIN, during_train="drop"),
    Row("gateway loses stdout (probe, follow)", True, "the pod says the training finished", gateway=True,
        faults={"public_ssh": False}, gateway_faults={"blind_first", "blind_follow"}),
    Row("pod's Python is elsewhere", True, "found in the image", remote_python="elsewhere"),
    Row("pod has no Python with the stack", True, "bootstrapped from requirements-cpu.txt", remote_python="nowhere"),
    Row("SIGINT mid-train", False, "interrupted", settings=LONG_TRAIN, during_train="SIGINT"),
    Row("SIGTERM mid-train", False, "interrupted", settings=LONG_TRAIN, during_train="SIGTERM"),
    Row("SIGKILL mid-train, then reaper", False, "reaper: pod", settings=LONG_TRAIN, during_train="SIGKILL",
        after="reap"),
    Row("pod terminated outside this run", False, "was terminated outside this run", gateway=True,
        faults={"public_ssh": False}, settings=LONG_TRAIN, during_train="vanish"),
    Row("SIGKILL mid-train, then watchdog", False, "step", during_train="SIGKILL", after="watchdog",
        settings={"training": {"max_steps": 2000, "gradient_accumulation_steps": 1}}),
    # RunPod as its own documents describe it (docs/reference/runpod.md, "Read again in RunPod's own documents")
    Row("direct port published late", True, "direct ssh published", gateway=True, faults={"direct_after_s": 3},
        settings={"ssh": {"direct_grace_s": 20}}, mode="direct-ssh"),
    Row("proxy knows only SSH_PUBLIC_KEY", True, "not registered with the account", gateway=True,
        faults={"public_ssh": False}, mode="gateway-exec"),
    Row("pod EXITED at start", False, "went EXITED while starting", faults={"start_status": "EXITED"}, within_s=30),
    Row("pod ERROR at start", False, "went ERROR while starting", faults={"start_status": "ERROR"}, within_s=30),
    Row("stopped from the console mid-train", False, "was stopped outside this run", settings=LONG_TRAIN,
        during_train="stop", within_s=30),
    Row("SIGKILL mid-train, rerun through 10 s of 503s", True, "asking again", settings=LONG_TRAIN,
        during_train="SIGKILL", after="rerun-503"),
    Row("SIGKILL mid-train, rerun with reap = terminate", True, "Resuming with live pod",
        settings={**LONG_TRAIN, "runpod": {"reap": "terminate"}}, during_train="SIGKILL", after="rerun"),
    Row("watchdog after GraphQL retired", False, "step", faults={"graphql_gone": True}, during_train="SIGKILL",
        after="watchdog", settings={"training": {"max_steps": 2000, "gradient_accumulation_steps": 1}}),
    Row("watchdog whose key may only stop", False, "step", faults={"pod_key_may": {"stop"}}, during_train="SIGKILL",
        after="watchdog-stops", settings={"training": {"max_steps": 2000, "gradient_accumulation_steps": 1}}),
]


def _remote_python(kind: str, folder: Path, settings: dict[str, dict[str, Any]]) -> str:
    if kind in ("elsewhere", "nowhere"):  # nothing at the configured path
        base = Path(sys.base_prefix) / "bin" / "python3"  # a Python without the training stack
        found = [str(base), sys.executable] if kind == "elsewhere" else [str(base)]
        settings.setdefault("remote", {}).update({"python_candidates": found, "venv_dir": str(folder / "pod-venv")})
        return str(folder / "workspace" / "unsloth-venv" / "bin" / "python")
    script = folder / f"python-{kind}"
    # A real Python for everything but the training itself (the pod's set-up probes it first).
    real = f'case " $* " in *" --output "*) ;; *) exec {sys.executable} "$@" ;; esac\n'
    if kind == "fail":
        script.write_text("#!/bin/sh\n" + real + "echo '[train] simulated crash' >&2\nexit 1\n")
    else:  # train for real, then plant a symlink that points out of the adapter folder
        script.write_text("#!/bin/sh\n" + real + f"{sys.executable} \"$@\"; code=$?\n"
                          'while [ "$1" != --output ]; do shift; done\n'
                          'ln -s /etc/passwd "$2/evil"\nexit $code\n')
    script.chmod(0o755)
    return str(script)


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_fault(row: Row, tmp_path, sshd, fake_api, gateway):
    for key, value in row.faults.items():
        setattr(fake_api.faults, key, free_port() if value == "closed" else value)
    gateway.faults |= row.gateway_faults
    gateway.behaviour = row.gateway_behaviour
    settings = {k: dict(v) for k, v in row.settings.items()}
    if row.remote_python:
        settings.setdefault("remote", {})["python"] = _remote_python(row.remote_python, tmp_path, settings)
    if row.after in ("watchdog", "watchdog-stops"):  # the pod ends itself with its own key (remote/watchdog.sh)
        settings.setdefault("runpod", {}).update({"max_runtime_h": 0.003})
    proj = runpod_project(tmp_path / "proj", sshd, fake_api, backend=row.backend,
                          gateway=gateway if row.gateway else None, **settings)
    started = time.monotonic()
    run = subprocess.Popen([sys.executable, "-m", "doit", "-f", str(DODO), "full_cycle"], cwd=proj.root,
                           env=proj.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if row.during_train:
        log = proj.work / "pod-train.log"
        assert _wait_for(lambda: log.exists() and "step 5/" in log.read_text(), 120), "training never started"
        if row.during_train == "drop":
            sshd.drop_connections()
        elif row.during_train in ("vanish", "stop"):  # ended or stopped from RunPod's console: its processes go too
            pod_id = next(iter(fake_api.pods))
            fake_api._terminate(pod_id) if row.during_train == "vanish" else fake_api.stop(pod_id)
            end_pod_processes(tmp_path)
            sshd.drop_connections()
        else:
            run.send_signal(getattr(signal, row.during_train))
        started = time.monotonic()
    out, _ = run.communicate(timeout=600)
    code, took = run.returncode, time.monotonic() - started
    if row.after == "reap":
        assert len(fake_api.running()) == 1, "the killed run's pod should still be up before the reaper"
        reap = proj.doit("reap_pods")
        assert reap.returncode == 0, reap.stdout + reap.stderr
    if row.after == "watchdog":
        assert _wait_for(lambda: not fake_api.running(), 60), "the watchdog never terminated the pod"
    if row.after == "watchdog-stops":  # the pod's key may only stop it: the GPU stops, its disk bills until reaped
        assert _wait_for(lambda: [p.status for p in fake_api.running()] == ["EXITED"], 60), "the watchdog never stopped it"
        reap = proj.doit("reap_pods")
        assert reap.returncode == 0 and "EXITED" in reap.stdout, reap.stdout + reap.stderr
    if row.after in ("rerun", "rerun-503"):  # the killed run's pod is live: the rerun resumes on it, never rents again
        if row.after == "rerun-503":
            fake_api.faults.outage = {"get": time.time() + 10}
        rerun = proj.doit("full_cycle", timeout=600)
        code, out = rerun.returncode, rerun.stdout + rerun.stderr
        assert len(fake_api.pods) == 1, f"{len(fake_api.pods)} pods rented: the live one was taken for gone"

    leaked = len(fake_api.running())
    summary = json.loads((proj.work / "run-summary.json").read_text())
    trainer_log = proj.trainer_log
    expected_code_ok = (code == 0) if row.ok else (code != 0)
    # `terminated` is what this machine verified: after the watchdog nothing here saw the pod end
    verified_end = row.pod_rented and row.after != "watchdog"
    summary_ok = (summary["training_success"] is row.ok and summary["success"] is row.ok
                  and (summary["error"] is None) is row.ok and summary["terminated"] is verified_end)
    table_row("fault-matrix", {"fault": row.name, "exit": code, "leaked pods": leaked, "summary ok": summary_ok,
                   "log names it": row.log in trainer_log})
    assert leaked == 0, f"{leaked} pod(s) left running"
    assert expected_code_ok, f"exit code {code}\n{out[-3000:]}"
    assert summary_ok, json.dumps({k: summary[k] for k in ("training_success", "success", "terminated", "error")}) + out[-2000:]
    assert row.log in trainer_log, trainer_log[-3000:]
    assert (proj.adapter / "adapter_model.safetensors").is_file() is row.ok
    if row.mode:
        assert summary["connection_mode"] == row.mode, summary["pod"]
    if row.within_s:
        assert took < row.within_s, f"the run took {took:.0f} s after the fault"
