"""The history a report and the page read back (tasks/record/history.py): every date's summary, also
one that a full disk truncated or a person edited by hand: it is named, never a traceback."""

from __future__ import annotations

import json
import shutil

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.context import RunContext
from tasks.core.paths import remember_run
from tasks.record import history
from tests.helpers import make_project


def test_report_over_a_truncated_summary_names_the_file(tmp_path):
    proj = make_project(tmp_path)
    proj.doit("full_cycle", check=True)
    summary = proj.work / "run-summary.json"
    text = summary.read_text()
    summary.write_text(text[: len(text) // 2])  # a disk that filled up mid-write
    out = proj.doit("report", check=True).stdout
    assert f"unreadable: {summary} is not readable (not valid JSON" in out
    assert f"doit summarize --date {proj.date}" in out
    proj.doit("summarize", check=True)  # and it is written again from the date's records
    assert json.loads(summary.read_text())["success"] is True


def _ctx(tmp_path, monkeypatch) -> RunContext:
    proj = make_project(tmp_path)
    monkeypatch.setenv("FULLCYCLE_CONFIG", proj.env["FULLCYCLE_CONFIG"])
    ctx = RunContext.load(date=proj.date)
    ctx.paths.work_local.mkdir(parents=True, exist_ok=True)
    remember_run(ctx.paths)
    return ctx


LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
VALUE = st.recursive(LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                        max_size=3), max_leaves=10)
KEYS = ["date", "success", "error", "training", "totals", "eval", "attempts", "samples_used", "adapter_path",
        "dataset", "training_success", "base_model", "billed_seconds", "cost_usd"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edited=st.dictionaries(st.sampled_from(KEYS), VALUE, max_size=8) | VALUE)
def test_a_hand_edited_summary_never_stops_the_report_the_page_or_latest(tmp_path_factory, edited):
    import os

    from tasks.post import latest
    from tasks.web import status

    folder = tmp_path_factory.mktemp("edited")
    os.environ["FULLCYCLE_CONFIG"] = str(make_project(folder).env["FULLCYCLE_CONFIG"])
    try:
        ctx = RunContext.load(date="2026-11-27")
        ctx.paths.work_local.mkdir(parents=True, exist_ok=True)
        remember_run(ctx.paths)
        ctx.paths.summary_file.write_text(json.dumps(edited))
        text = history.report(ctx)
        assert "2026-11-27" in text
        status.history(ctx.settings)
        status.date_state(ctx.settings, "2026-11-27")
        latest.update_latest(ctx)
        history.previous_adapter(ctx.settings, "2026-11-28", "tiny")
    finally:
        del os.environ["FULLCYCLE_CONFIG"]
        shutil.rmtree(folder, ignore_errors=True)


def test_a_torn_index_of_runs_is_kept_aside_and_rebuilt(tmp_path, monkeypatch):
    ctx = _ctx(tmp_path, monkeypatch)
    index = ctx.paths.runs_index
    index.write_text('{"2026-11-27": "/some/where", "2026-11')
    assert [d for d, _ in history.run_folders(ctx.settings)] == ["2026-11-27"]  # found by its folder
    remember_run(ctx.paths)
    assert json.loads(index.read_text()) == {"2026-11-27": str(ctx.paths.work_local)}
    assert list(index.parent.glob("runs.json.unreadable-*")), "the torn index was thrown away"


def test_an_attempts_log_with_bad_lines_still_tells_the_attempts(tmp_path, monkeypatch):
    from tasks.record import summary
    from tasks.record.attempts import append_event

    ctx = _ctx(tmp_path, monkeypatch)
    append_event(ctx.paths, "a1", "start", pid=1)
    with ctx.paths.attempts_file.open("ab") as fh:
        fh.write(b'{"attempt": "a1", "event": "stage", "stage": ["x"], "status": 1, "at": "2026-11-27T00:00:00+00:00"}\n'
                 b'\xff\xfe not utf-8\n{"attempt": "a1", "event": "pod_created", "pod": [1], "at": "x"}\n'
                 b'{"attempt": "a1", "event": "pod_terminated", "pod_id": ["a"], "at": "2026-11-27T00:00:00+00:00"}\n')
    append_event(ctx.paths, "a1", "end", outcome="ok")
    built = summary.build(ctx.paths, "local")
    assert [a["outcome"] for a in built["attempts"]] == ["ok"]


def test_the_report_says_where_the_seconds_went():
    from tasks.record.history import phase_line

    summary = {"phases": {"image_pull": 42.0, "model_download": 80.0, "training": 840.4, "evaluation": 0.25,
                          "save": 0.0, "preflight": None},
               "model_download": {"bytes": 17_474_000_000, "mb_s": 218.4}}
    assert phase_line(summary) == ("    phases: image pull 42s, model download 80s (17.47 GB, 218 MB/s), "
                                   "training 840s, evaluation 0.25s")
    assert phase_line({"phases": "broken"}) is None and phase_line({}) is None
