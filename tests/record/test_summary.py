"""run-summary.json composed by `summary.build` from the date's files alone (tasks/record/summary.py)."""

from __future__ import annotations

import json

import pytest

from tasks import catalog
from tasks.core.paths import RunPaths
from tasks.record import summary
from tasks.record.attempts import append_event


@pytest.fixture
def paths(tmp_path) -> RunPaths:
    found = RunPaths(date="2026-11-01", project_root=tmp_path, out_root=tmp_path / "out", work_local=tmp_path / "w",
                     final_adapter_dir=tmp_path / "out" / "adapter", raw_data_file=tmp_path / "raw.jsonl",
                     clean_data_file=tmp_path / "w" / "clean.jsonl", config_file=tmp_path / "w" / "config.json",
                     summary_file=tmp_path / "w" / "run-summary.json", trainer_log=tmp_path / "t.log",
                     cache_dir=tmp_path / "c")
    found.work_local.mkdir(parents=True)
    return found


def _write(path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _stage(paths: RunPaths, attempt: str, name: str, status: str = "ok", **fields) -> None:
    append_event(paths, attempt, "stage", stage=name, status="running")
    append_event(paths, attempt, "stage", stage=name, status=status, **fields)


def _finished(paths: RunPaths) -> None:
    """A record of a run that did everything: every needed stage ok, an adapter, a terminated pod."""
    append_event(paths, "a1", "start", pid=1)
    for name in catalog.NEEDED:
        _stage(paths, "a1", name, seconds=1.5, ssh_sessions=2 if name == "upload" else 0)
    append_event(paths, "a1", "end", outcome="ok")
    _write(paths.final_adapter_dir / "adapter_config.json", {"r": 8})
    _write(paths.train_file, {"exit_code": 0, "seconds": 30.0})
    _write(paths.pod_file, {"pod_id": "p1", "cost_per_hr": 0.9, "created_at": "2026-11-01T10:00:00+00:00",
                            "terminated_at": "2026-11-01T10:20:00+00:00", "terminated": True})


def test_a_finished_record_is_a_success_with_its_cost_read_from_the_pods_life(paths):
    _finished(paths)
    built = summary.build(paths, "runpod", live=False)
    assert built["success"] is True and built["training_success"] is True and built["error"] is None
    assert built["terminated"] is True and built["outcome"] == "ok"
    assert built["billed_seconds"] == 1200.0 and built["cost_usd"] == pytest.approx(0.3)
    assert built["ssh_sessions"] == 2
    assert list(built["stages"]) == list(catalog.NEEDED)
    assert all(s["status"] == "ok" and s["seconds"] == 1.5 for s in built["stages"].values())


def test_stage_status_comes_from_the_attempts_log_and_the_latest_attempt_wins(paths):
    append_event(paths, "a1", "start", pid=1)
    _stage(paths, "a1", "build_dataset")
    _stage(paths, "a1", "train", "failed", error="CUDA out of memory")
    append_event(paths, "a1", "end", outcome="failed")
    append_event(paths, "a2", "start", pid=1)
    _stage(paths, "a2", "train", seconds=9.0)
    append_event(paths, "a2", "end", outcome="ok")
    built = summary.build(paths, "local", live=False)
    assert built["stages"]["train"]["status"] == "ok" and built["stages"]["train"]["attempt"] == "a2"
    assert list(built["stages"]) == ["build_dataset", "train"]  # in the order they last ran
    assert [a["outcome"] for a in built["attempts"]] == ["failed", "ok"]
    # no adapter: it says what is missing and how to go on, never success
    assert built["success"] is False
    assert built["error"].startswith("incomplete: no verified adapter yet") and "extract_adapter" in built["error"]
    assert "`doit full_cycle`" in built["error"]


def test_a_stage_still_running_when_its_process_died_is_named(paths):
    append_event(paths, "a1", "start", pid=1)
    append_event(paths, "a1", "stage", stage="train", status="running")
    built = summary.build(paths, "runpod", live=False)
    assert built["outcome"] == "died"
    assert built["error"] == "train: the process died without finishing (killed?)"
    assert built["stages"]["train"]["status"] == "running"


def test_a_torn_record_is_named_in_warnings_and_read_as_empty(paths):
    _finished(paths)
    paths.pod_file.write_text('{"pod_id": "p1", "cost_per')  # a disk that filled up mid-write
    paths.model_check_file.write_text("[1, 2]")
    built = summary.build(paths, "runpod", live=False)
    assert any(str(paths.pod_file) in w and "not valid JSON" in w for w in built["warnings"])
    assert any(str(paths.model_check_file) in w and "list" in w for w in built["warnings"])
    assert built["pod"] is None and built["billed_seconds"] is None and built["cost_usd"] is None
    assert built["training_success"] is True  # the adapter is there: the torn pod record does not hide it


def test_a_worse_adapter_that_was_not_promoted_is_a_warning_not_a_failure(paths):
    _finished(paths)
    _write(paths.eval_file, {"heldout_samples": 4, "verdict": "worse", "why": "loss 2.1 > 1.9", "promoted": False})
    built = summary.build(paths, "runpod", live=False)
    assert built["success"] is True
    assert any(w.startswith("eval: today's adapter is worse (loss 2.1 > 1.9)") for w in built["warnings"])
    assert built["eval"]["previous_why"] == "no earlier promoted adapter of this base model"


def test_several_gpus_are_compared_with_the_last_one_gpu_run(paths):
    _finished(paths)
    _write(paths.final_adapter_dir / "metrics.json", {"scale": {"gpus": 2, "tokens_per_s": 300.0, "sharding": "fsdp",
                                                                "ranks": 2, "frozen_bytes_per_rank": 10}})
    _write(paths.train_file, {"exit_code": 0, "one_gpu_baseline": {"tokens_per_s": 200.0, "date": "2026-10-30"}})
    built = summary.build(paths, "runpod", live=False)
    assert built["gpus"] == 2
    assert built["scale"]["speedup_vs_one_gpu"] == 1.5 and built["scale"]["compared_with"] == "2026-10-30"
    assert built["sharding"]["mode"] == "fsdp" and built["sharding"]["frozen_bytes_per_rank"] == 10

    _write(paths.train_file, {"exit_code": 0})
    alone = summary.build(paths, "runpod", live=False)["scale"]
    assert alone["speedup_vs_one_gpu"] is None and "no earlier one-GPU run" in alone["why"]


def test_every_file_the_summary_reads_is_a_source_of_its_up_to_date_check(paths):
    """A record the summary reads but its check ignores would leave a stale summary standing."""
    read = []
    original = summary.read_record

    def spy(path, problems=None):
        read.append(path)
        return original(path, problems)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(summary, "read_record", spy)
        summary.build(paths, "runpod", live=False)
    assert set(read) <= set(summary.sources(paths))
    assert paths.attempts_file in summary.sources(paths)
