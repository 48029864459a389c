"""The append-only attempts log and what the summary composes from it (tasks/record/attempts.py)."""

from __future__ import annotations

from tasks.core.dates import now
from tasks.record import summary
from tasks.record.attempts import append_event
from tasks.record.summary import short


def _paths(tmp_path):
    from tasks.core.paths import RunPaths

    return RunPaths(date="2026-11-01", project_root=tmp_path, out_root=tmp_path / "out", work_local=tmp_path / "w",
                    final_adapter_dir=tmp_path / "out" / "adapter", raw_data_file=tmp_path / "raw.jsonl",
                    clean_data_file=tmp_path / "w" / "clean.jsonl", config_file=tmp_path / "w" / "config.json",
                    summary_file=tmp_path / "w" / "run-summary.json", trainer_log=tmp_path / "t.log",
                    cache_dir=tmp_path / "c")


def test_attempts_are_composed_from_their_own_lines(tmp_path):
    paths = _paths(tmp_path)
    append_event(paths, "a1", "start", pid=2**22 + 12345)  # a pid that does not exist: it died
    append_event(paths, "a1", "pod_created", pod={"pod_id": "p1", "gpu": "g", "cloud_type": "COMMUNITY",
                                                  "cost_per_hr": 3600.0, "created_at": now()})
    append_event(paths, "a1", "stage", stage="train", status="running")
    with paths.attempts_file.open("a") as fh:
        fh.write('{"attempt": "a1", "event": "sta')  # torn by kill -9
    with paths.attempts_file.open("a") as fh:
        fh.write("\n")
    append_event(paths, "a2", "start", pid=1)
    append_event(paths, "a2", "stage", stage="build_dataset", status="failed", error="boom")
    append_event(paths, "a2", "end", outcome="failed")
    built = summary.build(paths, "runpod")
    first, second = built["attempts"]
    assert first["outcome"] == "died" and "train" in first["error"] and first["pod_id"] == "p1"
    assert second["outcome"] == "failed" and second["error"] == "build_dataset: boom"
    assert built["error"] == "build_dataset: boom" and built["success"] is False
    assert built["totals"]["pods"] == 1 and built["totals"]["pods_not_verified_terminated"] == ["p1"]


def test_short_never_cuts_mid_word():
    text = "the pod could not be reached through the gateway because the proxy refused"
    cut = short(text, 40)
    assert len(cut) <= 40 and text.startswith(cut.removesuffix(" …"))
    assert cut.removesuffix(" …").split()[-1] in text.split()
