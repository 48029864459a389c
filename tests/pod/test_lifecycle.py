"""Resume instead of re-rent, one run per date, a teardown that cannot terminate, and no leaked key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import API_KEY, runpod_project
from tests.helpers import DODO, make_project


def _start(proj, *args):
    return subprocess.Popen([sys.executable, "-m", "doit", "-f", str(DODO), *args], cwd=proj.root, env=proj.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_steps(proj, text="step 5/", timeout=120):
    log = proj.work / "pod-train.log"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.exists() and text in log.read_text():
            return
        time.sleep(0.1)
    raise AssertionError("training never started")


def _kill_mid_training(proj) -> None:
    """`doit full_cycle`, killed with SIGKILL once training is under way: nothing of it saved."""
    run = _start(proj, "full_cycle")
    _wait_for_steps(proj)
    run.send_signal(signal.SIGKILL)
    run.wait()


def test_a_killed_run_resumes_on_the_same_pod(tmp_path, sshd, fake_api):
    proj = runpod_project(tmp_path, sshd, fake_api, training={"max_steps": 150, "gradient_accumulation_steps": 1})
    _kill_mid_training(proj)
    second = proj.doit("full_cycle", check=True)
    assert fake_api.ops("create") == 1, "the live pod must be resumed, not a new one rented"
    assert "Resuming with live pod" in second.stdout or "-- create_pod" in second.stdout
    assert (proj.adapter / "adapter_model.safetensors").is_file() and fake_api.running() == []
    assert proj.summary["success"] is True and proj.summary["pod_id"] == next(iter(fake_api.pods))


@pytest.mark.slow  # the fast tier keeps a minute; the whole suite runs it
def test_a_second_run_for_the_same_date_refuses(tmp_path):
    proj = make_project(tmp_path, training={"max_steps": 300, "gradient_accumulation_steps": 1})
    first = _start(proj, "full_cycle")
    _wait_for_steps(proj)
    record_before = (proj.work / "attempts.jsonl").read_text()
    second = proj.doit("full_cycle")
    assert second.returncode != 0 and "another run for this date is in progress" in second.stdout
    record = (proj.work / "attempts.jsonl").read_text()
    assert record.startswith(record_before), "the second run rewrote the first's record"
    assert len({json.loads(line)["attempt"] for line in record.splitlines()}) == 1, "the second run wrote to the record"
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out[-2000:]
    assert proj.summary["success"] is True


def test_a_teardown_that_cannot_terminate_exits_nonzero_and_says_what_to_do(tmp_path, sshd, fake_api):
    fake_api.faults.terminate_errors = 1000
    proj = runpod_project(tmp_path, sshd, fake_api, training={"max_steps": 1})
    proc = proj.doit("create_pod")
    pod_id = next(iter(fake_api.pods))
    assert proc.returncode == 3
    assert pod_id in proc.stderr and "doit terminate_pod" in proc.stderr
    summary = proj.summary
    assert summary["terminated"] is False and "could not terminate" in summary["pod"]["terminate_error"]
    fake_api.faults.terminate_errors = 0
    proj.doit("terminate_pod", check=True)
    assert fake_api.running() == [] and proj.summary["terminated"] is True


def test_the_api_key_appears_nowhere(tmp_path, sshd, fake_api, gateway):
    """Files, captured output, exception texts and every spawned process's argv, with a sentinel key."""
    fake_api.faults.public_ssh = False
    fake_api.faults.http_errors = {"create": [503]}  # an error path too
    proj = runpod_project(tmp_path, sshd, fake_api, gateway=gateway, runpod={"retry_base_s": 0.05})
    seen_argv: set[str] = set()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        seen_argv.add(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                    except OSError:
                        pass
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    proc = proj.doit("full_cycle", check=True)
    stop.set()
    sampler.join()
    assert any("ssh" in a and "-T" in a for a in seen_argv), "the sampler saw no ssh process"
    leaks = [a for a in seen_argv if API_KEY in a]
    assert not leaks, leaks
    assert API_KEY not in proc.stdout + proc.stderr
    for path in [*proj.root.rglob("*")]:
        if path.is_file() and not path.name.endswith((".sqlite3",)):
            assert API_KEY.encode() not in path.read_bytes(), path
    assert all(not u.count(API_KEY) for u in fake_api.urls), "the key went into a URL"


def test_remote_paths_with_spaces_and_quotes(tmp_path, sshd, fake_api):
    odd = tmp_path / "pod dir" / "it's \"quoted\" $HOME"
    proj = runpod_project(tmp_path / "proj", sshd, fake_api, training={"max_steps": 1}, remote={
        "input_dir": str(odd / "in put"), "output_dir": str(odd / "out put" / "adapter"),
        "work_dir": str(odd / "work"), "hf_home": str(odd / "hf")})
    proj.doit("full_cycle", check=True)
    assert (odd / "in put" / "upload.ok").is_file()
    assert (proj.adapter / "adapter_model.safetensors").is_file() and fake_api.running() == []


def test_alternating_dates_rent_once_per_date(tmp_path, sshd, fake_api):
    proj = runpod_project(tmp_path, sshd, fake_api, training={"max_steps": 1})
    proj.doit("full_cycle", "--date", "2026-11-01", check=True)
    proj.doit("full_cycle", "--date", "2026-11-02", check=True)
    third = proj.doit("full_cycle", "--date", "2026-11-01", check=True).stdout
    assert fake_api.ops("create") == 2, "the third run rented again for a finished date"
    for stage in ("create_pod", "upload", "train", "download_adapter"):
        assert f".  {stage}" not in third, stage


def test_a_rerun_after_kill_9_reattaches_and_never_trains_twice(tmp_path, sshd, fake_api):
    # the stand-in trainer: ~6 s of steps, still running when the rerun reaches the upload
    proj = runpod_project(tmp_path, sshd, fake_api, training={"max_steps": 1200, "gradient_accumulation_steps": 1})
    _kill_mid_training(proj)
    second = proj.doit("full_cycle", check=True)
    assert "not uploading under it" in second.stdout
    pod_log = (tmp_path / "pod" / "workspace" / "fullcycle" / "run" / "train.log").read_text()
    assert pod_log.count("backend stand-in") == 1, "a second trainer was started"
    assert fake_api.ops("create") == 1 and fake_api.running() == []
    summary = proj.summary
    assert [a["outcome"] for a in summary["attempts"]] == ["died", "ok"]
    assert summary["attempts"][0]["pod_id"] == summary["attempts"][1]["pod_id"]
    assert summary["success"] is True


def test_a_pod_lost_with_its_run_is_in_the_totals_of_the_rerun(tmp_path, sshd, fake_api):
    proj = runpod_project(tmp_path, sshd, fake_api, training={"max_steps": 150, "gradient_accumulation_steps": 1})
    _kill_mid_training(proj)
    first = next(iter(fake_api.pods))
    fake_api._terminate(first)  # the pod went away with the run (watchdog, host failure)
    proj.doit("full_cycle", check=True)
    assert fake_api.ops("create") == 2
    summary = proj.summary
    assert summary["success"] is True and summary["totals"]["pods"] == 2
    assert [a["pod_id"] for a in summary["attempts"]][0] == first
    assert summary["totals"]["pod_seconds"] >= sum(a["pod_seconds"] for a in summary["attempts"])


def test_a_pod_stopped_while_its_run_was_dead_is_deleted_before_a_new_one_is_rented(tmp_path, sshd, fake_api):
    """EXITED is not gone: a stopped pod's disk bills until it is deleted. The rerun deletes it, verifies,
    records why, and only then rents again."""
    proj = runpod_project(tmp_path, sshd, fake_api, training={"max_steps": 150, "gradient_accumulation_steps": 1})
    _kill_mid_training(proj)
    first = next(iter(fake_api.pods))
    fake_api.stop(first)
    proj.doit("full_cycle", check=True)
    assert fake_api.pods[first].status == "TERMINATED" and fake_api.ops("create") == 2 and fake_api.running() == []
    assert ("terminate", first) in fake_api.calls
    first_life = next(a for a in proj.summary["attempts"] if a["pod_id"] == first)
    assert first_life["outcome"] == "died"
    events = [json.loads(line) for line in (proj.work / "attempts.jsonl").read_text().splitlines()]
    ended = next(e for e in events if e["event"] == "pod_terminated" and e["pod_id"] == first)
    assert "stopped outside this run (RunPod said EXITED); deleted" in ended["how"]
