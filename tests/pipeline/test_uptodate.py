"""The up-to-date rules that ask the pod, not a file (tasks/pipeline/uptodate.py)."""

from __future__ import annotations

import json


def test_same_pod_rule(tmp_path):
    from tasks.pipeline.uptodate import SamePod

    class Ctx:
        class paths:
            pod_file = tmp_path / "pod.json"

    class Task:
        value_savers: list = []

    rule = SamePod(Ctx)
    assert rule(Task, {"pod_id": "a"}) is False  # no pod recorded
    (tmp_path / "pod.json").write_text(json.dumps({"provider": "local", "pod_id": "a", "name": "n", "created_at": "x"}))
    assert rule(Task, {"pod_id": "a"}) is True
    assert rule(Task, {"pod_id": "b"}) is False
    assert "0x" not in repr(rule)


def test_every_setting_a_stage_reads_is_in_its_up_to_date_check(tmp_path):
    """The checks are derived from what the stages produce: a changed gpu_count reaches config.json (the
    pod trains on as many GPUs as it rents), a changed moe_build is checked against the hub again."""
    from tests.helpers import make_project, ran

    proj = make_project(tmp_path)
    first = proj.doit("write_config", check=True)
    assert ran(first.stdout, "check_model") and ran(first.stdout, "write_config")
    config = proj.work / "config.json"
    assert json.loads(config.read_text())["gpu_count"] == 1
    again = proj.doit("write_config", check=True)
    assert not ran(again.stdout, "write_config") and not ran(again.stdout, "check_model")  # nothing changed
    settings = proj.root / "fullcycle.toml"
    settings.write_text(settings.read_text() + "\n[runpod]\ngpu_count = 2\n")
    changed = proj.doit("write_config", check=True)
    assert ran(changed.stdout, "check_model") and ran(changed.stdout, "write_config")
    assert json.loads(config.read_text())["gpu_count"] == 2
    settings.write_text(settings.read_text() + "download_stall_s = 60\n")
    assert ran(proj.doit("write_config", check=True).stdout, "write_config")
    assert json.loads(config.read_text())["download_stall_s"] == 60
