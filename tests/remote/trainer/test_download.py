"""The base model's download on the pod (remote/trainer/download.py), against the hub double: timed,
measured, nothing the second time, and never hung: a stall is retried once, then the step fails with
what it got."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.doubles.hub import HubDouble
from tests.helpers import REMOTE, SEED_CONFIG, train_config, trainer


@pytest.fixture
def hub():
    with HubDouble() as double:
        yield double


def _download(tmp_path, hub, config: dict, home) -> tuple[subprocess.CompletedProcess, dict]:
    (tmp_path / "config.json").write_text(json.dumps({**SEED_CONFIG, **config}))
    proc = subprocess.run([sys.executable, "-m", "trainer.download", "--config", str(tmp_path / "config.json"),
                           "--report", str(tmp_path / "download.json")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(home),
                                            "PYTHONPATH": str(REMOTE), "FULLCYCLE_PROGRESS_S": "0.2"})
    return proc, json.loads((tmp_path / "download.json").read_text())


MODEL = {"base_model": "tests/small-moe", "model_to_load": "tests/small-moe", "download_bytes": 390_000,
         "download_stall_s": 2}


def test_a_download_is_measured_and_the_second_downloads_nothing(tmp_path, hub):
    home = tmp_path / "hf"
    proc, report = _download(tmp_path, hub, MODEL, home)
    assert proc.returncode == 0 and report["ok"] is True, proc.stderr
    assert report["bytes"] >= 384_000 and report["seconds"] > 0 and report["tries"] == 1
    assert "base model downloaded: 3" in proc.stdout and "\r" not in proc.stdout
    proc, again = _download(tmp_path, hub, MODEL, home)  # the volume kept it: nothing comes down
    assert proc.returncode == 0 and again["bytes"] == 0 and "already cached" in proc.stdout


@pytest.mark.slow  # the fast tier keeps a minute; the whole suite runs it
def test_a_stalled_download_is_retried_once_then_fails_with_what_it_got(tmp_path, hub):
    hub.faults.stall_after, hub.faults.stall_for = 50_000, 20
    started = time.monotonic()
    proc, report = _download(tmp_path, hub, MODEL, tmp_path / "hf")
    seconds = time.monotonic() - started
    assert proc.returncode == 6 and report["ok"] is False
    assert "stalled 2 times (no byte for 2s each time); got " in report["error"]
    assert report["error"].endswith("of ~390.0 KB") or "of ~390.0 KB" in report["error"]
    assert proc.stdout.count("stalled: no byte for 2s") == 2 and "[train] ERROR:" in proc.stderr
    assert seconds < 2 * 2 + 6, seconds  # the stall limit twice, plus starting two downloads


def test_nothing_is_downloaded_for_a_model_that_travels(tmp_path, hub):
    proc, report = _download(tmp_path, hub, {"base_model": "tiny", "base_model_dir": "base_model"}, tmp_path / "hf")
    assert proc.returncode == 0 and report["skipped"] and hub.faults.downloads == []


def test_the_plan_downloads_what_the_trainer_loads_and_nothing_for_a_preflight_alone():
    plan = trainer("download").plan
    moe = train_config(base_model="Qwen/Qwen3-30B-A3B", model_to_load="unsloth/Qwen3-30B-A3B-bnb-4bit",
                       fallback_model="Qwen/Qwen3-30B-A3B")
    assert plan(moe) == "unsloth/Qwen3-30B-A3B-bnb-4bit"  # the preflight beside it finds out whether it loads
    assert plan(train_config(base_model="Qwen/Qwen3-30B-A3B")) == "Qwen/Qwen3-30B-A3B"
    assert plan({**moe, "preflight_only": True}) is None  # `doit gpu_check` trains nothing after the preflight


def test_a_stopped_download_says_so_with_the_bytes_it_had(tmp_path, hub):
    """The runner stops the download (SIGTERM) when the preflight beside it fails: the hub's child is
    ended with it and the report says it was stopped, whole, with its start and end."""
    hub.faults.stall_after, hub.faults.stall_for = 50_000, 30
    (tmp_path / "config.json").write_text(json.dumps({**SEED_CONFIG, **MODEL, "download_stall_s": 20}))
    proc = subprocess.Popen([sys.executable, "-m", "trainer.download", "--config", str(tmp_path / "config.json"),
                             "--report", str(tmp_path / "download.json")], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"),
                                 "PYTHONPATH": str(REMOTE)})
    deadline = time.monotonic() + 30
    while not hub.faults.downloads and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.terminate()
    _, err = proc.communicate(timeout=20)
    report = json.loads((tmp_path / "download.json").read_text())
    assert proc.returncode == 6 and report["ok"] is False and report["stopped"] is True, err
    assert "stopped before it finished" in report["error"] and report["ended_at"] >= report["started_at"]
    assert not (tmp_path / "download.json.tmp").exists()


def test_the_trainer_waits_for_the_download_beside_it(tmp_path, monkeypatch):
    download = trainer("download")
    monkeypatch.delenv("FULLCYCLE_DOWNLOAD_PID", raising=False)
    assert download.wait() is None  # none started beside this process: nothing to wait for
    report = tmp_path / "download.json"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.6)"])
    monkeypatch.setenv("FULLCYCLE_DOWNLOAD_PID", str(sleeper.pid))
    monkeypatch.setenv("FULLCYCLE_DOWNLOAD_REPORT", str(report))
    code = (f"import time, json; time.sleep(0.3); "
            f"open({str(report)!r}, 'w').write(json.dumps({{'ok': True, 'repo': 'x/y'}}))")
    writer = subprocess.Popen([sys.executable, "-c", code])
    started = time.monotonic()
    assert download.wait(poll_s=0.05) == {"ok": True, "repo": "x/y"} and time.monotonic() - started >= 0.25
    report.write_text(json.dumps({"ok": False, "error": "the hub refused x/y", "bytes": 7}))
    with pytest.raises(download.DownloadFailed, match="the hub refused") as failed:
        download.wait(poll_s=0.05)
    assert failed.value.got == 7 and failed.value.exit_code == 6
    report.unlink()
    sleeper.wait(), writer.wait()
    with pytest.raises(download.DownloadFailed, match="ended without a report"):
        download.wait(poll_s=0.05)


def test_the_fast_path_needs_the_memory_for_it(monkeypatch):
    download = trainer("download")
    monkeypatch.setattr(download, "memory_gb", lambda: 12.0)
    seen = {}
    monkeypatch.setattr(download, "_once", lambda repo, progress, env, files: seen.update(env) or True)
    report = download.fetch("x/y", 0, 5)
    assert report["fast_path"] is False and "HF_XET_HIGH_PERFORMANCE" not in seen
    monkeypatch.setattr(download, "memory_gb", lambda: 64.0)
    assert download.fetch("x/y", 0, 5)["fast_path"] is True and seen["HF_XET_HIGH_PERFORMANCE"] == "1"


@pytest.mark.parametrize("v2, v1, available_kb, want", [
    ("48000000000", None, 1_000_000_000, 48.0),  # cgroup v2: the pod's cap, not the 1 TB host
    ("max", "9223372036854771712", 64_000_000, 65.5),  # no limit in either: what the kernel has
    (None, "46000000000", 1_000_000_000, 46.0),  # cgroup v1 hosts
    ("max", None, 12_000_000, 12.3),  # less available than any limit
    (None, None, None, None),  # nothing readable: the caller keeps the fast path off
])
def test_the_memory_is_the_pods_not_the_hosts(tmp_path, v2, v1, available_kb, want):
    download = trainer("download")
    meminfo = None if available_kb is None else f"MemTotal: 2000000000 kB\nMemAvailable: {available_kb} kB\n"
    files = {"sys/fs/cgroup/memory.max": v2, "sys/fs/cgroup/memory/memory.limit_in_bytes": v1,
             "proc/meminfo": meminfo}
    for name, text in files.items():
        if text is not None:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(text + "\n")
    got = download.memory_gb(tmp_path)
    assert (got is None) if want is None else round(got, 1) == want
