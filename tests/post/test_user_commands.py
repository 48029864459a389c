"""The user's own post-steps (tasks/post/user_commands.py): a failing one fails the run and is recorded."""

from __future__ import annotations

from tests.helpers import make_project

GOOD_DAY, BAD_DAY = "2026-11-20", "2026-11-21"


def test_a_failing_user_post_step_fails_the_run_and_is_recorded(tmp_path):
    proj = make_project(tmp_path, post={"commands": ["exit 7"]})
    proc = proj.doit("full_cycle")
    assert proc.returncode != 0
    summary = proj.summary
    assert summary["post_steps"]["commands"] == [{"command": "exit 7", "exit_code": 7}]
    assert summary["training_success"] is True and summary["success"] is False
    assert "post-step exited with 7" in summary["error"]
