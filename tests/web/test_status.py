"""What the page shows, from the record alone: stage states per attempt, and the log tail."""

from __future__ import annotations

import pytest

from tasks.core.dates import BadDate
from tasks.web.status import SHOWN, LogTail, _pod, stage_rows, valid_date


def _events(*stages: tuple[str, str], ended: bool = False, attempt: str = "a2") -> list[dict]:
    old = [{"attempt": "a1", "event": "start", "at": "t0"},
           {"attempt": "a1", "event": "stage", "stage": "train", "status": "failed", "at": "t0", "error": "old"}]
    lines = [{"attempt": attempt, "event": "start", "at": "t1"}]
    lines += [{"attempt": attempt, "event": "stage", "stage": s, "status": status, "at": "t1", "seconds": 1.0}
              for s, status in stages]
    if ended:
        lines.append({"attempt": attempt, "event": "end", "at": "t2"})
    return old + lines


def _states(rows: list[dict]) -> dict[str, str]:
    return {r["stage"]: r["state"] for r in rows}


def test_nothing_yet_is_all_waiting():
    assert set(_states(stage_rows([], running=False)).values()) == {"waiting"}


def test_up_to_date_stages_are_skipped_once_a_later_one_ran():
    states = _states(stage_rows(_events(("check_model", "ok"), ("create_pod", "ok"), ("upload", "running")),
                                running=True))
    assert states["check_model"] == "done" and states["clean_dataset"] == "skipped"
    assert states["upload"] == "running" and states["train"] == "waiting"


def test_only_the_latest_attempt_counts():
    states = _states(stage_rows(_events(("build_dataset", "ok")), running=True))
    assert states["train"] == "waiting"  # attempt a1's failed train is history, not today's state


def test_after_a_failure_the_rest_did_not_run_and_a_dead_runner_is_interrupted():
    states = _states(stage_rows(_events(("clean_dataset", "failed")), running=False))
    assert states["clean_dataset"] == "failed" and states["build_dataset"] == "skipped"
    assert all(states[s] == "not run" for s in SHOWN[SHOWN.index("clean_dataset") + 1:])
    states = _states(stage_rows(_events(("train", "running")), running=False))  # killed: no end line
    assert states["train"] == "interrupted"


def test_a_finished_run_skipped_what_it_did_not_need():
    states = _states(stage_rows(_events(("check_model", "ok"), ended=True), running=False))
    assert states["check_model"] == "done" and set(states.values()) == {"done", "skipped"}


@pytest.mark.parametrize("bad", ["2026-13-01", "2026-02-30", "../../etc", "2026-11-27; ls", "", "20261127"])
def test_dates_from_the_page_are_checked(bad):
    with pytest.raises(BadDate):
        valid_date(bad)


def test_log_tail_shows_whole_lines_and_follows(tmp_path):
    log = tmp_path / "trainer.log"
    log.write_text("".join(f"old line {n}\n" for n in range(100)))
    tail = LogTail(log, backlog=32)
    first = tail.read()
    assert first.endswith("old line 99\n") and len(first) <= 32 and first.startswith("old line")  # no torn line
    with log.open("a") as fh:
        fh.write("half a li")
    assert tail.read() == ""  # waits for the line to end
    with log.open("a") as fh:
        fh.write("ne\n")
    assert tail.read() == "half a line\n"
    log.write_text("new\n")  # replaced by a shorter one: start again
    assert tail.read() == "new\n"
    fresh = LogTail(tmp_path / "later.log", backlog=4)
    assert fresh.read() == ""  # no log yet: everything it will hold is new
    (tmp_path / "later.log").write_text("first line of the run\n")
    assert fresh.read() == "first line of the run\n"


def test_log_tail_never_holds_a_huge_line_whole(tmp_path):
    log = tmp_path / "trainer.log"
    tail = LogTail(log, backlog=0)
    tail.read()
    log.write_bytes(b"x" * (3 * LogTail.CHUNK) + b"\n")
    pieces = [tail.read() for _ in range(4)]
    assert all(len(p) <= LogTail.CHUNK for p in pieces) and sum(len(p) for p in pieces) == 3 * LogTail.CHUNK + 1


def test_the_pod_card_counts_gpus_and_shows_only_phases_that_took_time():
    summary = {"pod_id": "p1", "pod": {"gpu": "NVIDIA H100 80GB HBM3", "image": "runpod/pytorch:x"}, "gpus": 2,
               "billed_seconds": 90, "not_training_share": 0.4,
               "phases": {"create_to_running": 20.0, "image_pull": 0, "training": 54.0, "other": None}}
    card = _pod(summary)
    assert card["gpus"] == 2 and card["minutes"] == 1.5 and card["image"] == "runpod/pytorch:x"
    assert card["phases"] == [["create_to_running", 20.0], ["training", 54.0]]
    assert _pod({"pod_id": None}) is None
