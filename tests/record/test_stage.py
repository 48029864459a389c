"""A stage's record (tasks/record/stage.py): the lock first, its start and outcome in the attempts log,
run-summary.json at its end, whatever happens; then the attempt's end line once."""

from __future__ import annotations

import json
import os

import pytest

from tasks.context import RunContext
from tasks.core import lock
from tasks.core.errors import FullcycleError
from tasks.record import stage
from tasks.record.attempts import read_events
from tests.helpers import make_project


@pytest.fixture
def ctx(tmp_path, monkeypatch):
    proj = make_project(tmp_path)
    monkeypatch.setenv("FULLCYCLE_CONFIG", proj.env["FULLCYCLE_CONFIG"])
    made = RunContext.load(date=proj.date)
    yield made
    for fd in made.attempt.locks.values():  # the lock a real process holds until it exits
        os.close(fd)


def _stages(ctx: RunContext) -> list[tuple[str, str]]:
    return [(e["stage"], e["status"]) for e in read_events(ctx.paths) if e["event"] == "stage"]


def test_a_stage_that_succeeds_is_recorded_under_the_dates_lock_with_its_sessions(ctx):
    with stage.recording(ctx, "upload"):
        assert lock.is_held(ctx.paths.lock_file)
        assert _stages(ctx) == [("upload", "running")]  # a kill -9 from here on still shows where it died
        ctx.attempt.sessions += 3
    events = read_events(ctx.paths)
    assert [e["event"] for e in events] == ["start", "stage", "stage"]
    assert events[-1]["status"] == "ok" and events[-1]["ssh_sessions"] == 3 and events[-1]["seconds"] >= 0
    written = json.loads(ctx.paths.summary_file.read_text())
    assert written["stages"]["upload"]["status"] == "ok" and written["ssh_sessions"] == 3
    assert written["outcome"] == "running"  # this process holds the lock and has not ended


def test_an_error_the_user_can_act_on_is_recorded_as_its_own_line(ctx):
    with pytest.raises(FullcycleError), stage.recording(ctx, "create_pod"):
        raise FullcycleError("no GPU of the types asked for is available; widen [runpod] gpu_types")
    last = read_events(ctx.paths)[-1]
    assert last["status"] == "failed" and last["error"].startswith("no GPU of the types asked for")
    assert json.loads(ctx.paths.summary_file.read_text())["stages"]["create_pod"]["status"] == "failed"


def test_an_unexpected_error_keeps_its_traceback_in_the_log(ctx):
    with pytest.raises(ZeroDivisionError), stage.recording(ctx, "train"):
        1 / 0  # noqa: B018
    assert read_events(ctx.paths)[-1]["error"] == "ZeroDivisionError: division by zero"
    text = ctx.paths.trainer_log.read_text()
    assert "Traceback" in text and "FAILED at train: ZeroDivisionError" in text


def test_an_interrupt_marks_the_stage_and_the_attempt_interrupted(ctx):
    ctx.attempt.signal = 15
    with pytest.raises(KeyboardInterrupt), stage.recording(ctx, "train"):
        raise KeyboardInterrupt
    assert _stages(ctx)[-1] == ("train", "interrupted")
    assert read_events(ctx.paths)[-1]["error"] == "interrupted by SIGTERM"
    stage.close_attempt(ctx)
    stage.close_attempt(ctx)  # once, however many exits call it
    ends = [e for e in read_events(ctx.paths) if e["event"] == "end"]
    assert len(ends) == 1 and ends[0]["outcome"] == "interrupted" and ends[0]["signal"] == "SIGTERM"


def test_one_attempt_over_several_stages_has_one_start_line_and_a_failed_end(ctx):
    with stage.recording(ctx, "build_dataset"):
        pass
    with pytest.raises(FullcycleError), stage.recording(ctx, "write_config"):
        raise FullcycleError("bad value")
    stage.close_attempt(ctx)
    events = read_events(ctx.paths)
    assert [e["event"] for e in events].count("start") == 1
    assert events[-1]["event"] == "end" and events[-1]["outcome"] == "failed"
    assert ctx.attempt.stages_run == ["build_dataset", "write_config"]


def test_a_second_run_for_the_date_is_refused_before_it_records_anything(ctx):
    with stage.recording(ctx, "build_dataset"):
        pass
    before = ctx.paths.attempts_file.read_bytes()
    other = RunContext(ctx.settings, ctx.paths)  # another process's attempt: its own open file, its own flock
    with pytest.raises(lock.RunLocked, match="another run for this date is in progress"):
        with stage.recording(other, "build_dataset"):
            pytest.fail("the body ran without the lock")
    assert ctx.paths.attempts_file.read_bytes() == before


def test_a_summary_that_cannot_be_written_never_hides_the_stages_own_outcome(ctx, monkeypatch):
    def broken(*_args, **_kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(stage.summary, "write", broken)
    with pytest.raises(FullcycleError, match="the real error"), stage.recording(ctx, "train"):
        raise FullcycleError("the real error")
    assert "could not write" in ctx.paths.trainer_log.read_text()
