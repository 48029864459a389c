"""One date, one honest record across reruns (local provider): per-date state, attempts kept, advice that works."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import DODO, EXAMPLES, make_project, ran

REMOTE_STAGES = ("create_pod", "upload", "train", "download_adapter")


def _creates(proj, date: str) -> int:
    log = proj.root / "metahuman-runs" / date / "attempts.jsonl"
    return sum(1 for line in log.read_text().splitlines() if json.loads(line)["event"] == "pod_created")


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A date that finished once."""
    proj = make_project(tmp_path_factory.mktemp("record"))
    proj.doit("full_cycle", check=True)
    return proj


@pytest.mark.slow  # the fast tier keeps a minute; the whole suite runs it
def test_another_date_does_not_make_a_finished_date_start_over(tmp_path):
    proj = make_project(tmp_path, date="2026-11-01")
    proj.doit("full_cycle", check=True)
    proj.doit("full_cycle", "--date", "2026-11-02", check=True)
    third = proj.doit("full_cycle", "--date", "2026-11-01", check=True).stdout
    for stage in REMOTE_STAGES:
        assert not ran(third, stage), stage
    assert _creates(proj, "2026-11-01") == 1 and _creates(proj, "2026-11-02") == 1
    info = proj.doit("info", "train", "--date", "2026-11-01").stdout
    assert "object at 0x" not in info


def test_rerunning_download_after_the_pod_is_gone_keeps_the_adapter(done):
    proj = done
    before = proj.summary
    assert proj.doit("forget", "download_adapter").returncode == 0
    out = proj.doit("download_adapter", check=True).stdout
    assert ran(out, "download_adapter") and "already here" in out
    assert proj.summary["success"] is True and proj.summary["training_success"] is True
    assert len(proj.summary["attempts"]) == len(before["attempts"]) + 1
    again = proj.doit("full_cycle", check=True).stdout
    for stage in REMOTE_STAGES:
        assert not ran(again, stage), stage


@pytest.mark.slow  # the fast tier keeps a minute; the whole suite runs it
def test_a_lost_download_is_trained_again_when_asked_for(tmp_path):
    """The pod is gone and the adapter never arrived: asking for the download rents again, says why."""
    proj = make_project(tmp_path)
    proj.doit("full_cycle", check=True)
    (proj.work / "adapter_base64.txt").unlink()
    shutil.rmtree(proj.adapter)
    out = proj.doit("download_adapter", check=True).stdout
    assert "never arrived" in out and ran(out, "create_pod") and ran(out, "train")
    assert _creates(proj, proj.date) == 2
    proj.doit("full_cycle", check=True)
    summary = proj.summary
    assert summary["success"] is True and (proj.adapter / "adapter_config.json").is_file()
    assert summary["totals"]["pods"] == 2 and len(summary["attempts"]) == 3
    assert all(a["outcome"] == "ok" for a in summary["attempts"])


def test_always_execute_a_stage_on_a_finished_date_rents_nothing(done):
    out = done.doit("-a", "download_adapter", check=True).stdout
    assert ran(out, "download_adapter") and "Nothing to rent" in out
    assert _creates(done, done.date) == 1


def test_a_skipped_stage_named_on_the_command_line_says_why(done):
    out = done.doit("download_adapter", check=True).stdout
    assert "-- download_adapter  (up to date" in out and "doit -a download_adapter" in out


def test_a_failed_rerun_keeps_the_record_of_the_success(tmp_path):
    source = tmp_path / "notes"
    shutil.copytree(EXAMPLES, source)
    proj = make_project(tmp_path / "proj", source=source)
    proj.doit("full_cycle", check=True)
    first = proj.summary["attempts"][0]
    for f in source.glob("*.jsonl"):
        f.write_text("this is not json\n")  # a broken dataset folder: nothing usable in it
    failed = proj.doit("full_cycle")
    assert failed.returncode != 0
    summary = proj.summary
    assert summary["attempts"][0] == first, "a later attempt rewrote an earlier one"
    assert summary["attempts"][-1]["outcome"] == "failed" and summary["error"]
    assert summary["training_success"] is True and (proj.adapter / "adapter_config.json").is_file()


def test_a_partial_run_never_says_failed_without_a_reason(tmp_path):
    proj = make_project(tmp_path)
    proj.doit("clean_dataset", check=True)
    summary = proj.summary
    assert summary["success"] is False and summary["error"].startswith("incomplete")
    assert "doit full_cycle" in summary["error"]


def test_report_works_without_matplotlib(done, tmp_path):
    blocker = tmp_path / "block" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'matplotlib'\")\n")
    env = dict(done.env, PYTHONPATH=f"{blocker.parent}:{done.env['PYTHONPATH']}")
    proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(DODO), "report"], cwd=done.root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert done.date in proc.stdout and "attempts" in proc.stdout
    assert "pip install -e '.[report]'" in proc.stdout


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_is_one_line_and_the_conventional_exit_code(tmp_path, sig, code):
    proj = make_project(tmp_path, training={"max_steps": 400, "gradient_accumulation_steps": 1})
    run = subprocess.Popen([sys.executable, "-m", "doit", "-f", str(DODO), "full_cycle"], cwd=proj.root,
                           env=proj.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = proj.work / "pod-train.log"
    deadline = time.time() + 120
    while not (log.exists() and "step 5/" in log.read_text()):
        assert time.time() < deadline, "training never started"
        time.sleep(0.1)
    run.send_signal(sig)
    out, err = run.communicate(timeout=120)
    assert run.returncode == code, (run.returncode, err[-2000:])
    assert "Traceback" not in err and "Traceback" not in out, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("fullcycle:")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"fullcycle: stopped by {sig.name} during train"), lines[0]
    assert "was terminated" in lines[0]
    summary = proj.summary
    assert summary["terminated"] is True and summary["attempts"][-1]["outcome"] == "interrupted"
