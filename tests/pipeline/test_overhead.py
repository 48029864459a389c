"""The pod's billed seconds that are not training, against the RunPod double, a real sshd as the pod
and the model hub double: each phase recorded apart, and a download that stalls ends the run (and
the pod) within the stall limit and one retry."""

from __future__ import annotations

import hashlib
import time

import pytest

from tests.doubles.hub import HubDouble, _files

MODEL = "tests/small-moe"  # a hub model whose files really download (a few hundred KB)


@pytest.fixture
def hub():
    with HubDouble() as double:
        yield double


def _project(tmp_path, sshd, fake_api, hub, remote: dict | None = None, training: dict | None = None, **runpod):
    from tests.conftest import runpod_project

    proj = runpod_project(tmp_path, sshd, fake_api, training={"base_model": MODEL, **(training or {})},
                          remote={"preflight": "never", **(remote or {})}, runpod=runpod)
    proj.env["HF_ENDPOINT"] = hub.url
    return proj


def test_a_rented_run_records_image_pull_download_load_and_training_apart(tmp_path, sshd, fake_api, hub):
    proj = _project(tmp_path, sshd, fake_api, hub)
    proj.doit("full_cycle")
    summary = proj.summary
    spent = summary["phases"]
    assert spent["image_pull"] == 42.0  # the double's system log: 42 s from "Pulling image" to its last pull line
    assert summary["pod"]["image"] == "unsloth/unsloth:latest" and summary["pod"]["image_pull"]["cached"] is False
    assert spent["model_download"] > 0 and spent["model_load"] is not None and spent["training"] > 0
    weights = sum(len(data) for data in _files(MODEL).values())
    assert summary["model_download"]["bytes"] >= weights * 0.9 and summary["model_download"]["mb_s"] > 0
    assert any(path.endswith("model.safetensors") for path in hub.faults.downloads)
    assert 0 < summary["not_training_share"] < 1
    digest = "sha256:" + hashlib.sha256(b"unsloth/unsloth:latest").hexdigest()  # what the double's log printed
    assert summary["pod"]["image_pull"]["digest"] == digest
    assert any(w.startswith("image: the pod ran unsloth/unsloth:latest, a tag that can move") and
               f"unsloth/unsloth@{digest} (the image this run ran)" in w for w in summary["warnings"])
    assert fake_api.create_bodies[-1]["env"]["UNSLOTH_SKIP_NOTEBOOK_SYNC"] == "1"


@pytest.mark.slow  # two stalls of the smallest limit a user may set (5 s)
def test_a_stalled_download_ends_the_run_and_the_pod_within_the_stall_limit(tmp_path, sshd, fake_api, hub):
    hub.faults.stall_after, hub.faults.stall_for = 50_000, 60.0
    proj = _project(tmp_path, sshd, fake_api, hub, download_stall_s=5)
    started = time.monotonic()
    proc = proj.doit("full_cycle")
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert time.monotonic() - started < 45  # two stalls of 5 s and the pipeline around them, not the 60 s silence
    summary = proj.summary
    assert summary["error"].startswith("train: the base model's download failed")
    assert "stalled 2 times (no byte for 5s each time)" in summary["error"]
    assert summary["terminated"] is True and fake_api.ops("terminate") >= 1
    assert summary["model_download"]["ok"] is False and summary["model_download"]["bytes"] >= 0
    assert summary["stages"]["train"]["seconds"] < 25


@pytest.mark.slow
def test_a_second_run_on_a_network_volume_downloads_nothing(tmp_path, sshd, fake_api, hub):
    """Both pods mount the same volume at /workspace (here: the same folder the sshd pod keeps), so the
    second day's download step finds the model there and records 0 bytes; pods rent Secure Cloud only,
    in the volume's data center."""
    proj = _project(tmp_path, sshd, fake_api, hub, network_volume_id="vol-abc123")
    proj.doit("full_cycle", check=True)
    first = proj.summary
    assert first["model_download"]["bytes"] > 0
    proj.date = proj.env["FULLCYCLE_DATE"] = "2026-11-28"
    proj.doit("full_cycle", check=True)
    second = proj.summary
    assert second["model_download"]["bytes"] == 0 and second["model_download"]["ok"] is True
    # nothing installed: the stack was found, not built; finding it is a few Python starts, which
    # whole-second clocks on the pod (date +%s) round to 0 or 1
    assert "bootstrapped" not in second["training"]["python_source"] and second["phases"]["python_stack"] <= 2
    for body in fake_api.create_bodies:
        assert body["cloud"] == "SECURE" and body["dataCenterIds"] == ["EU-RO-1"]
        assert body["mounts"]["network"] == [{"volumeId": "vol-abc123", "path": "/workspace"}]
    assert {c.split("/")[1] for op, c in fake_api.calls if op == "create"} == {"SECURE"}


@pytest.mark.slow  # the preflight trains a tiny model for real while the hub double takes ~6 s
def test_the_preflight_runs_beside_the_download_and_is_billed_only_beyond_it(tmp_path, sshd, fake_api, hub):
    """The download starts the moment the pod's Python is there; the preflight runs meanwhile. The
    summary counts the download whole and the preflight only for what it went on after the download."""
    hub.faults.trickle_s = 10.0  # long enough that the preflight overlaps it on a loaded machine too
    proj = _project(tmp_path, sshd, fake_api, hub, remote={"preflight": "always"})
    proj.doit("full_cycle", check=True)
    summary = proj.summary
    download, preflight = summary["model_download"], summary["preflight"]
    assert download["ok"] is True and preflight["ok"] is True and preflight["where"] == "apart"  # the stand-in trains
    assert preflight["started_at"] < download["ended_at"] and download["started_at"] < preflight["ended_at"]
    assert download["ended_at"] - download["started_at"] >= 5
    spent = summary["phases"]
    beyond = max(preflight["ended_at"] - max(preflight["started_at"], download["ended_at"]), 0)
    assert spent["preflight"] == pytest.approx(beyond, abs=0.02) and spent["preflight"] < preflight["seconds"]
    assert preflight["cost"] == {"seconds": preflight["seconds"], "billed_beyond_download": spent["preflight"]}
    serial = download["ended_at"] - download["started_at"] + preflight["seconds"]
    block = max(download["ended_at"], preflight["ended_at"]) - min(download["started_at"], preflight["started_at"])
    assert block < serial - 3  # the two together took seconds less than one after the other


@pytest.mark.slow  # the preflight fails at its LoRA step while the hub double is still sending
def test_a_failed_preflight_stops_the_download_beside_it_and_ends_the_pod(tmp_path, sshd, fake_api, hub):
    hub.faults.trickle_s = 60.0
    proj = _project(tmp_path, sshd, fake_api, hub, remote={"preflight": "always"},
                    training={"target_modules": ["nope_proj"]})
    started = time.monotonic()
    proc = proj.doit("full_cycle")
    assert proc.returncode != 0 and time.monotonic() - started < 50  # not the minute the download would take
    summary = proj.summary
    assert summary["error"].startswith("train: preflight failed at lora"), summary["error"]
    assert "the base model's download beside it was stopped" in summary["error"]
    download = summary["model_download"]
    assert download["ok"] is False and download["stopped"] is True
    assert download["bytes"] < sum(len(data) for data in _files(MODEL).values())
    assert summary["terminated"] is True and fake_api.ops("terminate") >= 1
    assert "backend stand-in" not in (proj.work / "pod-train.log").read_text()
